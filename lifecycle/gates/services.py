"""Writes about gates: submission, periodic reviews, criteria, electronic signatures
(21 CFR Part 11) and the sign-off policies that say who must sign.

Every function takes the acting user, checks permission, validates, and changes the data in one
transaction with its audit event; gate states change only through `transitions.gate_move`.
"""

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audits.context import current
from audits.models import Action, AuditEvent
from audits.trail import changed, record, snapshot
from governance.lockout import reauthenticate
from governance.models import RiskTier, User
from governance.permissions import require_global_perm, require_project_perm
from governance.roles import Role
from governance.totp import second_factor_problem
from lifecycle import notifications, versioning
from lifecycle.checklists.models import ItemStatus
from lifecycle.evaluations.models import EvaluationRun, RunStatus
from lifecycle.gates import signoffs
from lifecycle.gates.models import (
    Gate,
    GateCriterion,
    ReauthFailure,
    Signature,
    SignatureMeaning,
    SignOffPolicy,
    SignOffRequirement,
)
from lifecycle.gates.readiness import Readiness, readiness_of
from lifecycle.gates.transitions import Move, gate_move, lock_gate
from lifecycle.metrics import FAIRNESS_METRICS, METRICS
from lifecycle.phases import Phase


def _require_settled(readiness: Readiness, verb: str) -> None:
    missing = [item.title for item in readiness.blocking_items]
    if missing:
        listed = "; ".join(missing)
        raise ValidationError(
            f"The gate cannot be {verb}: {len(missing)} required item(s) are neither done nor "
            f"justified as not applicable: {listed}."
        )


def _require_state(gate: Gate, allowed: tuple[str, ...], verb: str) -> None:
    if gate.state not in allowed:
        raise ValidationError(
            f"The {gate.phase_enum.label} gate is {gate.get_state_display().lower()} and cannot "
            f"be {verb}."
        )


def _evidence(
    gate: Gate, runs: list[EvaluationRun] | None, readiness: Readiness
) -> list[EvaluationRun]:
    """The runs a submission designates: those given, each a succeeded run of this gate, or by
    default the run the gate is previewed on (its latest succeeded run that is no subset)."""
    if runs is None:
        return list(readiness.runs)
    chosen = []
    for run in runs:
        if run.gate_id != gate.pk:
            raise ValidationError(
                {"evidence_runs": f"Run {run.number} is not an evaluation of this gate."}
            )
        if run.status != RunStatus.SUCCEEDED:
            raise ValidationError(
                {
                    "evidence_runs": f"Run {run.number} is {run.get_status_display().lower()}: "
                    "only a succeeded run can be evidence."
                }
            )
        if run not in chosen:
            chosen.append(run)
    return sorted(chosen, key=lambda run: run.pk)


def _run_numbers(runs: Any) -> list[int]:
    return sorted(run.number for run in runs)


@transaction.atomic
def gate_submit(
    *, actor: User, gate: Gate, note: str = "", evidence_runs: list[EvaluationRun] | None = None
) -> Gate:
    """Submit a gate for committee review, designating the evaluation runs it is judged on
    (default: its latest succeeded run that is no subset); every required item must be done
    or justified. Each submission starts a new review round."""
    gate = lock_gate(gate)
    require_project_perm(actor, "submit_gate", gate.project)
    _require_state(gate, (Gate.State.OPEN, Gate.State.CHANGES_REQUESTED), "submitted")
    readiness = readiness_of(gate)
    _require_settled(readiness, "submitted")
    if readiness.earlier_not_approved:
        phase, why = readiness.earlier_not_approved[0]
        raise ValidationError(
            f"The gate cannot be submitted while the earlier {phase} gate is not approved ({why})."
        )
    runs = _evidence(gate, evidence_runs, readiness)
    if not runs and any(c.criterion.required for c in readiness.verdicts):
        candidates = EvaluationRun.objects.filter(gate=gate, status=RunStatus.SUCCEEDED)
        if candidates.exists():
            raise ValidationError(
                {
                    "evidence_runs": "The gate has required criteria: designate the evaluation "
                    "run (or runs) they are judged on."
                }
            )
    before = snapshot(gate, GATE_FIELDS)
    gate.evidence_runs.set(runs)
    gate_move(gate, Move.SUBMIT, by=actor, note=note.strip())
    event = _record_gate(
        actor,
        Action.GATE_SUBMIT,
        gate,
        before,
        reason=gate.decision_note,
        extra={"evidence_runs": _run_numbers(runs)},
    )
    signoffs.supersede(
        gate, actor=actor, event=event, cause=f"review round {gate.review_round} started"
    )
    notifications.gate_entered_review(gate)
    return gate


