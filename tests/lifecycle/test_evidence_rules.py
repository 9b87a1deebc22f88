"""The evidence a gate is judged on (issue 12): coverage of the dataset version, declared
subsets, designated evidence bound at submission, minimum evidence, the fit of an upload to the
gate's criteria, the consequences of a reopened approval, and who must act next."""

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from audits.models import Action, AuditEvent
from demo.records import binary_classifier
from governance.roles import Role
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import GateState, SignatureInvalidation
from lifecycle.gates.readiness import readiness_of
from lifecycle.phases import Phase
from tests.factories import approve, make_team, make_versions, pass_gate, settle, sign

pytestmark = pytest.mark.django_db

METRICS = ["recall", "auroc", "demographic_parity_difference"]


def upload(team, n=400, *, phase=Phase.PLANNING, subset_reason="", metrics=METRICS, seed=1):
    """A scored run of `n` records on the project's dataset version (400 rows)."""
    if not team.project.model_versions.exists():
        make_versions(team)
    run = evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=team.project.gates.get(phase=phase),
        model_version=team.project.model_versions.get(),
        dataset_version=team.project.dataset_versions.get(),
        upload=ContentFile(
            binary_classifier(seed=seed, n=n, prevalence=0.3, separation=1.5), name="r.jsonl"
        ),
        metrics=metrics,
        resamples=100,
        subset_reason=subset_reason,
    )
    assert run_evaluation.apply(args=[run.pk]).get() == "succeeded"
    run.refresh_from_db()
    return run


def criterion(team, phase=Phase.PLANNING, **fields):
    defaults = {"metric": "auroc", "bound": "value", "comparator": ">=", "threshold": 0.5}
    return gate_services.gate_criterion_create(
        actor=team[Role.COMMITTEE_CHAIR],
        gate=team.project.gates.get(phase=phase),
        **{**defaults, **fields},
    )


def gate_of(team, phase=Phase.PLANNING):
    return team.project.gates.get(phase=phase)


# --- Coverage ----------------------------------------------------------------------------------


def test_an_upload_that_does_not_cover_its_dataset_version_is_refused_naming_both_counts():
    team = make_team()
    make_versions(team, rows=6000)
    with pytest.raises(ValidationError) as refused:
        upload(team, n=400)
    message = str(refused.value)
    assert "400 records" in message and "6,000 rows" in message
    assert not team.project.evaluation_runs.exists()


def test_a_declared_subset_is_stored_shown_and_never_satisfies_a_required_criterion():
    team = make_team()
    make_versions(team, rows=6000)
    criterion(team, threshold=0.5)
    criterion(team, threshold=0.5, required=False)
    run = upload(team, n=400, subset_reason="Only the ED notes with a confirmed label.")
    assert run.is_subset
    required, advisory = readiness_of(gate_of(team)).verdicts
    # A subset is no preview: the gate has no run that covers its dataset.
    assert required.status == "no data"
    assert advisory.status == "no data"
    # Even designated, the subset never satisfies the required criterion.
    settle(team, Phase.PLANNING)
    gate_services.gate_submit(actor=team.creator, gate=gate_of(team), evidence_runs=[run])
    required, advisory = readiness_of(gate_of(team)).verdicts
    assert required.status == "insufficient evidence"
    assert "declared subset" in required.detail
    assert advisory.status == "pass"


def test_a_subset_reason_on_a_whole_dataset_is_refused():
    team = make_team()
    make_versions(team, rows=400)
    with pytest.raises(ValidationError, match="not a subset"):
        upload(team, n=400, subset_reason="all of it")


# --- Designated evidence --------------------------------------------------------------------


def test_submission_designates_the_latest_covering_run_and_later_uploads_never_change_the_verdict():
    team = make_team()
    criterion(team, threshold=0.7)
    first = upload(team, seed=1)
    pass_gate(team, Phase.PLANNING)
    gate = gate_of(team)
    assert gate.state == GateState.APPROVED
    assert list(gate.evidence_runs.all()) == [first]
    before = readiness_of(gate).verdicts[0]
    invalidations = SignatureInvalidation.objects.count()

    # A weak model's run arrives after approval: recorded, shown, but not the evidence.
    newer = evaluation_services.evaluation_run_start(
        actor=team[Role.DATA_STEWARD],
        gate=gate,
        model_version=team.project.model_versions.get(),
        dataset_version=team.project.dataset_versions.get(),
        upload=ContentFile(
            binary_classifier(seed=2, n=400, prevalence=0.3, separation=0.0), name="weak.jsonl"
        ),
        metrics=["recall"],
        resamples=100,
    )
    run_evaluation.apply(args=[newer.pk])
    readiness = readiness_of(gate_of(team))
    assert gate_of(team).state == GateState.APPROVED
    assert readiness.verdicts[0].status == before.status == "pass"
    assert readiness.newer_run.pk == newer.pk
    assert SignatureInvalidation.objects.count() == invalidations


