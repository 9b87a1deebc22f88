"""The examples of docs/api.md, run for real against a live server: the curl walkthrough in
bash and the Python example in the venv's interpreter, with a data steward's token."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from demo.records import binary_classifier
from governance.roles import Role
from governance.services import api_token_create
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.gates import services as gate_services
from lifecycle.phases import Phase
from tests.factories import make_team, pass_gate

DOC = Path(settings.BASE_DIR) / "docs" / "api.md"


def examples(language: str) -> list[str]:
    """The fenced blocks of docs/api.md in `language` (```bash and ```python run here;
    ```sh blocks are the placeholders a reader fills in)."""
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(), re.MULTILINE | re.DOTALL)


@pytest.fixture
def evaluation_jobs(request, settings):
    """Uploaded evaluations are scored by a real worker when a broker is configured (the
    PostgreSQL pass) and in-process otherwise (the SQLite pass)."""
    from config.celery import app

    if not app.conf.task_always_eager:
        worker = request.getfixturevalue("celery_worker")
        settings.MEDIA_ROOT = worker.media_dir


def _require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{', '.join(missing)} required (REQUIRE_SERVICES=1) but not installed.")
    pytest.skip(f"{', '.join(missing)} not installed")


def test_the_curl_and_python_examples_upload_poll_and_read_the_verdict(
    live_server, live_db, evaluation_jobs, tmp_path
):
    _require_tools("bash", "curl", "jq", "sha256sum")
    [walkthrough], [example] = examples("bash"), examples("python")
    team = make_team()
    pass_gate(team, Phase.PLANNING)
    pass_gate(team, Phase.DATA)
    gate = team.project.gates.get(phase=Phase.DEVELOPMENT)
    gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR], gate=gate, metric="auroc", comparator=">=", threshold=0.8
    )
    _, token = api_token_create(actor=team[Role.DATA_STEWARD], name="CI pipeline")
    records = tmp_path / "records.jsonl"
    records.write_bytes(binary_classifier(seed=3, n=300, prevalence=0.3, separation=1.5))
    env = {
        **{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        "BASE_URL": live_server.url,
        "TOKEN": token,
        "PROJECT": team.project.slug,
        "GATE": Phase.DEVELOPMENT,
        "RECORDS": str(records),
    }
    env.pop("CI_PIPELINE_ID", None)

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
        )

    curl = run("bash", "-c", walkthrough)
    assert curl.returncode == 0, curl.stdout + curl.stderr
    assert "status: succeeded" in curl.stdout, curl.stdout
    assert '"expression": "auroc >= 0.8"' in curl.stdout, curl.stdout
    assert '"verdict": "pass"' in curl.stdout
    assert '"committee_chair"' in curl.stdout  # still missing: nobody has signed yet

    script = tmp_path / "pipeline.py"
    script.write_text(example)
    pipeline = run(sys.executable, str(script))
    assert pipeline.returncode == 0, pipeline.stdout + pipeline.stderr
    assert re.search(r"^run \d+: succeeded", pipeline.stdout, re.MULTILINE), pipeline.stdout
    assert "auroc >= 0.8: pass (observed 0.9" in pipeline.stdout, pipeline.stdout
    assert "can be approved: False" in pipeline.stdout  # the signatures are still to come

    runs = EvaluationRun.objects.filter(project=team.project)
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert {r.requested_by for r in runs} == {team[Role.DATA_STEWARD]}