@transaction.atomic
def gate_evidence_designate(
    *, actor: User, gate: Gate, evidence_runs: list[EvaluationRun], reason: str
) -> Gate:
    """Change the runs a gate in review is judged on (project lead), with a reason. The
    signatures made over the earlier evidence are invalidated and a new review round starts;
    an approved gate's evidence never changes."""
    gate = lock_gate(gate)
    require_project_perm(actor, "submit_gate", gate.project)
    _require_state(gate, (Gate.State.IN_REVIEW,), "given other evidence")
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why the gate's evidence changes."})
    if not evidence_runs:
        raise ValidationError({"evidence_runs": "Designate at least one evaluation run."})
    runs = _evidence(gate, evidence_runs, readiness_of(gate))
    before = _run_numbers(gate.evidence_runs.all())
    after = _run_numbers(runs)
    if before == after:
        raise ValidationError({"evidence_runs": "The gate is already judged on these runs."})
    gate.evidence_runs.set(runs)
    listed = ", ".join(str(n) for n in after)
    was = ", ".join(str(n) for n in before) or "none"
    signoffs.record_signed_content_change(
        actor,
        gate,
        action=Action.GATE_EVIDENCE_DESIGNATE,
        target=gate,
        target_text=f"{gate.phase_enum.label} gate",
        before={"evidence_runs": before},
        after={"evidence_runs": after},
        reason=reason,
        cause=f"the gate's evidence changed from run(s) {was} to run(s) {listed}",
    )
    return gate


@transaction.atomic
def gate_start_review_cycle(*, actor: User, gate: Gate) -> Gate:
    """Reopen the approved monitoring gate for its next periodic review.

    Done monitoring items go back to in progress: each review confirms them afresh, with the
    earlier evidence still attached.
    """
    gate = lock_gate(gate)
    require_project_perm(actor, "start_review", gate.project)
    if gate.phase != Phase.MONITORING:
        raise ValidationError("Only the monitoring gate recurs for periodic reviews.")
    _require_state(gate, (Gate.State.APPROVED,), "reopened for a periodic review")
    before = snapshot(gate, GATE_FIELDS)
    gate_move(gate, Move.START_CYCLE, by=actor)
    reopened_keys = _items_back_in_progress(gate, actor)
    event = _record_gate(
        actor,
        Action.GATE_START_REVIEW_CYCLE,
        gate,
        before,
        extra={"items_back_in_progress": reopened_keys},
    )
    signoffs.supersede(
        gate,
        actor=actor,
        event=event,
        cause=f"periodic review {gate.cycle} started",
        all_rounds=True,
    )
    return gate


def _items_back_in_progress(gate: Gate, actor: User | None) -> list[str]:
    reopened = gate.items.filter(status=ItemStatus.DONE)
    keys = list(reopened.values_list("key", flat=True))
    reopened.update(status=ItemStatus.IN_PROGRESS, updated_by=actor, updated_at=timezone.now())
    return keys


LATEST_CAUSE = " — still found: "


