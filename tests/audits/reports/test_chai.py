"""The CHAI Applied Model Card: vendored schema, offline validation, the card built from a
project's facts and designated evaluation results, and its PDF rendering."""

import hashlib
import io
import json
import subprocess
from xml.etree import ElementTree as ET

import pikepdf
import pytest
from django.core.files.base import ContentFile

from audits.reports import chai
from audits.reports.chai import NAMESPACE, STANDARDS_DIR, build_chai, validate_chai
from audits.reports.common import canonical_json, chain_state
from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationResult, EvaluationRun
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.phases import Phase
from lifecycle.projects.facts import FACTS, missing_facts
from lifecycle.projects.models import ModelFacts
from tests.factories import approve, make_versions, pass_gate, settle

pytestmark = pytest.mark.django_db

# The SHA-256 of each vendored file as published (coalition-for-health-ai/mc-schema at
# 2025-10-28, and the HTI-1 list of ../shared/standards/hti1/): a changed byte fails here.
ORIGINALS = {
    "chai/schema-v0.2.xsd": "68c189141e157c221945cae2a2abc63602c34b6de3623060339c67d41850ff3d",
    "chai/LICENSE": "cc86d0dcc6245e261d21a23bae0dfc0ff514c57b13d11790d0bb7ba3788fe8d4",
    "chai/DOCUMENTATION.md": "c48111db7568527a4be470f0bf02f12b1c464a3992dac078b928f6a87b2c1846",
    "chai/OrbDoc_Voice-to-SOAP.xml": (
        "da8816840d883ff7cbff3335cedbc9fe68ba3ac91793ee5735530f01135bde93"
    ),
    "chai/Penguin-Ai_PA-SLM.xml": (
        "a51d2b0da339371784bfb91dff0def4ec7880083febbcc592447e0a6e9a6149e"
    ),
    "hti1/hti1_predictive_dsi_source_attributes.csv": (
        "52798850b61def48cb7ef90ea96df68a5951e9b4170e34a01d44a0c54fc053ee"
    ),
    "hti1/SOURCE.md": "67790c5cca17a2232b85a8b75bb9fc12a9bad439fe09c515229a15d465f1c6a5",
}
EXAMPLES = ("chai/OrbDoc_Voice-to-SOAP.xml", "chai/Penguin-Ai_PA-SLM.xml")
NS = {"mc": NAMESPACE}
METRICS = ["recall", "auroc", "ece", "hallucination_rate", "confusion_matrix"]
FAIR_METRICS = [*METRICS, "demographic_parity_difference"]
MARKUP = '<b>Acme</b> & Sons <script>alert(1)</script> ]]> "quoted"'

# A value for every model fact, so that a complete card can be checked element by element.
FULL_FACTS = {fact.key: f"{fact.label} of the test model" for fact in FACTS}
FULL_FACTS |= {
    "keywords": "discharge\nsummaries\n\n",
    "ehr_compatibility": "Epic\nCerner",
    "bibliography": "@article{x, title={Y}}",
}


@pytest.fixture
def offline(no_network):
    """No network, and the compiled schema dropped so that it is compiled again under the
    block."""
    chai.chai_schema.cache_clear()
    yield no_network
    chai.chai_schema.cache_clear()


def record_facts(team, facts: dict[str, str]) -> None:
    ModelFacts.objects.update_or_create(project=team.project, defaults={"facts": facts})


def evaluate(team, phase, *, metrics=METRICS, purpose="test", label="d1", model="v1", seed=1):
    """A succeeded run on the gate of `phase` (a new model and dataset version)."""
    model_version, dataset = make_versions(team, model=model, dataset=label, purpose=purpose)
    run = evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=team.project.gates.get(phase=phase),
        model_version=model_version,
        dataset_version=dataset,
        upload=ContentFile(
            binary_classifier(seed=seed, n=400, prevalence=0.3, separation=1.5),
            name="records.jsonl",
        ),
        metrics=metrics,
        resamples=200,
    )
    run_evaluation.apply(args=[run.pk])
    return EvaluationRun.objects.get(pk=run.pk)


