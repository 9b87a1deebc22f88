"""The HTI-1 source attributes: the rule's 31 rows in order, each value from one place in the
product, "not available" only where the rule allows it, and exactly what is missing."""

import csv
import json

import pytest
from django.template.loader import render_to_string

from audits.reports import hti1
from audits.reports.chai import STANDARDS_DIR, result_label, value_form, value_text
from audits.reports.common import canonical_json, chain_state
from audits.reports.hti1 import build_hti1, hti1_attributes
from lifecycle.evaluations.models import EvaluationResult
from lifecycle.gates import services as gate_services
from lifecycle.phases import Phase
from lifecycle.projects.facts import FACTS
from tests.audits.reports.test_chai import (
    FAIR_METRICS,
    FULL_FACTS,
    MARKUP,
    designated_development_run,
    evaluate,
    record_facts,
)
from tests.factories import settle

pytestmark = pytest.mark.django_db

CSV_FILE = STANDARDS_DIR / "hti1" / "hti1_predictive_dsi_source_attributes.csv"

# With nothing recorded, what is missing, in the rule's order: every attribute the rule does
# not let be "not available", except intended use and users (held since registration).
MISSING_WHEN_NOTHING_RECORDED = [
    "developer",
    "developer_contact",
    "funding_source",
    "output_description",
    "output_type",
    "target_population",
    "decision_role",
    "out_of_scope_uses",
    "known_risks",
    "training_criteria",
    "demographic_features",
    "demographic_representativeness",
    "training_relevance",
    "fairness_approach",
    "bias_mitigation",
    "development_evaluation",
    "development_fairness_evaluation",
    "validity_monitoring",
    "fairness_monitoring",
]


def rule_rows() -> list[dict[str, str]]:
    with CSV_FILE.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def by_id(attributes) -> dict:
    return {a["element_id"] if isinstance(a, dict) else a.element_id: a for a in attributes}


def monitored_deployment(team):
    """The deployment gate (development approved) in review, judged on a run on monitoring
    (local) data."""
    run = evaluate(
        team, Phase.DEPLOYMENT, metrics=FAIR_METRICS, purpose="monitoring", label="m1", model="v2"
    )
    settle(team, Phase.DEPLOYMENT)
    gate = team.project.gates.get(phase=Phase.DEPLOYMENT)
    gate_services.gate_submit(actor=team.creator, gate=gate, evidence_runs=[run])
    return run


def test_the_31_attributes_come_in_the_rules_order_with_its_paragraphs_and_groups(team):
    attributes = hti1_attributes(team.project)
    rows = rule_rows()
    assert len(attributes) == len(rows) == 31
    assert [a.element_id for a in attributes] == [row["element_id"] for row in rows]
    assert [a.paragraph for a in attributes] == [row["cfr_paragraph"] for row in rows]
    assert [a.attribute for a in attributes] == [row["attribute"] for row in rows]
    groups = list(dict.fromkeys(a.group for a in attributes))
    assert len(groups) == 9
    assert groups[0] == "(B)(1) Details and output of the intervention"
    assert groups[-1] == "(B)(9) Update and continued validation or fairness assessment schedule"
    assert by_id(attributes)["HTI:B6.ii"].group == "(B)(6) External validation process"


def test_every_attribute_has_a_source_in_the_product():
    """A model fact names each attribute it fills; the others are the registration's or the
    evaluations'. Any attribute left without a source would always be missing."""
    declared = {use.removeprefix("hti1:") for f in FACTS for use in f.used_by if "hti1:" in use}
    rows = {row["element_id"] for row in rule_rows()}
    assert declared <= rows
    assert rows == declared | set(hti1.PROJECT_FIELDS) | set(hti1.EVALUATED)
    assert not declared & (set(hti1.PROJECT_FIELDS) | set(hti1.EVALUATED))


def test_with_nothing_recorded_not_available_is_used_only_where_the_rule_allows(team):
    project = team.project
    built = build_hti1(project, chain=chain_state(project))
    assert built.format == "json"
    assert built.file_name == f"{project.slug}-hti1-source-attributes.json"
    assert built.body.endswith(b"}\n") and json.loads(built.body) == built.content
    assert built.body.decode().startswith('{\n  "format": "llm-governance-report",')
    canonical_json(built.content)
    content = built.content
    assert {k: content[k] for k in ("format", "version", "kind", "project", "regulation")} == {
        "format": "llm-governance-report",
        "version": 1,
        "kind": "hti1",
        "project": {"slug": project.slug, "name": project.name},
        "regulation": "45 CFR 170.315(b)(11)(iv)(B)",
    }
    assert content["chain"] == chain_state(project)
    allowed = {
        row["element_id"]: row["may_be_indicated_not_available"] == "True" for row in rule_rows()
    }
    statuses = {a["element_id"]: a["status"] for a in content["attributes"]}
    for element_id, status in statuses.items():
        if element_id in ("HTI:B2.i", "HTI:B2.iii"):
            assert status == "provided"
        elif allowed[element_id]:
            assert status == "not available", element_id
        else:
            assert status == "missing", element_id
    assert sum(allowed.values()) == 11
    assert built.missing_facts == content["missing_facts"] == MISSING_WHEN_NOTHING_RECORDED
    attributes = by_id(content["attributes"])
    assert attributes["HTI:B2.i"] == {
        "element_id": "HTI:B2.i",
        "paragraph": "45 CFR 170.315(b)(11)(iv)(B)(2)(i)",
        "attribute": "Intended use of the intervention",
        "group": "(B)(2) Purpose of the intervention",
        "value": "Draft discharge summaries for physician review.",
        "status": "provided",
        "source": "project: intended use",
    }
    assert attributes["HTI:B2.iii"]["value"] == "Hospitalists"
    assert attributes["HTI:B7.i"]["value"] is None
    assert attributes["HTI:B7.i"]["source"].startswith("designated evaluation runs of the develop")
    assert attributes["HTI:B1.ii"]["source"] == "model facts: funding_source"