def gate_monitoring_reopen(*, by: User | None, gate: Gate, cause: str) -> bool:
    """Put the monitoring gate back in front of its reviewers because monitoring found
    `cause` (a serious incident, a required criterion failing on a batch). True when that
    reopened it; False when it is still locked (the project is not deployed yet), or when a
    monitoring job finds it already reopened in this review and not submitted since (the
    cause shown then keeps the first cause and adds the latest, and nobody is told again).

    An approved gate opens for a new periodic review, its done items back in progress and its
    signatures superseded; a gate in review starts a new review round (signatures given before
    the cause no longer count); an open gate shows the cause. The project's leads and the
    holders of the roles that must sign are told once the change commits. Runs in the caller's
    transaction (a system job's, or a user's incident report); the caller checked permission
    for its own action, so this only records the consequence.
    """
    with transaction.atomic():
        gate = lock_gate(gate)
        if gate.phase != Phase.MONITORING:
            raise ValueError("only the monitoring gate is reopened by monitoring")
        if gate.state == Gate.State.LOCKED:
            return False
        # A job's cause on a gate it already reopened in this review (each failing batch of a
        # persisting shift) is news to nobody, and must not restart a review under way; a
        # person's report always counts.
        reopened_this_review = bool(gate.reopened_reason) and (
            gate.state in (Gate.State.OPEN, Gate.State.CHANGES_REQUESTED)
            or (
                gate.state == Gate.State.IN_REVIEW
                and gate.reopened_at is not None
                and (gate.submitted_at is None or gate.reopened_at > gate.submitted_at)
            )
        )
        if by is None and reopened_this_review:
            before = {**snapshot(gate, GATE_FIELDS), "reopened_reason": gate.reopened_reason}
            # The cause that reopened it stays first; the latest finding follows it.
            first = gate.reopened_reason.split(LATEST_CAUSE, 1)[0]
            gate.reopened_reason = first + LATEST_CAUSE + cause
            gate.save(update_fields=["reopened_reason"])
            record(
                actor=None,
                action=Action.GATE_MONITORING_REOPEN,
                project=gate.project,
                target=gate,
                target_text=f"{gate.phase_enum.label} gate",
                before=before,
                after={**snapshot(gate, GATE_FIELDS), "reopened_reason": cause},
                reason=cause,
            )
            return False
        was_approved = gate.state == Gate.State.APPROVED
        before = {**snapshot(gate, GATE_FIELDS), "reopened_reason": gate.reopened_reason}
        gate_move(gate, Move.MONITORING_REOPEN, by=by, note=cause)
        extra: dict[str, Any] = {"reopened_reason": cause}
        if was_approved:
            extra["items_back_in_progress"] = _items_back_in_progress(gate, by)
        event = record(
            actor=by,
            action=Action.GATE_MONITORING_REOPEN,
            project=gate.project,
            target=gate,
            target_text=f"{gate.phase_enum.label} gate",
            before=before,
            after={**snapshot(gate, GATE_FIELDS), **extra},
            reason=cause,
        )
        signoffs.supersede(
            gate,
            actor=by,
            event=event,
            cause=f"monitoring reopened the gate: {cause}",
            all_rounds=was_approved,
        )
        notifications.monitoring_gate_reopened(gate, cause, by=by)
    return True


GATE_FIELDS = ("state", "review_round", "cycle")


def _record_gate(
    actor: User,
    action: str,
    gate: Gate,
    before: dict[str, Any],
    *,
    reason: str = "",
    extra: dict[str, Any] | None = None,
) -> AuditEvent:
    return record(
        actor=actor,
        action=action,
        project=gate.project,
        target=gate,
        target_text=f"{gate.phase_enum.label} gate",
        before=before,
        after={**snapshot(gate, GATE_FIELDS), **(extra or {})},
        reason=reason,
    )


CRITERION_FIELDS = (
    "metric",
    "scope",
    "group_attribute",
    "bound",
    "comparator",
    "threshold",
    "required",
    "min_records",
    "min_group_records",
)


def _validate_criterion(criterion: GateCriterion) -> None:
    if criterion.metric not in METRICS:
        raise ValidationError({"metric": f"“{criterion.metric}” is not a metric key."})
    if METRICS[criterion.metric].kind == "matrix":
        raise ValidationError({"metric": f"“{criterion.metric}” has no single value to compare."})
    if criterion.metric in FAIRNESS_METRICS and criterion.scope != "overall":
        raise ValidationError(
            {"scope": "Fairness differences are between groups: use the overall scope."}
        )
    if (
        criterion.min_group_records
        and criterion.scope == "overall"
        and criterion.metric not in FAIRNESS_METRICS
    ):
        raise ValidationError(
            {
                "min_group_records": "A minimum per subgroup needs a criterion on subgroups: "
                "every or worst subgroup, or a fairness difference."
            }
        )
    criterion.full_clean(exclude=["created_by", "gate"])


@transaction.atomic
def gate_criterion_create(*, actor: User, gate: Gate, **fields: Any) -> GateCriterion:
    """Add a pass/fail criterion on the gate's evaluation (committee chair, safety officer)."""
    gate = lock_gate(gate)
    require_project_perm(actor, "set_criteria", gate.project)
    criterion = GateCriterion(gate=gate, created_by=actor, **fields)
    _validate_criterion(criterion)
    criterion.save()
    signoffs.record_signed_content_change(
        actor,
        gate,
        action=Action.CRITERION_CREATE,
        target=criterion,
        target_text=criterion.expression,
        after=snapshot(criterion, CRITERION_FIELDS),
        cause=f"criterion “{criterion.expression}” was added",
    )
    return criterion