def criterion(team, phase, **fields):
    return gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR], gate=team.project.gates.get(phase=phase), **fields
    )


def designated_development_run(team, *, decide=True, metrics=METRICS, purpose="test"):
    """Planning and data approved, the development gate judged on one run with criteria on
    usefulness, safety and fairness; submitted (designating the run) and, with `decide`,
    approved."""
    pass_gate(team, Phase.PLANNING)
    pass_gate(team, Phase.DATA)
    criterion(team, Phase.DEVELOPMENT, metric="auroc", comparator=">=", threshold=0.5)
    criterion(
        team,
        Phase.DEVELOPMENT,
        metric="hallucination_rate",
        comparator="<=",
        threshold=0.2,
        required=False,
    )
    criterion(
        team,
        Phase.DEVELOPMENT,
        metric="recall",
        scope="each_group",
        group_attribute="sex",
        comparator=">=",
        threshold=0.01,
    )
    run = evaluate(team, Phase.DEVELOPMENT, metrics=metrics, purpose=purpose)
    settle(team, Phase.DEVELOPMENT)
    gate = team.project.gates.get(phase=Phase.DEVELOPMENT)
    gate_services.gate_submit(actor=team.creator, gate=gate, evidence_runs=[run])
    if decide:
        approve(team, team.project.gates.get(phase=Phase.DEVELOPMENT))
    return run


def parse(body: bytes) -> ET.Element:
    # The card this module just built and validated, not untrusted input.
    return ET.fromstring(body)  # noqa: S314


def text_at(root: ET.Element, path: str) -> str | None:
    element = root.find("mc:" + path.replace("/", "/mc:"), NS)
    assert element is not None, f"no element {path}"
    return element.text


def metric_results(root: ET.Element, category: str) -> dict[str, dict]:
    return {
        result.findtext("mc:Label", namespaces=NS): json.loads(
            result.findtext("mc:ValueJson", namespaces=NS)
        )
        for result in root.findall(f"mc:KeyMetrics/mc:{category}/mc:Results/mc:MetricResult", NS)
    }


# --- The vendored standards -------------------------------------------------------------------


def test_the_vendored_standards_are_the_published_files_unmodified():
    shipped = {
        path.relative_to(STANDARDS_DIR).as_posix()
        for path in STANDARDS_DIR.rglob("*")
        if path.is_file() and path.name != "README.md"
    }
    assert shipped == set(ORIGINALS)
    for name, digest in ORIGINALS.items():
        assert hashlib.sha256((STANDARDS_DIR / name).read_bytes()).hexdigest() == digest, name
    credit = (STANDARDS_DIR / "README.md").read_text()
    for words in (
        "Coalition for Health AI",
        "CC BY-ND 4.0",
        "https://github.com/coalition-for-health-ai/mc-schema",
        "2025-10-28",
        "unmodified",
        "45 CFR 170.315(b)(11)(iv)(B)",
    ):
        assert words in credit


def test_chais_own_examples_validate_with_the_network_blocked(offline):
    for name in EXAMPLES:
        assert validate_chai((STANDARDS_DIR / name).read_bytes()) == [], name
    assert offline == []


def test_an_element_out_of_order_is_refused_saying_where():
    example = (STANDARDS_DIR / EXAMPLES[0]).read_bytes()
    swapped = example.replace(
        b"<ReleaseStage>Commercial</ReleaseStage>\n\t\t<ReleaseDate>June 2024</ReleaseDate>",
        b"<ReleaseDate>June 2024</ReleaseDate>\n\t\t<ReleaseStage>Commercial</ReleaseStage>",
    )
    assert swapped != example
    problems = validate_chai(swapped)
    assert len(problems) == 1
    assert problems[0].startswith("/AppliedModelCard/ReleaseInfo")
    assert "ReleaseDate" in problems[0] and "ReleaseStage" in problems[0]


