"""Lifecycle pages: the phase page (checklist, evidence, comments, gate panel), its htmx
partial updates, the sign and submit actions, evaluation uploads and the run page.

Views parse input, call one service, and render; every rule is in the services, and controls
a user may not use are not shown (the services refuse them anyway).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from governance.admin_base import add_service_errors, run_service
from governance.models import Project, User
from governance.permissions import Access, project_access
from governance.roles import Role
from governance.selectors import memberships_of_project, project_get_for_user
from lifecycle.checklists import downloads
from lifecycle.checklists import selectors as checklist_selectors
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import ChecklistItem, Evidence
from lifecycle.checklists.permissions import can_edit_item
from lifecycle.checklists.selectors import evidence_for_user
from lifecycle.evaluations import charts
from lifecycle.evaluations import selectors as evaluation_selectors
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import EvaluationResult, EvaluationRun, ResultScope, RunStatus
from lifecycle.forms import (
    AssignForm,
    CommentForm,
    DesignateEvidenceForm,
    EvaluationUploadForm,
    EvidenceForm,
    ItemStatusForm,
    SignForm,
    SubmitForm,
    WithdrawForm,
)
from lifecycle.gates import selectors as gate_selectors
from lifecycle.gates import services as gate_services
from lifecycle.gates import signoffs
from lifecycle.gates.models import Gate, GateState, SignatureMeaning
from lifecycle.gates.readiness import Readiness, readiness_of, run_verdicts
from lifecycle.gates.services import ReauthenticationFailed, signoff_create
from lifecycle.http import evidence_of, item_of, phase_of, post_only


def _project(request: HttpRequest, slug: str) -> Project:
    try:
        return project_get_for_user(request.user, slug)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


def _gate(user: User, project: Project, phase: str) -> Gate:
    try:
        return gate_selectors.gate_get_for_user(user, project, phase)
    except Gate.DoesNotExist:
        raise Http404("No such phase.") from None


def _item(user: User, project: Project, key: str) -> ChecklistItem:
    item = (
        checklist_selectors.checklist_items_for_user(user).filter(project=project, key=key).first()
    )
    if item is None:
        raise Http404("No such checklist item.")
    item.project = project
    return item


def _phase_url(project: Project, phase: str, anchor: str = "") -> str:
    url = reverse("phase", args=[project.slug, phase])
    return f"{url}#{anchor}" if anchor else url


# --- The phase page -----------------------------------------------------------------------------


def _members(project: Project) -> list[User]:
    users = {m.user for m in memberships_of_project(project)}
    return sorted(users, key=lambda u: (u.last_name, u.username))


def _item_context(item: ChecklistItem, access: Access, user: User, members, **forms) -> dict:
    editable = can_edit_item(user, item, access) and item.gate.state != GateState.LOCKED
    return {
        "item": item,
        "editable": editable,
        "can_add_evidence": access.can("add_evidence") and item.gate.state != GateState.LOCKED,
        "can_comment": access.can("comment"),
        "members": members,
        "status_form": forms.get("status_form")
        or ItemStatusForm(initial={"status": item.status, "justification": item.justification}),
        "evidence_form": forms.get("evidence_form") or EvidenceForm(),
        "comment_form": forms.get("comment_form") or CommentForm(),
        "assign_form": forms.get("assign_form"),
        "withdraw_form": forms.get("withdraw_form"),
        # Refusals that belong to no field (e.g. "your roles do not allow this"), shown once
        # on the card, also to someone who was never shown the control.
        "refusals": [e for form in forms.values() if form for e in form.non_field_errors()],
    }


@login_required
def phase_page(
    request: HttpRequest,
    slug: str,
    phase: str,
    *,
    sign_form=None,
    upload_form=None,
    upload_warnings=(),
    submit_form=None,
    designate_form=None,
    status=200,
):
    """One phase: its checklist edited inline, and the gate panel with every condition."""
    project = _project(request, slug)
    gate = _gate(request.user, project, phase)
    access = project_access(request.user, project)
    dialog_open = sign_form is not None
    members = _members(project)
    items = list(checklist_selectors.checklist_items_for_user(request.user).filter(gate=gate))
    for item in items:
        item.project, item.gate = project, gate
    readiness = readiness_of(gate)
    conditions = readiness if gate.state != GateState.LOCKED else None
    mine = {s.meaning for s in readiness.signatures if s.signer_id == request.user.pk}
    decided = bool(mine & {SignatureMeaning.APPROVE, SignatureMeaning.REJECT})
    sign_roles = []
    if gate.state == GateState.IN_REVIEW and not decided:
        sign_roles = [(r, Role(r).label) for r in signoffs.roles_that_may_sign(request.user, gate)]
    meanings = None
    if SignatureMeaning.REVIEW in mine:
        meanings = [SignatureMeaning.APPROVE, SignatureMeaning.REJECT]
    runs = list(evaluation_selectors.runs_for_user(request.user).filter(gate=gate)[:20])
    can_submit = access.can("submit_gate") and gate.state in (
        GateState.OPEN,
        GateState.CHANGES_REQUESTED,
    )
    can_designate = access.can("submit_gate") and gate.state == GateState.IN_REVIEW
    evidence_choices = evaluation_selectors.evidence_candidates(gate)
    if sign_form is None and sign_roles:
        sign_form = SignForm(roles=sign_roles, meanings=meanings)
    return render(
        request,
        "lifecycle/phase.html",
        {
            "project": project,
            "gate": gate,
            "phases": list(project.gates.order_by("position")),
            "items": [_item_context(i, access, request.user, members) for i in items],
            "readiness": readiness,
            "conditions": conditions,
            "access": access,
            "sign_form": sign_form,
            "dialog_open": dialog_open,
            "approval_warnings": _approval_warnings(request.user, gate, sign_roles, readiness),
            "reviewed": SignatureMeaning.REVIEW in mine,
            "submit_form": submit_form
            or (
                SubmitForm(runs=evidence_choices, initial_runs=readiness.runs)
                if can_submit
                else None
            ),
            "designate_form": designate_form
            or (
                DesignateEvidenceForm(runs=evidence_choices, initial_runs=readiness.runs)
                if can_designate
                else None
            ),
            "upload_form": upload_form
            or (_upload_form(project) if access.can("upload_evaluation") else None),
            "upload_warnings": upload_warnings,
            "requirements": evaluation_services.evidence_requirements(gate),
            "can_set_criteria": access.can("set_criteria"),
            "runs": runs,
            "trends": _trend_charts(gate, runs, conditions),
            # After a refused POST the address bar shows the page, not the form's endpoint.
            "canonical_url": _phase_url(project, phase) if request.method == "POST" else "",
        },
        status=status,
    )


def _approval_warnings(
    user: User, gate: Gate, roles: list[tuple[str, str]], readiness: Readiness
) -> list[str]:
    """Why an approval by `user` would be refused now, or would not yet approve the gate: the
    sign dialog says so before the password is typed."""
    if not roles:
        return []
    held = set(signoffs.roles_that_may_sign(user, gate))
    found: list[str] = []
    for role, _ in roles:
        for refusal in gate_services.approval_refusals(user, gate, role, held, readiness):
            for message in getattr(refusal, "messages", [str(refusal)]):
                if message not in found:
                    found.append(message)
    still = [Role(r).label.lower() for r in readiness.missing_roles if r not in held]
    if not found and still:
        found.append(
            "Your approval will be recorded, but the gate stays in review until it also has "
            f"the approval of: {', '.join(still)}."
        )
    return found


def _upload_form(project: Project, data=None, files=None) -> EvaluationUploadForm:
    return EvaluationUploadForm(data, files, project=project)


def _trend_charts(gate: Gate, runs: list[EvaluationRun], conditions) -> list[charts.Chart]:
    """Each criterion's metric across the gate's succeeded runs, oldest first, with its CI."""
    done = [r for r in reversed(runs) if r.status == RunStatus.SUCCEEDED]
    verdicts = conditions.verdicts if conditions else []
    metrics = {v.criterion.metric: v.criterion for v in verdicts}
    if not done or not metrics:
        return []
    rows: dict[tuple[int, str], EvaluationResult] = {}
    for result in evaluation_selectors.trend_results(done, metrics):
        if (
            result.scope == ResultScope.OVERALL
            or result.group_attribute == metrics[result.metric].group_attribute
        ):
            rows[(result.run_id, result.metric)] = result
    out = []
    for metric, criterion in metrics.items():
        bars = []
        for run in done:
            r = rows.get((run.pk, metric))
            bars.append(
                (
                    f"run {run.pk} · {run.model_version.label}",
                    r.value if r else None,
                    r.ci_low if r else None,
                    r.ci_high if r else None,
                    "" if r and r.value is not None else "no value",
                )
            )
        out.append(
            charts.interval_bars(
                f"trend-{gate.phase}-{metric}",
                f"{metric} across runs",
                f"{metric} of each succeeded run of this gate, oldest first, with its 95% "
                f"confidence interval; the dashed line is the criterion {criterion.expression}.",
                bars,
                threshold=criterion.threshold,
                value_label=metric,
            )
        )
    return out


# --- Item actions (htmx partials; plain form posts redirect back) ------------------------------


def _item_response(request: HttpRequest, project: Project, item: ChecklistItem, **forms):
    """The refreshed item card for htmx, or a redirect back to the phase for a plain post."""
    if not request.headers.get("HX-Request"):
        for form in forms.values():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, error)
        return redirect(_phase_url(project, item.phase, f"item-{item.key}"))
    item = _item(request.user, project, item.key)
    context = _item_context(
        item, project_access(request.user, project), request.user, _members(project), **forms
    )
    status = 400 if any(form.errors for form in forms.values()) else 200
    return render(request, "lifecycle/partials/item.html", context, status=status)


def _item_action(
    request: HttpRequest, slug: str, key: str, name: str, make_form, act
) -> HttpResponse:
    """Validate the form `make_form(project)` builds, call the service through
    `act(item, cleaned_data)`, and answer with the item card (carrying the form under `name`,
    with its errors)."""
    project = _project(request, slug)
    item = _item(request.user, project, key)
    form = make_form(project)
    if form.is_valid():
        run_service(form, lambda: act(item, form.cleaned_data))
    # A refused form comes back with its input and errors; after success the card shows
    # empty forms again (a posted comment does not stay in the box).
    return _item_response(request, project, item, **({name: form} if form.errors else {}))


@login_required
@post_only(back=item_of)
def item_status(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    return _item_action(
        request,
        slug,
        key,
        "status_form",
        lambda project: ItemStatusForm(request.POST),
        lambda item, data: checklist_services.checklist_item_update(
            actor=request.user,
            item=item,
            status=data["status"],
            justification=data["justification"],
        ),
    )


@login_required
@post_only(back=item_of)
def item_assign(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    return _item_action(
        request,
        slug,
        key,
        "assign_form",
        lambda project: AssignForm(request.POST, members=_members(project)),
        lambda item, data: checklist_services.checklist_item_assign(
            actor=request.user, item=item, assignee=data["assignee"]
        ),
    )


EVIDENCE_SERVICES = {
    # kind → (service, its argument, the form field holding the value)
    Evidence.Kind.FILE: (checklist_services.evidence_add_file, "upload", "file"),
    Evidence.Kind.LINK: (checklist_services.evidence_add_link, "url", "url"),
    Evidence.Kind.NOTE: (checklist_services.evidence_add_note, "note", "note"),
}


def _add_evidence(actor, item: ChecklistItem, data: dict):
    add, argument, field = EVIDENCE_SERVICES[data["kind"]]
    return add(actor=actor, item=item, title=data["title"], **{argument: data[field]})


@login_required
@post_only(back=item_of)
def item_evidence(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    return _item_action(
        request,
        slug,
        key,
        "evidence_form",
        lambda project: EvidenceForm(request.POST, request.FILES),
        lambda item, data: _add_evidence(request.user, item, data),
    )


@login_required
@post_only(back=item_of)
def item_comment(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    return _item_action(
        request,
        slug,
        key,
        "comment_form",
        lambda project: CommentForm(request.POST),
        lambda item, data: checklist_services.comment_add(
            actor=request.user, item=item, body=data["body"]
        ),
    )


@login_required
@post_only(back=evidence_of)
def evidence_withdraw(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = _project(request, slug)
    evidence = (
        checklist_selectors.evidence_for_user(request.user)
        .filter(item__project=project, pk=pk)
        .first()
    )
    if evidence is None:
        raise Http404("No such evidence.")
    form = WithdrawForm(request.POST)
    if form.is_valid():
        run_service(
            form,
            lambda: checklist_services.evidence_withdraw(
                actor=request.user, evidence=evidence, reason=form.cleaned_data["reason"]
            ),
        )
    return _item_response(request, project, evidence.item, withdraw_form=form)


@login_required
def evidence_download(request: HttpRequest, pk: int) -> FileResponse:
    """Serve an evidence file to someone who may see its project (recorded in the audit
    trail); 404 for everyone else."""
    try:
        evidence = evidence_for_user(request.user).get(pk=pk, kind=Evidence.Kind.FILE)
    except Evidence.DoesNotExist:
        raise Http404("No such evidence.") from None
    checklist_services.evidence_record_download(actor=request.user, evidence=evidence)
    # Never trusted to render: see lifecycle.checklists.downloads.
    return downloads.evidence_file_response(evidence)


# --- Gate actions ---------------------------------------------------------------------------


def _refused(request: HttpRequest, exc: Exception) -> None:
    for message in getattr(exc, "messages", [str(exc)]):
        messages.error(request, message)


@login_required
@post_only(back=phase_of)
def gate_submit_view(request: HttpRequest, slug: str, phase: str) -> HttpResponse:
    """Submit with the designated evidence; a refusal shows the page with the reason."""
    project = _project(request, slug)
    gate = _gate(request.user, project, phase)
    form = SubmitForm(request.POST, runs=evaluation_selectors.evidence_candidates(gate))
    if form.is_valid():
        # The page always sends the choice (possibly none); a form without it keeps the default.
        chosen = "evidence_choice" in request.POST
        run_service(
            form,
            lambda: gate_services.gate_submit(
                actor=request.user,
                gate=gate,
                note=form.cleaned_data["note"],
                evidence_runs=list(form.cleaned_data["evidence_runs"]) if chosen else None,
            ),
        )
    if form.errors:
        return phase_page(request, slug, phase, submit_form=form, status=400)
    messages.success(request, f"The {gate.phase_enum.label} gate is now in review.")
    return redirect(_phase_url(project, phase, "gate"))


@login_required
@post_only(back=phase_of)
def gate_evidence_view(request: HttpRequest, slug: str, phase: str) -> HttpResponse:
    """Change the evidence of a gate in review (project lead), with a reason."""
    project = _project(request, slug)
    gate = _gate(request.user, project, phase)
    form = DesignateEvidenceForm(request.POST, runs=evaluation_selectors.evidence_candidates(gate))
    if form.is_valid():
        run_service(
            form,
            lambda: gate_services.gate_evidence_designate(
                actor=request.user,
                gate=gate,
                evidence_runs=list(form.cleaned_data["evidence_runs"]),
                reason=form.cleaned_data["reason"],
            ),
        )
    if form.errors:
        return phase_page(request, slug, phase, designate_form=form, status=400)
    messages.success(
        request,
        f"The {gate.phase_enum.label} gate is now judged on the runs you chose; signatures of "
        "the earlier evidence no longer count.",
    )
    return redirect(_phase_url(project, phase, "gate"))


@login_required
@post_only(back=phase_of)
def gate_sign_view(request: HttpRequest, slug: str, phase: str) -> HttpResponse:
    """Sign with re-authentication; a refusal re-opens the dialog with the error at its field."""
    project = _project(request, slug)
    gate = _gate(request.user, project, phase)
    roles = [(r, Role(r).label) for r in signoffs.roles_that_may_sign(request.user, gate)]
    form = SignForm(request.POST, roles=roles, meanings=_meanings_left(request.user, gate))
    if form.is_valid():
        try:
            signature = signoff_create(actor=request.user, gate=gate, **form.cleaned_data)
        except ReauthenticationFailed as exc:
            form.add_error("password", str(exc))
        except ValidationError as exc:
            add_service_errors(form, exc)
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Signed: {signature.manifestation}")
            return redirect(_phase_url(project, phase, "gate"))
    return phase_page(request, slug, phase, sign_form=form, status=400)


def _meanings_left(user: User, gate: Gate) -> list[str] | None:
    """After "reviewed", only the decision is left to sign in the round."""
    reviewed = signoffs.current_signatures(gate).filter(
        signer=user, meaning=SignatureMeaning.REVIEW
    )
    return [SignatureMeaning.APPROVE, SignatureMeaning.REJECT] if reviewed.exists() else None


@login_required
@post_only(back=phase_of)
def evaluation_upload(request: HttpRequest, slug: str, phase: str) -> HttpResponse:
    """Start a run; a refused upload shows the phase page again with the errors next to the
    fields (a bad records file: its line and field under the file input)."""
    project = _project(request, slug)
    gate = _gate(request.user, project, phase)
    form = _upload_form(project, request.POST, request.FILES)
    run, warnings = None, ()
    if form.is_valid():
        data = form.cleaned_data
        checked = run_service(
            form,
            lambda: evaluation_services.evaluation_upload_check(
                user=request.user,
                gate=gate,
                model_version=data["model_version"],
                dataset_version=data["dataset_version"],
                upload=data["file"],
                metrics=data["metrics"],
                resamples=data["resamples"],
                subset_reason=data["subset_reason"],
            ),
        )
        if checked is not None and checked.warnings and not data["accept_warnings"]:
            # Nothing is stored until the uploader has read what the criteria will lack.
            warnings = checked.warnings
        elif checked is not None:
            run = run_service(
                form,
                lambda: evaluation_services.evaluation_run_start(
                    actor=request.user,
                    gate=gate,
                    model_version=checked.model_version,
                    dataset_version=checked.dataset_version,
                    upload=checked.upload,
                    checked=checked,
                ),
            )
    if form.errors or warnings:
        return phase_page(
            request,
            slug,
            phase,
            upload_form=form,
            upload_warnings=warnings,
            status=400 if form.errors else 200,
        )
    messages.success(request, f"Run {run.number} uploaded: it is scored in the background.")
    return redirect("run", project.slug, run.pk)


# --- The evaluation run page ----------------------------------------------------------------


@login_required
def run_page(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Metrics with intervals and verdicts, subgroups with warnings, charts and provenance."""
    project = _project(request, slug)
    run = evaluation_selectors.runs_for_user(request.user).filter(project=project, pk=pk).first()
    if run is None:
        raise Http404("No such evaluation run.")
    results = list(run.results.all())
    overall = [r for r in results if r.scope == ResultScope.OVERALL]
    fairness = [r for r in results if r.scope == ResultScope.FAIRNESS]
    groups: dict[str, dict[str, dict[str, EvaluationResult]]] = {}
    for r in results:
        if r.scope == ResultScope.GROUP:
            groups.setdefault(r.group_attribute, {}).setdefault(r.group_value, {})[r.metric] = r
    readiness = readiness_of(run.gate)
    verdicts = run_verdicts(run)
    scalar_metrics = [r.metric for r in overall if r.value is not None or r.reason]
    return render(
        request,
        "lifecycle/run.html",
        {
            "project": project,
            "run": run,
            "overall": overall,
            "fairness": fairness,
            "groups": groups,
            "group_metrics": [m for m in scalar_metrics if m != "confusion_matrix"],
            "verdicts": verdicts,
            "judged_on": run in readiness.runs,
            "designated": readiness.designated,
            "charts": charts.run_charts(overall, groups, [v.criterion.metric for v in verdicts]),
        },
    )
