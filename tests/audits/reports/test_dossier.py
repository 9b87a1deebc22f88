"""The decision dossier: what an auditor takes away, as pages and as embedded JSON."""

import hashlib
import io
import re
import subprocess
from datetime import UTC
from pathlib import Path

import pikepdf
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audits.reports.common import canonical_json, chain_state
from audits.reports.dossier import NO_INCIDENTS, NO_MONITORING, build_dossier, dossier_content
from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationRun
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Signature
from lifecycle.gates.readiness import readiness_of
from lifecycle.phases import Phase
from tests.factories import approve, make_team, make_versions, settle, sign

pytestmark = pytest.mark.django_db

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "reports"
HOSTILE_NAME = "Sepsis <img src=x onerror=alert(1)> & <svg onload=alert(2)>"
PROTOCOL = b"%PDF-1.4 the validation protocol, signed by the committee\n"


def _scored_run(team, phase=Phase.PLANNING) -> EvaluationRun:
    """An evaluation run uploaded by the data steward and scored by the job, in-process."""
    model, dataset = make_versions(team)
    run = evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=team.project.gates.get(phase=phase),
        model_version=model,
        dataset_version=dataset,
        upload=SimpleUploadedFile(
            "records.jsonl", binary_classifier(seed=3, n=400, prevalence=0.3, separation=1.5)
        ),
        metrics=["recall", "auroc", "ece", "confusion_matrix", "demographic_parity_difference"],
        resamples=200,
    )
    assert run_evaluation.apply(args=[run.pk]).get() == "succeeded"
    return EvaluationRun.objects.get(pk=run.pk)


def _decided_project(notes_per_item: int = 0, **project_fields):
    """A planning gate decided in two rounds: the chair requests changes, the lead resubmits,
    every required role approves. With a scored run, a criterion on it, a file and a withdrawn
    note among the evidence."""
    team = make_team(**project_fields)
    run = _scored_run(team)
    gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR],
        gate=team.project.gates.get(phase=Phase.PLANNING),
        metric="auroc",
        bound="ci_low",
        comparator=">=",
        threshold=0.7,
    )
    items = list(team.project.checklist_items.filter(phase=Phase.PLANNING).order_by("position"))
    protocol = checklist_services.evidence_add_file(
        actor=team.creator,
        item=items[0],
        upload=SimpleUploadedFile("protocol.pdf", PROTOCOL, content_type="application/pdf"),
    )
    mistaken = checklist_services.evidence_add_note(
        actor=team.creator, item=items[1], note="Attached to the wrong item."
    )
    checklist_services.evidence_withdraw(
        actor=team.creator, evidence=mistaken, reason="Wrong item."
    )
    settle(team, Phase.PLANNING)
    gate = team.project.gates.get(phase=Phase.PLANNING)
    gate_services.gate_submit(actor=team.creator, gate=gate, note="First submission.")
    sign(team, gate, Role.COMMITTEE_CHAIR, "reject", "The scope needs the ward list.")
    gate_services.gate_submit(actor=team.creator, gate=gate, note="Ward list added.")
    approve(team, team.project.gates.get(phase=Phase.PLANNING))
    gate.refresh_from_db()
    assert gate.state == "approved" and gate.review_round == 2
    return team, run, protocol


@pytest.fixture
def decided():
    return _decided_project(name=HOSTILE_NAME)