def test_what_is_not_a_card_is_refused_without_resolving_anything(offline):
    assert validate_chai(b"<AppliedModelCard")[0].startswith("not a readable XML document")
    entity = (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "http://example.com/x">]><a>&e;</a>'
    )
    assert validate_chai(entity)[0].startswith("not a readable XML document")
    other = b'<AppliedModelCard xmlns="https://example.com/other"/>'
    assert validate_chai(other)
    assert offline == []


# --- The card ------------------------------------------------------------------------------------


def test_a_project_with_nothing_recorded_gets_a_valid_card_naming_every_gap(team, offline):
    project = team.project
    built = build_chai(project, chain=chain_state(project))
    assert built.format == "xml" and built.file_name == f"{project.slug}-chai-model-card.xml"
    assert validate_chai(built.body) == []
    assert built.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    assert built.body.endswith(b"</AppliedModelCard>\n")
    expected = [fact.key for fact in missing_facts({}, "chai")]
    assert built.missing_facts == [*expected, "release_version", "description", "key_metrics"]
    assert built.content["missing_facts"] == built.missing_facts
    root = parse(built.body)
    assert text_at(root, "BasicInfo/ModelName") == project.name
    assert text_at(root, "BasicInfo/ModelDeveloper") == (
        "Not provided: Developer (record it on the project's Model facts page)"
    )
    assert text_at(root, "UsesAndDirections/PrimaryIntendedUsers") == "Hospitalists"
    assert text_at(root, "UsesAndDirections/IntendedUseAndWorkflow") == (
        "Draft discharge summaries for physician review.\n\nClinical setting: Inpatient medicine"
    )
    assert text_at(root, "Warnings/ClinicalRiskLevel").startswith("Medium")
    assert text_at(root, "ReleaseInfo/ReleaseVersion").startswith("Not provided: model version")
    # Optional elements without a value are left out, not filled in.
    for optional in ("ReleaseInfo/EHRCompatibility", "TrustIngredients/AISystemFacts/Security"):
        assert root.find("mc:" + optional.replace("/", "/mc:"), NS) is None
    assert root.find("mc:ModelSummary/mc:Keywords", NS) is not None
    for category in chai.CATEGORIES:
        assert metric_results(root, category) == {
            "No designated evaluation run": {"kind": "single", "value": None}
        }
        goal = text_at(root, f"KeyMetrics/{category}/MetricGoal")
        assert goal.startswith("Not provided: no designated evaluation run")
    # Every "Not provided" in the card is accounted for in the missing list.
    stand_ins = [e.text for e in root.iter() if (e.text or "").startswith("Not provided:")]
    assert len([t for t in stand_ins if "Model facts page" in t]) == len(expected)
    assert offline == []


def test_every_recorded_fact_is_in_its_element_and_nothing_is_missing(team):
    team.project.description = "Summarises inpatient stays."
    team.project.save()
    record_facts(team, FULL_FACTS)
    run = designated_development_run(team)
    built = build_chai(team.project, chain=chain_state(team.project))
    assert validate_chai(built.body) == []
    assert built.missing_facts == []
    root = parse(built.body)
    for fact in FACTS:
        for use in fact.used_by:
            if not use.startswith("chai:"):
                continue
            path = use.removeprefix("chai:")
            if fact.key == "keywords":
                found = [k.text for k in root.findall("mc:ModelSummary/mc:Keywords/mc:Keyword", NS)]
                assert found == ["discharge", "summaries"]
            elif fact.key == "ehr_compatibility":
                found = [
                    e.text for e in root.findall("mc:ReleaseInfo/mc:EHRCompatibility/mc:EHR", NS)
                ]
                assert found == ["Epic", "Cerner"]
            else:
                assert text_at(root, path) == FULL_FACTS[fact.key], path
    assert text_at(root, "ModelSummary/Summary") == "Summarises inpatient stays."
    assert text_at(root, "ReleaseInfo/ReleaseVersion") == run.model_version.label
    assert built.content["card"]["BasicInfo"]["ModelDeveloper"] == FULL_FACTS["developer"]
    assert built.content["xml_sha256"] == hashlib.sha256(built.body).hexdigest()
    assert built.content["key_metrics_evidence"]["runs"] == [run.number]
    # The content is JSON the seal can be computed over, and a function of the data only.
    canonical_json(built.content)
    assert build_chai(team.project, chain=built.content["chain"]).content == built.content