def test_changing_the_evidence_in_review_is_audited_and_invalidates_signatures():
    team = make_team()
    criterion(team)
    first = upload(team, seed=1)
    second = upload(team, seed=2)
    settle(team, Phase.PLANNING)
    gate_services.gate_submit(actor=team.creator, gate=gate_of(team), evidence_runs=[first])
    signature = sign(team, gate_of(team), Role.COMMITTEE_CHAIR)
    round_before = gate_of(team).review_round

    gate_services.gate_evidence_designate(
        actor=team.creator,
        gate=gate_of(team),
        evidence_runs=[second],
        reason="Run 2 is the corrected label set.",
    )
    gate = gate_of(team)
    assert list(gate.evidence_runs.all()) == [second]
    assert gate.review_round == round_before + 1
    assert signature.__class__.objects.get(pk=signature.pk).invalidation.kind == "invalidated"
    event = AuditEvent.objects.filter(action=Action.GATE_EVIDENCE_DESIGNATE).get()
    assert event.before == {"evidence_runs": [first.number]}
    assert event.after["evidence_runs"] == [second.number]
    assert event.after["invalidated_signatures"] == [signature.pk]
    assert event.reason == "Run 2 is the corrected label set."


def test_only_the_lead_changes_evidence_and_only_in_review_with_a_reason():
    team = make_team()
    run = upload(team)
    with pytest.raises(ValidationError, match="open and cannot"):
        gate_services.gate_evidence_designate(
            actor=team.creator, gate=gate_of(team), evidence_runs=[run], reason="x"
        )
    settle(team, Phase.PLANNING)
    gate_services.gate_submit(actor=team.creator, gate=gate_of(team), evidence_runs=[])
    with pytest.raises(ValidationError, match="Say why"):
        gate_services.gate_evidence_designate(
            actor=team.creator, gate=gate_of(team), evidence_runs=[run], reason=" "
        )
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        gate_services.gate_evidence_designate(
            actor=team[Role.COMMITTEE_CHAIR], gate=gate_of(team), evidence_runs=[run], reason="x"
        )


def test_a_run_of_another_gate_cannot_be_evidence():
    team = make_team()
    run = upload(team)
    pass_gate(team, Phase.PLANNING)
    settle(team, Phase.DATA)
    with pytest.raises(ValidationError, match="not an evaluation of this gate"):
        gate_services.gate_submit(
            actor=team.creator, gate=gate_of(team, Phase.DATA), evidence_runs=[run]
        )


# --- A reopened approval -----------------------------------------------------------------------


def test_reopening_an_approved_gate_locks_the_next_phase_until_it_is_approved_again():
    team = make_team()
    pass_gate(team, Phase.PLANNING)
    assert gate_of(team, Phase.DATA).state == GateState.OPEN
    item = team.project.checklist_items.filter(phase=Phase.PLANNING).first()
    from lifecycle.checklists import services as checklist_services

    checklist_services.checklist_item_update(
        actor=team.creator, item=item, status="done", justification=""
    )
    checklist_services.evidence_add_note(actor=team.creator, item=item, note="A late addition.")
    planning = gate_of(team)
    assert planning.state == GateState.IN_REVIEW
    assert gate_of(team, Phase.DATA).state == GateState.LOCKED
    event = AuditEvent.objects.filter(action=Action.EVIDENCE_ADD).latest("id")
    assert event.after["next_gate_locked"] == Phase.DATA
    data = readiness_of(gate_of(team, Phase.DATA))
    assert data.next_action == (
        "waiting for: the Project definition and planning gate to be approved again "
        "(it was reopened)"
    )

    approve(team, planning)
    assert gate_of(team).state == GateState.APPROVED
    assert gate_of(team, Phase.DATA).state == GateState.OPEN


# --- Minimum evidence --------------------------------------------------------------------------


def test_below_the_minimum_records_the_verdict_is_insufficient_evidence_never_pass():
    team = make_team()
    criterion(team, threshold=0.5, min_records=1000)
    criterion(team, metric="recall", scope="each_group", threshold=0.1, min_group_records=250)
    criterion(
        team,
        metric="demographic_parity_difference",
        comparator="<=",
        threshold=1.0,
        min_group_records=250,
    )
    upload(team)
    overall, groups, fairness = readiness_of(gate_of(team)).verdicts
    assert overall.status == "insufficient evidence"
    assert "400 records, fewer than 1,000" in overall.detail
    assert groups.status == "insufficient evidence"
    assert "fewer than 250" in groups.detail
    assert fairness.status == "insufficient evidence"
    assert not any(v.passed for v in (overall, groups, fairness))


# --- Fit before upload -------------------------------------------------------------------------


def test_an_upload_lacking_what_the_criteria_need_is_warned_about_before_anything_changes():
    team = make_team()
    make_versions(team)
    criterion(team, metric="ece", comparator="<=", threshold=0.2)
    criterion(team, metric="recall", scope="each_group", group_attribute="language", threshold=0.5)
    checked = evaluation_services.evaluation_upload_check(
        user=team[Role.DATA_STEWARD],
        gate=gate_of(team),
        model_version=team.project.model_versions.get(),
        dataset_version=team.project.dataset_versions.get(),
        upload=ContentFile(
            binary_classifier(seed=1, n=400, prevalence=0.3, separation=1.5), name="r.jsonl"
        ),
        metrics=["auroc", "recall"],
    )
    assert len(checked.warnings) == 2
    assert "needs the metric ece" in checked.warnings[0]
    assert "group attribute “language”" in checked.warnings[1]
    assert not team.project.evaluation_runs.exists()