def test_a_partly_given_attribute_is_missing_never_not_available(team):
    record_facts(team, {"developer": MARKUP, "external_validation_party": "University lab"})
    built = build_hti1(team.project, chain=chain_state(team.project))
    attributes = by_id(built.content["attributes"])
    assert attributes["HTI:B1.i"]["status"] == "missing"
    assert attributes["HTI:B1.i"]["value"] == f"Developer: {MARKUP}"
    assert "developer" not in built.missing_facts and "developer_contact" in built.missing_facts
    assert attributes["HTI:B6.ii"]["status"] == "provided"
    assert attributes["HTI:B6.ii"]["value"] == "University lab"
    assert attributes["HTI:B6.i"]["status"] == "not available"


def test_everything_recorded_and_evaluated_leaves_nothing_missing(team):
    record_facts(team, FULL_FACTS)
    development = designated_development_run(team, metrics=FAIR_METRICS)
    local = monitored_deployment(team)
    built = build_hti1(team.project, chain=chain_state(team.project))
    assert built.missing_facts == []
    attributes = by_id(built.content["attributes"])
    assert {a["status"] for a in attributes.values()} == {"provided"}
    assert attributes["HTI:B1.i"]["value"] == (
        f"Developer: {FULL_FACTS['developer']}\nDeveloper contact: "
        f"{FULL_FACTS['developer_contact']}"
    )
    assert attributes["HTI:B9.ii"]["value"] == FULL_FACTS["correction_frequency"]

    # Validity in same-source test data: the development gate's designated run, overall.
    validity = attributes["HTI:B7.i"]
    assert validity["source"] == (
        f"evaluation run {development.number} (designated evidence of the Model development "
        "and validation gate, approved)"
    )
    auroc = EvaluationResult.objects.get(run=development, metric="auroc", scope="overall")
    assert f"AUROC (overall): {value_text(value_form(auroc))}" in validity["value"].splitlines()
    assert "(sex = F)" not in validity["value"]
    assert "400 records" in validity["value"]
    fairness = attributes["HTI:B7.ii"]["value"]
    parity = EvaluationResult.objects.get(
        run=development, metric="demographic_parity_difference", group_attribute="sex"
    )
    assert f"{result_label(parity)}: {value_text(value_form(parity))}" in fairness.splitlines()

    # Other-source and local data: the deployment gate's run on monitoring data (in review).
    for element_id in ("HTI:B7.iii", "HTI:B7.iv", "HTI:B8.ii", "HTI:B8.iv"):
        assert attributes[element_id]["source"] == (
            f"evaluation run {local.number} (designated evidence of the Deployment (pilot) "
            "gate, in review)"
        ), element_id
    assert "dataset version m1 (monitoring data" in attributes["HTI:B8.ii"]["value"]
    assert "is in review (round 1) and not yet approved" in attributes["HTI:B8.ii"]["value"]
    local_auroc = EvaluationResult.objects.get(run=local, metric="auroc", scope="overall")
    assert (
        f"AUROC (overall): {value_text(value_form(local_auroc))}"
        in attributes["HTI:B8.ii"]["value"].splitlines()
    )
    assert "between sex groups" in attributes["HTI:B8.iv"]["value"]


def test_a_development_run_on_monitoring_data_is_not_same_source_test_data(team):
    designated_development_run(team, purpose="monitoring")
    built = build_hti1(team.project, chain=chain_state(team.project))
    attributes = by_id(built.content["attributes"])
    assert attributes["HTI:B7.i"]["status"] == "missing"
    assert "development_evaluation" in built.missing_facts
    # Nor is it the deployment's local data.
    assert attributes["HTI:B8.ii"]["status"] == "not available"


def test_the_table_groups_the_attributes_and_escapes_every_value(team):
    record_facts(team, {"developer": MARKUP, "developer_contact": "a@example.org"})
    page = render_to_string(
        "reports/partials/hti1_table.html", {"attributes": hti1_attributes(team.project)}
    )
    assert page.count('<tr id="hti1-') == 31
    assert page.count('<tr class="group">') == 9
    assert "(B)(7) Quantitative measures of performance" in page
    assert "<b>Acme</b>" not in page and "<script>" not in page
    assert "&lt;b&gt;Acme&lt;/b&gt; &amp; Sons &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<!DOCTYPE" not in page.upper() and "<html" not in page and "<body" not in page
    assert page.count('data-status="not available"') == 11
    assert page.count('<span class="badge fail">✗ missing</span>') == 17
    assert page.count('<span class="badge pass">✓ provided</span>') == 3
    # The content's attributes render the same table.
    content = build_hti1(team.project, chain=chain_state(team.project)).content
    assert (
        render_to_string("reports/partials/hti1_table.html", {"attributes": content["attributes"]})
        == page
    )