def test_key_metrics_are_the_designated_results_in_chais_value_form(team):
    """Proportions stay fractions: each estimate, lower and upper equal the stored result."""
    run = designated_development_run(team, metrics=FAIR_METRICS)
    # A later run on the approved gate is not its evidence and stays off the card.
    later = evaluate(team, Phase.DEVELOPMENT, label="d2", model="v2", seed=7)
    root = parse(build_chai(team.project, chain=chain_state(team.project)).body)
    usefulness = metric_results(root, "UsefulnessUsabilityEfficacy")
    fairness = metric_results(root, "FairnessEquity")
    safety = metric_results(root, "SafetyReliability")
    assert set(usefulness) == {"Sensitivity (overall)", "AUROC (overall)"}
    assert set(safety) == {"Expected calibration error (overall)", "Hallucination rate (overall)"}
    auroc = EvaluationResult.objects.get(run=run, metric="auroc", scope="overall")
    assert usefulness["AUROC (overall)"] == {
        "kind": "estimate_ci",
        "estimate": auroc.value,
        "lower": auroc.ci_low,
        "upper": auroc.ci_high,
        "level": 95,
    }
    written = root.find("mc:KeyMetrics/mc:UsefulnessUsabilityEfficacy/mc:Results", NS)
    assert '{"kind":"estimate_ci","estimate":' in ET.tostring(written, encoding="unicode")
    results = EvaluationResult.objects.filter(run=run).exclude(metric="confusion_matrix")
    shown = {**usefulness, **fairness, **safety}
    assert len(shown) == results.count()
    for result in results:
        label = chai.result_label(result)
        if result.ci_low is None:
            assert shown[label] == {"kind": "single", "value": result.value}
        else:
            assert (shown[label]["estimate"], shown[label]["lower"], shown[label]["upper"]) == (
                result.value,
                result.ci_low,
                result.ci_high,
            )
    assert "Sensitivity (sex = F)" in fairness
    assert "Demographic parity difference (between sex groups)" in fairness
    assert f"Run {later.number}" not in ET.tostring(root, encoding="unicode")

    validation = text_at(
        root, "KeyMetrics/UsefulnessUsabilityEfficacy/ValidationProcessAndJustification"
    )
    assert f"Run {run.number} measured model version v1 on dataset version d1" in validation
    assert "400 records" in validation
    assert "Model development and validation gate, which was approved on" in validation
    goal = text_at(root, "KeyMetrics/UsefulnessUsabilityEfficacy/MetricGoal")
    assert "auroc >= 0.5 (required)" in goal
    assert "auroc >= 0.5 (required): pass; observed auroc" in text_at(
        root, "KeyMetrics/UsefulnessUsabilityEfficacy/Interpretation"
    )
    assert "hallucination_rate <= 0.2 (advisory): pass" in text_at(
        root, "KeyMetrics/SafetyReliability/Interpretation"
    )
    assert "each_group:recall(sex) >= 0.01 (required): pass" in text_at(
        root, "KeyMetrics/FairnessEquity/Interpretation"
    )
    testing = text_at(root, "KeyMetrics/FairnessEquity/TestingDataDescription")
    assert testing.startswith("Dataset version d1 (test data): 400 records, SHA-256 ")


def test_a_gate_in_review_is_used_until_one_is_approved_and_says_so(team):
    run = designated_development_run(team, decide=False)
    root = parse(build_chai(team.project, chain=chain_state(team.project)).body)
    validation = text_at(root, "KeyMetrics/SafetyReliability/ValidationProcessAndJustification")
    assert f"Run {run.number}" in validation
    assert "gate, which is in review (round 1) and not yet approved" in validation
    # Nothing is approved with a designated run yet: the release is the latest model version.
    assert text_at(root, "ReleaseInfo/ReleaseVersion") == "v1"