# --- Who acts next -----------------------------------------------------------------------------


def test_next_action_names_who_must_act_and_on_what():
    team = make_team()
    gate = gate_of(team)
    assert readiness_of(gate).next_action.startswith("waiting for: project lead to settle")
    settle(team, Phase.PLANNING)
    assert readiness_of(gate).next_action == "waiting for: project lead to submit"
    gate_services.gate_submit(actor=team.creator, gate=gate)
    required = readiness_of(gate).required_roles
    sign(team, gate_of(team), required[0])
    action = readiness_of(gate_of(team)).next_action
    assert action.startswith("waiting for: ")
    assert action.endswith(" approval")
    assert Role(required[0]).label.lower() not in action


def test_runs_are_numbered_per_project():
    first, second = make_team(), make_team()
    assert upload(first).number == 1
    assert upload(second).number == 1
    assert upload(first, seed=3).number == 2


def test_a_bound_is_named_as_a_bound():
    team = make_team()
    criterion(team, metric="recall", bound="ci_low", threshold=0.1)
    upload(team)
    [verdict] = readiness_of(gate_of(team)).verdicts
    assert verdict.observed_text.startswith("lower bound ")
    assert " of recall " in verdict.observed_text and "95% interval" in verdict.observed_text


def test_the_command_line_checks_coverage_before_an_upload(tmp_path):
    import io

    from django.core.management import CommandError, call_command

    path = tmp_path / "records.jsonl"
    path.write_bytes(binary_classifier(seed=1, n=50, prevalence=0.3, separation=1.5))
    with pytest.raises(CommandError) as refused:
        call_command(
            "evaluate", str(path), "--metrics", "auroc", "--rows", "60", stdout=io.StringIO()
        )
    assert refused.value.returncode == 2
    assert "50 records" in str(refused.value) and "60 rows" in str(refused.value)
    out = io.StringIO()
    call_command("evaluate", str(path), "--metrics", "auroc", "--rows", "50", stdout=out)
    assert '"n_records": 50' in out.getvalue()


def test_a_fairness_minimum_per_subgroup_without_subgroup_sizes_is_insufficient_evidence():
    team = make_team()
    criterion(
        team,
        metric="demographic_parity_difference",
        group_attribute="sex",
        comparator="<=",
        threshold=1.0,
        min_group_records=50,
    )
    upload(team, metrics=["demographic_parity_difference"])
    [verdict] = readiness_of(gate_of(team)).verdicts
    assert verdict.status == "insufficient evidence"
    assert "no subgroup sizes" in verdict.detail


def test_a_minimum_per_subgroup_needs_a_criterion_on_subgroups():
    team = make_team()
    with pytest.raises(ValidationError) as refused:
        criterion(team, min_group_records=100)
    assert "min_group_records" in refused.value.message_dict


def test_a_missing_fairness_metric_is_warned_about_before_upload():
    team = make_team()
    make_versions(team)
    criterion(team, metric="demographic_parity_difference", comparator="<=", threshold=0.1)
    checked = evaluation_services.evaluation_upload_check(
        user=team[Role.DATA_STEWARD],
        gate=gate_of(team),
        model_version=team.project.model_versions.get(),
        dataset_version=team.project.dataset_versions.get(),
        upload=ContentFile(
            binary_classifier(seed=1, n=400, prevalence=0.3, separation=1.5), name="r.jsonl"
        ),
        metrics=["auroc"],
    )
    assert ["needs the metric demographic_parity_difference" in w for w in checked.warnings] == [
        True
    ]


def test_a_phase_locked_again_says_which_reopened_gate_holds_it_and_the_reason_clears():
    from lifecycle.checklists import services as checklist_services

    team = make_team()
    pass_gate(team, Phase.PLANNING)
    item = team.project.checklist_items.filter(phase=Phase.PLANNING).first()
    checklist_services.evidence_add_note(actor=team.creator, item=item, note="A late addition.")
    data = readiness_of(gate_of(team, Phase.DATA))
    assert data.gate.state == GateState.LOCKED
    [(phase, why)] = data.earlier_not_approved
    assert phase == "Project definition and planning" and "evidence" in why
    assert data.next_action.startswith("waiting for: the Project definition and planning gate")
    approve(team, gate_of(team))
    assert gate_of(team).reopened_reason == ""
    assert readiness_of(gate_of(team, Phase.DATA)).earlier_not_approved == []


def test_submitting_with_required_criteria_and_no_evidence_is_refused_when_runs_exist():
    team = make_team()
    criterion(team)
    upload(team)
    settle(team, Phase.PLANNING)
    with pytest.raises(ValidationError, match="designate the evaluation run"):
        gate_services.gate_submit(actor=team.creator, gate=gate_of(team), evidence_runs=[])