@transaction.atomic
def gate_criterion_update(
    *, actor: User, criterion: GateCriterion, **changes: Any
) -> GateCriterion:
    criterion = (
        GateCriterion.objects.select_for_update()
        .select_related("gate__project")
        .get(pk=criterion.pk)
    )
    require_project_perm(actor, "set_criteria", criterion.gate.project)
    unknown = set(changes) - set(CRITERION_FIELDS)
    if unknown:
        raise ValidationError({field: "This field cannot be changed." for field in unknown})
    before = snapshot(criterion, changes)
    old_expression = criterion.expression
    for field, value in changes.items():
        setattr(criterion, field, value)
    _validate_criterion(criterion)
    criterion.save()
    before, after = changed(before, snapshot(criterion, changes))
    signoffs.record_signed_content_change(
        actor,
        criterion.gate,
        action=Action.CRITERION_UPDATE,
        target=criterion,
        target_text=criterion.expression,
        before=before,
        after=after,
        cause=f"criterion “{old_expression}” became “{criterion.expression}”",
    )
    return criterion


@transaction.atomic
def gate_criterion_delete(*, actor: User, criterion: GateCriterion) -> None:
    criterion = (
        GateCriterion.objects.select_for_update()
        .select_related("gate__project")
        .get(pk=criterion.pk)
    )
    require_project_perm(actor, "set_criteria", criterion.gate.project)
    gate, values, expression = (
        criterion.gate,
        snapshot(criterion, CRITERION_FIELDS),
        criterion.expression,
    )
    target_id = criterion.pk
    criterion.delete()
    signoffs.record_signed_content_change(
        actor,
        gate,
        action=Action.CRITERION_DELETE,
        target=None,
        target_type="lifecycle.gatecriterion",
        target_id=target_id,
        target_text=expression,
        before=values,
        cause=f"criterion “{expression}” was removed",
    )


class ReauthenticationFailed(PermissionDenied):
    """The password (or TOTP code) given at signing time was wrong; nothing was signed."""


def _reauthentication_problem(user: User, password: str, otp_token: str) -> str | None:
    if not user.check_password(password or ""):
        return "wrong password"
    # The authenticator app's code, or one of the user's recovery codes (used up, recorded).
    return second_factor_problem(user, otp_token)


def _reauthenticate(actor: User, gate: Gate, password: str, otp_token: str) -> None:
    """Re-authentication at signing is an authentication under the login lockout
    (`governance.lockout`): refused while the account or the address is locked (`LockedOut`),
    and a failure is counted with the failed logins. The lockout check, the password check and
    the count run under a row lock on the signer, in their own outermost transaction, so the
    failure is committed although the signing is refused, and concurrent guesses are checked
    one at a time: no more than the limit are ever tried."""
    with transaction.atomic(durable=True):
        attempt = reauthenticate(
            user=actor,
            verify=lambda: _reauthentication_problem(actor, password, otp_token),
            purpose="Signing",
        )
        if attempt.problem is None:
            return
        ReauthFailure.objects.create(
            user=actor, gate=gate, reason=attempt.problem, ip_address=current().ip
        )
        record(
            actor=actor,
            action=Action.REAUTH_FAILED,
            project=gate.project,
            target=gate,
            target_text=f"{gate.phase_enum.label} gate",
            after={
                "reason": attempt.problem,
                "locked_until": attempt.locked_until.isoformat() if attempt.locked_until else None,
            },
        )
    raise ReauthenticationFailed(
        f"Re-authentication failed ({attempt.problem}): nothing was signed."
    )


