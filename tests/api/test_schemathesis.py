"""Schemathesis against the live server's OpenAPI schema, once per persona: generated requests
(valid and invalid) must never cause a server error, and every answer — status, content type,
headers and body — must be one the schema documents.

Bounded for CI: fuzzing and stateful phases with a few examples per operation. For a deeper run,
e.g. with the coverage phase's boundary values:

    SCHEMATHESIS_PHASES=coverage,fuzzing,stateful SCHEMATHESIS_MAX_EXAMPLES=50 \\
        scripts/test tests/api/test_schemathesis.py
"""

import os
import re
import subprocess
import sys
import urllib.request

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.api.authentication import TokenRateThrottle
from governance.roles import Role
from governance.services import api_token_create
from lifecycle.checklists import services as checklist_services
from lifecycle.evaluations import services as evaluation_services
from lifecycle.gates import services as gate_services
from lifecycle.phases import Phase
from tests.factories import make_team, make_versions

pytestmark = [
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
    # Once, against the production database: the API's code paths are the same on SQLite.
    pytest.mark.postgres,
]

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
ITEM = "planning.data-privacy-plan"

# persona → (examples per operation, phases). The lead reaches the most code; anonymous and
# outsider calls stop at authentication and project lookup.
PERSONAS = {
    "anonymous": (2, "fuzzing"),
    "outsider": (3, "fuzzing"),
    Role.AUDITOR: (4, "fuzzing"),
    Role.COMMITTEE_CHAIR: (5, "fuzzing,stateful"),
    Role.PROJECT_LEAD: (8, "fuzzing,stateful"),
}


def _toml_list(values) -> str:
    return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values) + "]"


def _config(team, ids: dict[str, list[int]]) -> str:
    """Path parameters mostly drawn from objects that exist, so that requests get past the
    404s to the code behind them; per operation, the ids of its own kind of object."""
    dictionaries = {
        "slugs": [team.project.slug, "no-such-project"],
        "keys": [ITEM, "planning.defining-scope", "no-such-item"],
        "phases": [Phase.PLANNING],
        "ids": [*sorted({i for values in ids.values() for i in values}), 999999],
        **{kind: [*values, 999999] for kind, values in ids.items()},
    }
    lines = ['[generation]\ndatabase = "none"\n\n[dictionaries]']
    lines += [
        f"{name} = {{ values = {_toml_list(values)} }}" for name, values in dictionaries.items()
    ]
    lines += [
        "\n[parameters]",
        '"path.slug" = { dictionary = "slugs", probability = 0.9 }',
        '"path.key" = { dictionary = "keys", probability = 0.8 }',
        '"path.id" = { dictionary = "ids", probability = 0.8 }',
    ]
    for kind, path in [
        ("criteria", r"/criteria/\{id\}/"),
        ("evidence", r"/evidence/\{id\}/"),
        ("runs", r"/evaluation-runs/\{id\}/"),
        ("memberships", r"/memberships/\{id\}/"),
    ]:
        lines += [
            "\n[[operations]]",
            f"include-path-regex = '{path}'",  # a TOML literal string: no escapes
            "[operations.parameters]",
            f'"path.id" = {{ dictionary = "{kind}", probability = 0.8 }}',
        ]
        if kind == "criteria":
            lines.append('"path.phase" = { dictionary = "phases", probability = 0.8 }')
    return "\n".join(lines) + "\n"


def _objects(team) -> dict[str, list[int]]:
    """A little of everything on the project, created as its members would; their ids."""
    lead = team.creator
    model, dataset = make_versions(team, rows=1)
    gate = team.project.gates.get(phase=Phase.PLANNING)
    run = evaluation_services.evaluation_run_start(
        actor=lead,
        gate=gate,
        model_version=model,
        dataset_version=dataset,
        upload=SimpleUploadedFile("r.jsonl", b'{"id": "a", "label": 1, "score": 0.9}\n'),
        metrics=["auroc"],
    )
    criterion = gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR], gate=gate, metric="auroc", comparator=">=", threshold=0.8
    )
    item = team.project.checklist_items.get(key=ITEM)
    evidence = checklist_services.evidence_add_file(
        actor=lead, item=item, upload=SimpleUploadedFile("dpia.txt", b"dpia")
    )
    note = checklist_services.evidence_add_note(actor=lead, item=item, note="Reviewed.")
    checklist_services.comment_add(actor=lead, item=item, body="Looks complete.")
    return {
        "criteria": [criterion.pk],
        "evidence": [evidence.pk, note.pk],
        "runs": [run.pk],
        "memberships": list(team.project.memberships.values_list("pk", flat=True)),
    }


@pytest.mark.parametrize("persona", list(PERSONAS), ids=str)
def test_the_api_answers_as_its_schema_says(
    persona, live_server, live_db, in_process_tasks, tmp_path, monkeypatch
):
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"api": "100000/min"})
    team = make_team()
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(team, _objects(team)))
    headers = []
    if persona != "anonymous":
        user = team.outsider if persona == "outsider" else team[persona]
        _, token = api_token_create(actor=user, name="schemathesis")
        headers = ["--header", f"Authorization: Bearer {token}"]
    examples, phases = PERSONAS[persona]
    # The schema needs a login (API_DOCS_PUBLIC is off): the live server's, fetched with a
    # read-only token; every persona's requests then carry that persona's own credentials.
    _, reader = api_token_create(actor=team.creator, name="schema", read_only=True)
    request = urllib.request.Request(  # noqa: S310 - the live server's own http:// address
        f"{live_server.url}/api/schema/?format=json", headers={"Authorization": f"Bearer {reader}"}
    )
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    schema_file = tmp_path / "schema.json"
    with no_proxy.open(request, timeout=60) as response:
        schema_file.write_bytes(response.read())
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        str(schema_file),
        "--url",
        live_server.url,
        *headers,
        "--checks",
        CHECKS,
        "--phases",
        os.environ.get("SCHEMATHESIS_PHASES", phases),
        "--max-examples",
        os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", str(examples)),
        "--seed",
        os.environ.get("SCHEMATHESIS_SEED", "20260101"),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", result.stdout)
    assert selected and selected[1] == selected[2] != "0", result.stdout