def test_a_category_without_results_says_so_and_the_card_stays_valid(team):
    designated_development_run(team, metrics=["auroc", "recall"])
    built = build_chai(team.project, chain=chain_state(team.project))
    assert validate_chai(built.body) == []
    assert "key_metrics" not in built.missing_facts
    root = parse(built.body)
    assert metric_results(root, "SafetyReliability") == {
        "No safety and reliability metric in the designated evaluation run": {
            "kind": "single",
            "value": None,
        }
    }
    # The criteria on metrics the run did not measure have no data, in words.
    assert "hallucination_rate <= 0.2 (advisory): no data" in text_at(
        root, "KeyMetrics/SafetyReliability/Interpretation"
    )


def test_markup_and_control_characters_in_facts_stay_text(team):
    record_facts(team, {"developer": MARKUP, "known_risks": "line one\r\nline two\x07 end"})
    built = build_chai(team.project, chain=chain_state(team.project))
    assert validate_chai(built.body) == []
    assert b"&lt;b&gt;Acme&lt;/b&gt; &amp; Sons &lt;script&gt;" in built.body
    assert b"<b>" not in built.body and b"<script>" not in built.body
    root = parse(built.body)
    assert text_at(root, "BasicInfo/ModelDeveloper") == MARKUP
    assert text_at(root, "Warnings/KnownRisksAndLimitations") == "line one\nline two\ufffd end"
    assert built.content["card"]["Warnings"]["KnownRisksAndLimitations"] == (
        "line one\nline two\ufffd end"
    )


def test_an_invalid_card_is_a_bug_that_raises(team, monkeypatch):
    monkeypatch.setattr(chai, "card_xml", lambda card: b"<AppliedModelCard/>\n")
    with pytest.raises(chai.CardInvalid, match="does not validate"):
        build_chai(team.project, chain=chain_state(team.project))


# --- The PDF rendering ---------------------------------------------------------------------------

STANDARD_INFO_KEYS = {
    "/Title",
    "/Author",
    "/Subject",
    "/Keywords",
    "/Creator",
    "/Producer",
    "/CreationDate",
    "/ModDate",
    "/Trapped",
}


def test_the_pdf_carries_the_card_as_chai_asks(team, offline):
    record_facts(team, {"developer": MARKUP, "funding_source": "Fondation Hôpital – innovation"})
    designated_development_run(team)
    built = build_chai(team.project, chain=chain_state(team.project), format="pdf")
    xml = build_chai(team.project, chain=chain_state(team.project)).body
    assert built.format == "pdf" and built.file_name.endswith("-chai-model-card.pdf")
    assert built.body.startswith(b"%PDF-")
    assert built.content["xml_sha256"] == hashlib.sha256(xml).hexdigest()
    with pikepdf.open(io.BytesIO(built.body)) as pdf:
        custom = set(pdf.docinfo.keys()) - STANDARD_INFO_KEYS
        assert custom == {"/chaiMcXml", "/chaiMcSoftwareId"}
        embedded = str(pdf.docinfo["/chaiMcXml"]).encode("utf-8")
        assert embedded == xml
        assert validate_chai(embedded) == []
        assert str(pdf.docinfo["/chaiMcSoftwareId"]).startswith("llm-governance ")
        assert str(pdf.docinfo["/chaiMcSoftwareId"]).endswith(" (audits.reports.chai)")
        assert pdf.attachments["chai-model-card.xml"].get_file().read_bytes() == xml
    text = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=built.body, capture_output=True, check=True
    ).stdout.decode()
    # The user's markup is printed as typed, not interpreted.
    assert "<b>Acme</b> & Sons <script>alert(1)</script>" in text
    assert "Fondation Hôpital – innovation" in text
    assert "Not provided: Developer contact" in text
    assert "AUROC (overall)" in text and "Key metrics" in text
    assert offline == []