def signoff_create(
    *,
    actor: User,
    gate: Gate,
    role: str,
    meaning: str,
    password: str,
    reason: str = "",
    otp_token: str = "",
) -> Signature:
    """Sign a gate in review (21 CFR Part 11): re-authenticate, check the signing rules, store
    the signature over the gate's manifest, and decide the gate.

    A rejection sends the gate back with the reason; the approval that completes the policy's
    required roles approves the gate and opens the next phase. Re-authentication is under the
    login lockout: refused (`governance.lockout.LockedOut`) while the account or the address is
    locked, and a failure counts towards it. Must not run inside another transaction: a failed
    re-authentication is committed on its own.
    """
    _reauthenticate(actor, gate, password, otp_token)
    with transaction.atomic(durable=True):
        gate = (
            Gate.objects.select_for_update()
            .select_related("project__checklist_template", "project__signoff_policy")
            .get(pk=gate.pk)
        )
        project = gate.project
        held = set(signoffs.roles_that_may_sign(actor, gate))
        if role not in held:
            raise PermissionDenied(
                f"You do not hold the role {Role(role).label if role in Role.values else role} "
                f"on “{project.name}”, so you cannot sign in it."
            )
        if meaning not in SignatureMeaning.values:
            raise ValidationError({"meaning": f"“{meaning}” is not a signature meaning."})
        reason = reason.strip()
        if meaning == SignatureMeaning.REJECT and not reason:
            raise ValidationError({"reason": "A rejection needs a reason."})
        if gate.state != Gate.State.IN_REVIEW:
            raise ValidationError(
                f"The {gate.phase_enum.label} gate is {gate.get_state_display().lower()}: only a "
                "gate in review can be signed."
            )
        _require_not_signed(actor, gate, meaning)
        if meaning == SignatureMeaning.APPROVE:
            _require_may_approve(actor, gate, role, held)
        signed_at = timezone.now()
        manifest = signoffs.canonical(signoffs.build_manifest(gate))
        signature = Signature(
            gate=gate,
            review_round=gate.review_round,
            signer=actor,
            signer_name=actor.get_full_name() or actor.get_username(),
            role=role,
            meaning=meaning,
            reason=reason,
            signed_at=signed_at,
            manifest=manifest,
            manifest_sha256=signoffs.sha256_text(manifest),
        )
        signature.record_sha256 = signoffs.seal(signature)
        try:
            with transaction.atomic():
                signature.save()
        except IntegrityError:
            _require_not_signed(actor, gate, meaning)
            raise
        before_state = gate.state
        _decide(gate, signature)
        record(
            actor=actor,
            action=Action.SIGNATURE_CREATE,
            project=project,
            target=signature,
            target_text=signature.manifestation,
            before={"gate_state": before_state},
            after={
                "gate": gate.pk,
                "review_round": signature.review_round,
                "role": role,
                "meaning": meaning,
                "manifest_sha256": signature.manifest_sha256,
                "record_sha256": signature.record_sha256,
                "gate_state": gate.state,
            },
            reason=reason,
        )
    return signature


DECISIONS = (SignatureMeaning.APPROVE, SignatureMeaning.REJECT)


def _require_not_signed(actor: User, gate: Gate, meaning: str) -> None:
    """One approval or rejection per person per round; "reviewed" is separate and never uses
    up the decision, but comes before it."""
    mine = {
        s.meaning: s
        for s in Signature.objects.filter(gate=gate, review_round=gate.review_round, signer=actor)
    }
    decided = next((mine[m] for m in DECISIONS if m in mine), None)
    if decided is not None:
        raise ValidationError(
            f"You already {decided.get_meaning_display().lower()} this gate in review round "
            f"{gate.review_round}: one approval or rejection per person per round."
        )
    if meaning == SignatureMeaning.REVIEW and SignatureMeaning.REVIEW in mine:
        raise ValidationError(
            f"You already marked this gate reviewed in review round {gate.review_round}; "
            "approve or reject it when you decide."
        )


def approval_refusals(
    user: User, gate: Gate, role: str, held: set[str], readiness: Readiness
) -> list[PermissionDenied | ValidationError]:
    """Every reason an approval by `user` (holding `held` roles) in `role` would be refused
    now, most fundamental first: the sign dialog warns with them before anyone signs, and
    `signoff_create` refuses with the first. Reads only."""
    project = gate.project
    found: list[PermissionDenied | ValidationError] = []
    if Role.PROJECT_LEAD in held:
        found.append(
            PermissionDenied(
                "The project lead cannot approve a gate of their own project (separation of "
                "duties)."
            )
        )
    if project.risk_tier == RiskTier.HIGH and role == Role.COMMITTEE_CHAIR and len(held) > 1:
        found.append(
            PermissionDenied(
                "On a high-risk project the committee chair's approval must come from someone "
                "with no other role on the project."
            )
        )
    for phase, why in readiness.earlier_not_approved:
        found.append(
            ValidationError(
                f"The gate cannot be approved while the earlier {phase} gate is not approved "
                f"({why})."
            )
        )
    blocking = [item.title for item in readiness.blocking_items]
    if blocking:
        found.append(
            ValidationError(
                f"The gate cannot be approved while {len(blocking)} required item(s) are "
                f"neither done nor justified as not applicable: {'; '.join(blocking)}."
            )
        )
    failing = [
        f"{v.criterion.expression} ({v.status}: {v.detail})" for v in readiness.failing_criteria
    ]
    if failing:
        found.append(
            ValidationError(
                f"The gate cannot be approved while {len(failing)} required evaluation "
                f"criterion/criteria do not pass: {'; '.join(failing)}."
            )
        )
    incidents = [f"incident {n} ({title})" for n, title in readiness.open_serious_incidents]
    if incidents:
        found.append(
            ValidationError(
                "The monitoring gate cannot be approved while serious incidents are open: "
                f"{'; '.join(incidents)}. Resolve or downgrade them first."
            )
        )
    return found