def _text(body: bytes, tmp_path: Path) -> str:
    path = tmp_path / "dossier.pdf"
    path.write_bytes(body)
    return subprocess.run(
        ["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def _squash(text: str) -> str:
    """Page text without line breaks or spaces, so hashes wrapped across lines still match."""
    return re.sub(r"\s+", "", text)


def test_it_is_pdf_a_3b_with_its_content_embedded_as_data(decided):
    team, _, _ = decided
    chain = chain_state(team.project)
    steps = []

    built = build_dossier(team.project, chain=chain, progress=lambda p, n: steps.append(p))

    assert built.format == "pdf"
    assert re.fullmatch(rf"{team.project.slug}-dossier-\d{{4}}-\d\d-\d\d\.pdf", built.file_name)
    assert built.content["format"] == "llm-governance-report"
    assert (built.content["version"], built.content["kind"]) == (1, "dossier")
    assert built.content["project"] == {"slug": team.project.slug, "name": HOSTILE_NAME}
    assert built.content["chain"] == chain
    assert built.content["incidents"] == []
    assert built.content["monitoring"]["plan"] is None
    assert steps == sorted(steps) and steps[-1] == 100
    with pikepdf.open(io.BytesIO(built.body)) as pdf:
        with pdf.open_metadata() as xmp:
            assert (xmp["pdfaid:part"], xmp["pdfaid:conformance"]) == ("3", "B")
            assert xmp["dc:title"] == f"Decision dossier — {HOSTILE_NAME}"
        assert str(pdf.docinfo["/Title"]) == f"Decision dossier — {HOSTILE_NAME}"
        embedded = pdf.attachments["dossier.json"].get_file()
        assert embedded.read_bytes() == canonical_json(built.content)
        assert embedded.mime_type == "application/json"
        assert [str(spec.AFRelationship) for spec in pdf.Root.AF] == ["/Data"]


def test_the_pages_show_every_signature_manifested_and_every_item(decided, tmp_path):
    team, run, protocol = decided
    built = build_dossier(team.project, chain=chain_state(team.project))
    text = _text(built.body, tmp_path)
    squashed = _squash(text)

    # Markup typed into the project name prints as text.
    assert "<img src=x onerror=alert(1)>" in text
    assert "<svg onload=alert(2)>" in text

    signatures = list(Signature.objects.filter(gate__project=team.project))
    assert len(signatures) >= 3
    printed = {
        s["id"]: s
        for phase in built.content["phases"]
        for round_ in phase["gate"]["rounds"]
        for s in round_["signatures"]
    }
    assert set(printed) == {s.pk for s in signatures}
    for signature in signatures:
        entry = printed[signature.pk]
        assert entry["printed_name"] == signature.signer_name
        assert entry["role"] == signature.role
        assert entry["meaning"] == signature.meaning
        assert entry["manifest_sha256"] == signature.manifest_sha256
        assert entry["signed_at"] == signature.signed_at.astimezone(UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        assert entry["manifest_intact"] and entry["record_intact"]
        assert signature.signer_name in text
        assert signature.manifest_sha256 in squashed
        assert _squash(entry["signed_at"]) in squashed

    # The rejection ended round 1, and was superseded when round 2 started.
    rejection = next(s for s in signatures if s.meaning == "reject")
    planning = built.content["phases"][0]
    assert planning["phase"] == "planning"
    first, second = planning["gate"]["rounds"]
    assert first["decision"]["outcome"] == "changes_requested"
    assert first["decision"]["note"] == "The scope needs the ward list."
    assert first["submission"]["note"] == "First submission."
    assert second["decision"]["outcome"] == "approved"
    assert printed[rejection.pk]["invalidation"]["kind"] == "superseded"
    assert "review round 2 started" in printed[rejection.pk]["invalidation"]["cause"]
    assert "The scope needs the ward list." in text

    # Every checklist item, with its evidence and hashes, withdrawn evidence included.
    items = {i["key"]: i for phase in built.content["phases"] for i in phase["items"]}
    assert set(items) == set(team.project.checklist_items.values_list("key", flat=True))
    for item in team.project.checklist_items.filter(phase=Phase.PLANNING):
        assert item.title in text
    files = [e for i in items.values() for e in i["evidence"] if e["kind"] == "file"]
    assert files == [
        {
            **files[0],
            "file_name": "protocol.pdf",
            "sha256": hashlib.sha256(PROTOCOL).hexdigest(),
            "withdrawn": False,
        }
    ]
    assert protocol.sha256 in squashed
    withdrawn = [e for i in items.values() for e in i["evidence"] if e["withdrawn"]]
    assert [(e["note"], e["withdrawal_reason"]) for e in withdrawn] == [
        ("Attached to the wrong item.", "Wrong item.")
    ]

    # Criteria say what the gate panel says, on the designated run.
    readiness = readiness_of(team.project.gates.get(phase=Phase.PLANNING))
    assert planning["gate"]["evidence"] == {
        "designated": True,
        "runs": [run.number],
        "newer_run": None,
    }
    assert [(c["expression"], c["verdict"]) for c in planning["gate"]["criteria"]] == [
        (v.criterion.expression, v.status) for v in readiness.verdicts
    ]
    assert "ci_low(auroc) >= 0.7" in text

    # Results with intervals, subgroups and the charts' data; incidents and integrity.
    (entry,) = built.content["evaluation_runs"]
    assert entry["judged_for"] == ["planning"]
    auroc = next(r for r in entry["results"] if r["metric"] == "auroc" and r["scope"] == "overall")
    assert auroc["ci_low"] <= auroc["value"] <= auroc["ci_high"]
    assert {r["group_attribute"] for r in entry["results"] if r["scope"] == "group"} >= {"sex"}
    titles = [c["title"] for c in entry["charts"]]
    assert any(t.startswith("ROC curve") for t in titles)
    assert "Confusion matrix" in titles
    assert all(c["rows"] for c in entry["charts"])
    for title in titles:
        assert title in text
    assert NO_MONITORING in " ".join(text.split())
    assert NO_INCIDENTS in " ".join(text.split())
    assert "python manage.py verify_report FILE" in text
    assert built.content["chain"]["head_hash"] in squashed


def test_every_page_renders_to_png(decided, tmp_path):
    team, _, _ = decided
    built = build_dossier(team.project, chain=chain_state(team.project))
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(built.body)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("dossier-*.png"):
        old.unlink()

    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", str(pdf), str(ARTIFACTS / "dossier")], check=True
    )

    with pikepdf.open(pdf) as document:
        pages = len(document.pages)
    pngs = sorted(ARTIFACTS.glob("dossier-*.png"))
    assert pages > 1
    assert len(pngs) == pages
    # A page that rendered is an A4 portrait image of some size, not an empty file.
    for png in pngs:
        data = png.read_bytes()
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert abs(width - 413) <= 1 and abs(height - 585) <= 1
        assert len(data) > 2000
    (ARTIFACTS / "dossier.pdf").write_bytes(built.body)


def test_only_vendored_fonts_are_used_even_in_the_charts(decided, tmp_path):
    team, _, _ = decided
    built = build_dossier(team.project, chain=chain_state(team.project))
    path = tmp_path / "dossier.pdf"
    path.write_bytes(built.body)

    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True)
    names = {line.split()[0].split("+")[-1] for line in fonts.stdout.splitlines()[2:]}
    assert names and all(name.startswith("Report-") for name in names)


def test_the_gate_only_dossier_holds_that_gate_alone(decided, tmp_path):
    team, run, _ = decided
    # A run of the next gate (open once planning was approved) stays out of it.
    other = _scored_run_on(team, team.project.gates.get(phase=Phase.DATA))

    built = build_dossier(team.project, chain=chain_state(team.project), gate_phase="planning")

    assert re.fullmatch(
        rf"{team.project.slug}-planning-gate-dossier-\d{{4}}-\d\d-\d\d\.pdf", built.file_name
    )
    assert built.content["scope"] == {"gate_phase": "planning"}
    assert [p["phase"] for p in built.content["phases"]] == ["planning"]
    keys = {i["key"] for i in built.content["phases"][0]["items"]}
    assert keys == set(
        team.project.checklist_items.filter(phase=Phase.PLANNING).values_list("key", flat=True)
    )
    assert [r["number"] for r in built.content["evaluation_runs"]] == [run.number]
    assert other.number != run.number
    text = _text(built.body, tmp_path)
    assert "Project definition and planning gate decision" in text
    for item in team.project.checklist_items.exclude(phase=Phase.PLANNING):
        assert item.title not in text
    with pikepdf.open(io.BytesIO(built.body)) as pdf:
        assert pdf.attachments["dossier.json"].get_file().read_bytes() == canonical_json(
            built.content
        )


def _scored_run_on(team, gate) -> EvaluationRun:
    run = evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=gate,
        model_version=team.project.model_versions.get(),
        dataset_version=team.project.dataset_versions.get(),
        upload=SimpleUploadedFile(
            "later.jsonl", binary_classifier(seed=4, n=400, prevalence=0.3, separation=1.2)
        ),
        metrics=["auroc"],
        resamples=200,
    )
    run_evaluation.apply(args=[run.pk]).get()
    return run