def _require_may_approve(actor: User, gate: Gate, role: str, held: set[str]) -> None:
    refusals = approval_refusals(actor, gate, role, held, readiness_of(gate))
    if refusals:
        raise refusals[0]


def _decide(gate: Gate, signature: Signature) -> None:
    """Move the gate after a signature: a rejection sends it back, the last required approval
    approves it when every condition holds."""
    if signature.meaning == SignatureMeaning.REJECT:
        gate_move(gate, Move.REJECT, by=signature.signer, note=signature.reason)
        notifications.gate_decided(gate)
    elif signature.meaning == SignatureMeaning.APPROVE and readiness_of(gate).can_be_approved:
        gate_move(gate, Move.APPROVE, by=signature.signer)
        notifications.gate_decided(gate)


def _require_policy_admin(actor: User) -> None:
    require_global_perm(actor, "governance.change_signoffpolicy", "manage sign-off policies")


@transaction.atomic
def signoff_policy_create_version(
    *, actor: User, source: SignOffPolicy, version: str, name: str = ""
) -> SignOffPolicy:
    """Start a new policy version as a copy of `source`; inactive until activated."""
    _require_policy_admin(actor)
    policy: SignOffPolicy = versioning.copy_version(
        source,
        actor=actor,
        version=version,
        name=name,
        rows="requirements",
        action=Action.POLICY_CREATE_VERSION,
    )
    return policy


@transaction.atomic
def signoff_requirement_save(*, actor: User, requirement: SignOffRequirement) -> SignOffRequirement:
    """Add or change a requirement of a draft policy (never of one in use)."""
    _require_policy_admin(actor)
    policy = versioning.lock_draft(SignOffPolicy, requirement.policy_id, "Sign-off policy")
    requirement.full_clean()
    requirement.save()
    record(
        actor=actor,
        action=Action.POLICY_REQUIREMENT_SAVE,
        project=None,
        target=requirement,
        after={"policy": policy.version, **snapshot(requirement, ("phase", "risk_tier", "role"))},
    )
    return requirement


@transaction.atomic
def signoff_requirement_delete(*, actor: User, requirement: SignOffRequirement) -> None:
    _require_policy_admin(actor)
    policy = versioning.lock_draft(SignOffPolicy, requirement.policy_id, "Sign-off policy")
    values = snapshot(requirement, ("phase", "risk_tier", "role"))
    target_id, target_text = requirement.pk, str(requirement)
    requirement.delete()
    record(
        actor=actor,
        action=Action.POLICY_REQUIREMENT_DELETE,
        project=None,
        target_type="governance.signoffrequirement",
        target_id=target_id,
        target_text=target_text,
        before={"policy": policy.version, **values},
    )


@transaction.atomic
def signoff_policy_activate(*, actor: User, policy: SignOffPolicy) -> SignOffPolicy:
    """Make `policy` the one new projects are reviewed under."""
    _require_policy_admin(actor)
    policy = SignOffPolicy.objects.select_for_update().get(pk=policy.pk)
    missing = [
        f"{phase.label} / {tier.label}"
        for phase in Phase
        for tier in RiskTier
        if not policy.requirements.filter(phase=phase, risk_tier=tier).exists()
    ]
    if missing:
        raise ValidationError(
            f"Sign-off policy v{policy.version} names no approver for: {', '.join(missing)}."
        )
    versioning.make_sole_active(policy, actor=actor, action=Action.POLICY_ACTIVATE)
    return policy