def test_an_unknown_phase_is_refused(decided):
    team, _, _ = decided
    with pytest.raises(ValueError):
        build_dossier(team.project, chain=chain_state(team.project), gate_phase="nonsense")


def test_the_content_is_a_function_of_the_data(decided):
    team, _, _ = decided
    chain = chain_state(team.project)
    first, _ = dossier_content(team.project, chain=chain)
    second, _ = dossier_content(team.project, chain=chain)
    assert canonical_json(first) == canonical_json(second)


def _queries(project) -> int:
    with CaptureQueriesContext(connection) as captured:
        dossier_content(project, chain=chain_state(project))
    return len(captured)


def test_the_number_of_queries_does_not_grow_with_items_evidence_or_signatures():
    small, _, _ = _decided_project()
    # Much more of everything on the larger project: more evidence on every item, another
    # phase decided (more items, signatures and invalidations), a second run.
    large, _, _ = _decided_project(notes_per_item=4)
    settle(large, Phase.DATA)
    data_gate = large.project.gates.get(phase=Phase.DATA)
    gate_services.gate_submit(actor=large.creator, gate=data_gate)
    approve(large, large.project.gates.get(phase=Phase.DATA))
    _scored_run_on(large, large.project.gates.get(phase=Phase.DEVELOPMENT))

    assert _queries(large.project) == _queries(small.project)
