"""Lifecycle endpoints: versions, checklist items, evidence, comments, gates, criteria,
sign-offs and evaluation runs. Thin: parse, call the service, render."""

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from governance.api.base import ApiView, IdempotentCreate
from governance.models import Project, User
from lifecycle.api import serializers as s
from lifecycle.api.filters import ChecklistItemFilter, EvaluationRunFilter
from lifecycle.checklists import downloads
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import ChecklistItem, Comment, Evidence
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import DatasetVersion, EvaluationRun, ModelVersion
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate, GateCriterion, Signature, SignatureInvalidation
from lifecycle.gates.readiness import readiness_of
from lifecycle.gates.services import signoff_create
from lifecycle.projects import services as project_services
from lifecycle.projects.selectors import model_facts_state


class ProjectChild(ApiView):
    """An endpoint under /projects/{slug}/: the project is resolved (or 404) first."""

    def project(self):
        if not hasattr(self, "_project"):
            self._project = self.get_project()
        return self._project

    def gate(self) -> Gate:
        gate = self.project().gates.filter(phase=self.kwargs["phase"]).first()
        if gate is None:
            raise Http404
        gate.project = self.project()
        return gate

    def item(self) -> ChecklistItem:
        item = self.project().checklist_items.filter(key=self.kwargs["key"]).first()
        if item is None:
            raise Http404
        return item


# --- Versions ----------------------------------------------------------------------------------


class ModelVersionList(ProjectChild):
    queryset = ModelVersion.objects.none()
    ordering_fields = ["created_at", "label"]
    ordering = ["created_at"]
    filterset_fields = ["adaptation"]

    def scoped_queryset(self):
        return (
            ModelVersion.objects.restrict(self.request.user)
            .filter(project=self.project())
            .select_related("created_by")
        )

    @extend_schema(responses=s.ModelVersionOut(many=True))
    def get(self, request, slug):
        return self.list_response(self.get_queryset(), s.ModelVersionOut)

    @extend_schema(request=s.ModelVersionIn, responses={201: s.ModelVersionOut})
    def post(self, request, slug):
        data = s.ModelVersionIn(data=request.data)
        data.is_valid(raise_exception=True)
        version = evaluation_services.model_version_create(
            actor=request.user, project=self.project(), **data.validated_data
        )
        return Response(s.ModelVersionOut(version).data, status=status.HTTP_201_CREATED)


class DatasetVersionList(ProjectChild):
    queryset = DatasetVersion.objects.none()
    ordering_fields = ["created_at", "label"]
    ordering = ["created_at"]
    filterset_fields = ["purpose"]

    def scoped_queryset(self):
        return (
            DatasetVersion.objects.restrict(self.request.user)
            .filter(project=self.project())
            .select_related("created_by")
        )

    @extend_schema(responses=s.DatasetVersionOut(many=True))
    def get(self, request, slug):
        return self.list_response(self.get_queryset(), s.DatasetVersionOut)

    @extend_schema(request=s.DatasetVersionIn, responses={201: s.DatasetVersionOut})
    def post(self, request, slug):
        data = s.DatasetVersionIn(data=request.data)
        data.is_valid(raise_exception=True)
        version = evaluation_services.dataset_version_create(
            actor=request.user, project=self.project(), **data.validated_data
        )
        return Response(s.DatasetVersionOut(version).data, status=status.HTTP_201_CREATED)


# --- Checklist ---------------------------------------------------------------------------------


class ChecklistItemList(ProjectChild):
    queryset = ChecklistItem.objects.none()
    filterset_class = ChecklistItemFilter
    ordering_fields = ["position", "updated_at", "status"]
    ordering = ["position"]
    search_fields = ["title", "key"]

    def scoped_queryset(self):
        return (
            ChecklistItem.objects.restrict(self.request.user)
            .filter(project=self.project())
            .select_related("assignee", "project")
        )

    @extend_schema(responses=s.ChecklistItemOut(many=True))
    def get(self, request, slug):
        return self.list_response(self.get_queryset(), s.ChecklistItemOut)


class ChecklistItemDetail(ProjectChild):
    def _out(self, item):
        return Response(s.ChecklistItemOut(item, context={"request": self.request}).data)

    @extend_schema(responses=s.ChecklistItemOut)
    def get(self, request, slug, key):
        return self._out(self.item())

    @extend_schema(request=s.ChecklistItemIn, responses=s.ChecklistItemOut)
    def patch(self, request, slug, key):
        data = s.ChecklistItemIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        item = self.item()
        if "assignee" in values:
            assignee = None
            if values["assignee"]:
                assignee = User.objects.filter(username=values["assignee"]).first()
                if assignee is None:
                    raise ValidationError({"assignee": "No user has this username."})
            item = checklist_services.checklist_item_assign(
                actor=request.user, item=item, assignee=assignee
            )
        if "status" in values or "justification" in values:
            item = checklist_services.checklist_item_update(
                actor=request.user,
                item=item,
                status=values.get("status"),
                justification=values.get("justification"),
            )
        return self._out(item)


class EvidenceList(IdempotentCreate, ProjectChild):
    queryset = Evidence.objects.none()
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    ordering = ["added_at"]
    ordering_fields = ["added_at"]

    def scoped_queryset(self):
        return (
            Evidence.objects.restrict(self.request.user)
            .filter(item=self.item())
            .select_related("added_by", "item__project")
        )

    @extend_schema(responses=s.EvidenceOut(many=True))
    def get(self, request, slug, key):
        return self.list_response(self.get_queryset(), s.EvidenceOut)

    @extend_schema(
        request={"multipart/form-data": s.EvidenceIn, "application/json": s.EvidenceIn},
        responses={201: s.EvidenceOut},
        description="Attach a file (multipart), a link or a note. Send an `Idempotency-Key` "
        "header to make retries safe.",
    )
    def post(self, request, slug, key):
        return super().post(request, slug, key)

    def create(self, request, slug, key):
        data = s.EvidenceIn(data=request.data)
        data.is_valid(raise_exception=True)
        values, item = data.validated_data, self.item()
        if values["kind"] == Evidence.Kind.FILE:
            evidence = checklist_services.evidence_add_file(
                actor=request.user, item=item, upload=values["file"], title=values["title"]
            )
        elif values["kind"] == Evidence.Kind.LINK:
            evidence = checklist_services.evidence_add_link(
                actor=request.user, item=item, url=values["url"], title=values["title"]
            )
        else:
            evidence = checklist_services.evidence_add_note(
                actor=request.user, item=item, note=values["note"], title=values["title"]
            )
        return Response(
            s.EvidenceOut(evidence, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


class EvidenceObject(ProjectChild):
    def evidence(self) -> Evidence:
        evidence = (
            Evidence.objects.restrict(self.request.user)
            .filter(item__project=self.project(), pk=self.kwargs["pk"])
            .select_related("item__project", "added_by")
            .first()
        )
        if evidence is None:
            raise Http404
        return evidence


class EvidenceDownload(EvidenceObject):
    @extend_schema(
        responses={
            (200, content_type): OpenApiResponse(
                response=OpenApiTypes.BINARY,
                description="The file, as an attachment; its SHA-256 in `X-Content-SHA256`. "
                "Typed by its name when that is PDF, PNG, JPEG, plain text or CSV, otherwise "
                "application/octet-stream.",
            )
            for content_type in sorted({*downloads.SAFE_TYPES, downloads.OPAQUE_TYPE})
        }
    )
    def get(self, request, slug, pk):
        evidence = self.evidence()
        if evidence.kind != Evidence.Kind.FILE:
            raise Http404
        checklist_services.evidence_record_download(actor=request.user, evidence=evidence)
        # Never trusted to render: see lifecycle.checklists.downloads.
        return downloads.evidence_file_response(evidence)


class EvidenceWithdraw(EvidenceObject):
    @extend_schema(request=s.WithdrawIn, responses=s.EvidenceOut)
    def post(self, request, slug, pk):
        data = s.WithdrawIn(data=request.data)
        data.is_valid(raise_exception=True)
        evidence = checklist_services.evidence_withdraw(
            actor=request.user, evidence=self.evidence(), reason=data.validated_data["reason"]
        )
        return Response(s.EvidenceOut(evidence, context={"request": request}).data)


class CommentList(ProjectChild):
    queryset = Comment.objects.none()
    ordering = ["created_at"]
    ordering_fields = ["created_at"]

    def scoped_queryset(self):
        return (
            Comment.objects.restrict(self.request.user)
            .filter(item=self.item())
            .select_related("author")
        )

    @extend_schema(responses=s.CommentOut(many=True))
    def get(self, request, slug, key):
        return self.list_response(self.get_queryset(), s.CommentOut)

    @extend_schema(request=s.CommentIn, responses={201: s.CommentOut})
    def post(self, request, slug, key):
        data = s.CommentIn(data=request.data)
        data.is_valid(raise_exception=True)
        comment = checklist_services.comment_add(
            actor=request.user, item=self.item(), body=data.validated_data["body"]
        )
        return Response(s.CommentOut(comment).data, status=status.HTTP_201_CREATED)


# --- Gates ---------------------------------------------------------------------------------------


class GateList(ProjectChild):
    queryset = Gate.objects.none()
    ordering = ["position"]
    ordering_fields = ["position"]
    filterset_fields = ["state"]

    def scoped_queryset(self):
        return (
            Gate.objects.restrict(self.request.user)
            .filter(project=self.project())
            .select_related("project")
        )

    @extend_schema(responses=s.GateOut(many=True))
    def get(self, request, slug):
        return self.list_response(self.get_queryset(), s.GateOut)


def _evidence_run(run: EvaluationRun | None, context: dict[str, Any]) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.pk,
        "number": run.number,
        "url": _run_url(context, run),
        "model_version": run.model_version.label,
        "dataset_version": run.dataset_version.label,
        "n_records": run.n_records,
        "subset_reason": run.subset_reason,
    }


def _run_url(context: dict[str, Any], run: EvaluationRun) -> str:
    request = context["request"]
    return request.build_absolute_uri(reverse("api:run-detail", args=[run.project.slug, run.pk]))


def _conditions(gate: Gate, context: dict[str, Any]) -> dict[str, Any]:
    c = readiness_of(gate)
    return {
        "next_action": c.next_action,
        "evidence": {
            "designated": c.designated,
            "runs": [_evidence_run(run, context) for run in c.runs],
            "newer_run": _evidence_run(c.newer_run, context),
        },
        "requirements": evaluation_services.evidence_requirements(gate),
        "earlier_gates_not_approved": [
            {"phase": phase, "reason": why} for phase, why in c.earlier_not_approved
        ],
        "can_be_approved": c.can_be_approved,
        "items_missing": [
            {"key": i.key, "title": i.title, "status": i.status} for i in c.blocking_items
        ],
        "required_roles": c.required_roles,
        "approvals": {
            role: [sig.signer.get_username() for sig in sigs]
            for role, sigs in c.approvals_by_role.items()
        },
        "missing_roles": c.missing_roles,
        "separation_of_duties_met": c.separation_of_duties_met,
        "criteria": [
            {
                "id": v.criterion.pk,
                "expression": v.criterion.expression,
                "required": v.criterion.required,
                "verdict": v.status,
                "observed": v.observed,
                "observed_text": v.observed_text,
                "detail": v.detail,
            }
            for v in c.verdicts
        ],
        "signatures": s.SignatureOut(c.signatures, many=True, context=context).data,
        "invalidated_signatures": [
            {
                **s.SignatureOut(sig, context=context).data,
                "invalidated_by": {
                    "kind": why.kind,
                    "cause": why.cause,
                    "at": why.at,
                    "event": why.cause_event_id,
                },
            }
            for sig, why in c.invalidated
        ],
    }


class GateDetail(ProjectChild):
    @extend_schema(
        responses=s.GateDetailOut,
        description="The gate with every condition of its "
        "approval: items missing, criteria verdicts, signatures present, missing "
        "and invalidated.",
    )
    def get(self, request, slug, phase):
        gate = self.gate()
        context = {"request": request}
        return Response(
            {**s.GateOut(gate, context=context).data, "conditions": _conditions(gate, context)}
        )


class GateSubmit(ProjectChild):
    @extend_schema(request=s.SubmitIn, responses=s.GateOut)
    def post(self, request, slug, phase):
        data = s.SubmitIn(data=request.data)
        data.is_valid(raise_exception=True)
        gate = self.gate()
        ids = data.validated_data.get("evidence_runs")
        gate = gate_services.gate_submit(
            actor=request.user,
            gate=gate,
            note=data.validated_data["note"],
            evidence_runs=None if ids is None else _runs_of(gate, ids),
        )
        gate.project = self.project()
        return Response(s.GateOut(gate, context={"request": request}).data)


def _runs_of(gate: Gate, ids: list[int]) -> list[EvaluationRun]:
    """The project's runs with these ids, or a 400 naming those that are not."""
    runs = EvaluationRun.objects.filter(project=gate.project_id, pk__in=ids).in_bulk()
    unknown = [str(i) for i in ids if i not in runs]
    if unknown:
        listed = ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
        raise ValidationError(
            {"evidence_runs": f"No evaluation run with id {listed} in this project."}
        )
    return [runs[i] for i in ids]


class GateEvidence(ProjectChild):
    @extend_schema(
        request=s.DesignateEvidenceIn,
        responses=s.GateOut,
        description="Change the evaluation runs a gate in review is judged on (project lead), "
        "with a reason. The signatures of the round are invalidated and a new round starts.",
    )
    def post(self, request, slug, phase):
        data = s.DesignateEvidenceIn(data=request.data)
        data.is_valid(raise_exception=True)
        gate = self.gate()
        gate = gate_services.gate_evidence_designate(
            actor=request.user,
            gate=gate,
            evidence_runs=_runs_of(gate, data.validated_data["evidence_runs"]),
            reason=data.validated_data["reason"],
        )
        gate.project = self.project()
        return Response(s.GateOut(gate, context={"request": request}).data)


class SignOffList(ProjectChild):
    queryset = Signature.objects.none()
    ordering = ["signed_at"]
    ordering_fields = ["signed_at", "review_round"]
    filterset_fields = ["review_round", "meaning", "role"]

    def scoped_queryset(self):
        return (
            Signature.objects.restrict(self.request.user)
            .filter(gate=self.gate())
            .select_related("signer")
            .prefetch_related(
                Prefetch("invalidation", queryset=SignatureInvalidation.objects.all())
            )
        )

    @extend_schema(responses=s.SignatureOut(many=True))
    def get(self, request, slug, phase):
        return self.list_response(self.get_queryset(), s.SignatureOut)

    @extend_schema(
        request=s.SignIn,
        responses={201: s.SignatureOut},
        description="Sign the gate in one of your roles. Re-authentication: your password "
        "(and TOTP code when enrolled) in the request. A wrong password signs nothing, is "
        "recorded, and counts towards a signing lockout.",
    )
    def post(self, request, slug, phase):
        data = s.SignIn(data=request.data)
        data.is_valid(raise_exception=True)
        signature = signoff_create(actor=request.user, gate=self.gate(), **data.validated_data)
        return Response(s.SignatureOut(signature).data, status=status.HTTP_201_CREATED)


class CriterionList(ProjectChild):
    queryset = GateCriterion.objects.none()
    ordering = ["id"]
    ordering_fields = ["id"]

    def scoped_queryset(self):
        return GateCriterion.objects.restrict(self.request.user).filter(gate=self.gate())

    def _verdicts(self):
        return {v.criterion.pk: v for v in readiness_of(self.gate()).verdicts}

    @extend_schema(responses=s.CriterionOut(many=True))
    def get(self, request, slug, phase):
        return self.list_response(self.get_queryset(), s.CriterionOut, verdicts=self._verdicts())

    @extend_schema(request=s.CriterionIn, responses={201: s.CriterionOut})
    def post(self, request, slug, phase):
        data = s.CriterionIn(data=request.data)
        data.is_valid(raise_exception=True)
        criterion = gate_services.gate_criterion_create(
            actor=request.user, gate=self.gate(), **data.validated_data
        )
        out = s.CriterionOut(criterion, context={"verdicts": self._verdicts()})
        return Response(out.data, status=status.HTTP_201_CREATED)


class CriterionDetail(ProjectChild):
    def criterion(self) -> GateCriterion:
        criterion = (
            GateCriterion.objects.restrict(self.request.user)
            .filter(gate=self.gate(), pk=self.kwargs["pk"])
            .first()
        )
        if criterion is None:
            raise Http404
        return criterion

    def _out(self, criterion):
        verdicts = {v.criterion.pk: v for v in readiness_of(criterion.gate).verdicts}
        return Response(s.CriterionOut(criterion, context={"verdicts": verdicts}).data)

    @extend_schema(responses=s.CriterionOut)
    def get(self, request, slug, phase, pk):
        return self._out(self.criterion())

    @extend_schema(request=s.CriterionIn, responses=s.CriterionOut)
    def patch(self, request, slug, phase, pk):
        data = s.CriterionIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        criterion = gate_services.gate_criterion_update(
            actor=request.user, criterion=self.criterion(), **data.validated_data
        )
        return self._out(criterion)

    @extend_schema(responses={204: None})
    def delete(self, request, slug, phase, pk):
        gate_services.gate_criterion_delete(actor=request.user, criterion=self.criterion())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Evaluation runs --------------------------------------------------------------------------


class EvaluationRunList(IdempotentCreate, ProjectChild):
    queryset = EvaluationRun.objects.none()
    parser_classes = [MultiPartParser, FormParser]
    filterset_class = EvaluationRunFilter
    ordering = ["-created_at"]
    ordering_fields = ["created_at", "finished_at", "status"]

    def scoped_queryset(self):
        return (
            EvaluationRun.objects.restrict(self.request.user)
            .filter(project=self.project())
            .select_related("gate", "model_version", "dataset_version", "requested_by", "project")
        )

    @extend_schema(responses=s.EvaluationRunOut(many=True))
    def get(self, request, slug):
        return self.list_response(self.get_queryset(), s.EvaluationRunOut)

    @extend_schema(
        request={"multipart/form-data": s.EvaluationRunIn},
        responses={202: s.EvaluationRunOut, 200: s.UploadCheckOut},
        parameters=[
            OpenApiParameter(
                "Location",
                OpenApiTypes.URI,
                OpenApiParameter.HEADER,
                response=[202],
                required=True,
                description="The run's URL, to poll.",
            )
        ],
        description="Upload evaluation records for a gate; the file is checked at once (a "
        "refused file answers 400 with its line and field; a file whose record count differs "
        "from the dataset version's row_count is refused unless `subset_reason` declares a "
        "subset) and scored by a background job. Poll the run's URL. `warnings` lists what "
        "the gate's criteria need that the file lacks; `check_only=true` answers them (200) "
        "without storing anything. Send an `Idempotency-Key` header to make retries safe.",
    )
    def post(self, request, slug):
        # The file is read and checked before IdempotentCreate opens its transaction: on
        # SQLite a transaction holds the whole database's write lock.
        self.checked = self._checked_upload(request)
        if self.check_only:
            checked = self.checked
            return Response(
                {
                    "n_records": checked.n_records,
                    "subset_reason": checked.subset_reason,
                    "warnings": list(checked.warnings),
                    "requirements": evaluation_services.evidence_requirements(checked.gate),
                }
            )
        return super().post(request, slug)

    def _checked_upload(self, request) -> evaluation_services.EvaluationUpload:
        data = s.EvaluationRunIn(data=request.data)
        data.is_valid(raise_exception=True)
        values, project = data.validated_data, self.project()
        self.check_only = values["check_only"]
        gate = project.gates.filter(phase=values["gate"]).first()
        model = project.model_versions.filter(label=values["model_version"]).first()
        dataset = project.dataset_versions.filter(label=values["dataset_version"]).first()
        missing = {
            field: f"No {field.replace('_', ' ')} “{values[field]}” in this project."
            for field, found in (
                ("gate", gate),
                ("model_version", model),
                ("dataset_version", dataset),
            )
            if found is None
        }
        if missing:
            raise ValidationError(missing)
        return evaluation_services.evaluation_upload_check(
            user=request.user,
            gate=gate,
            model_version=model,
            dataset_version=dataset,
            upload=values["file"],
            task=values["task"],
            metrics=[m.strip() for m in values["metrics"].split(",") if m.strip()],
            seed=values["seed"],
            resamples=values["resamples"],
            subset_reason=values["subset_reason"],
        )

    def create(self, request, slug):
        checked = self.checked
        run = evaluation_services.evaluation_run_start(
            actor=request.user,
            gate=checked.gate,
            model_version=checked.model_version,
            dataset_version=checked.dataset_version,
            upload=checked.upload,
            checked=checked,
        )
        body = s.EvaluationRunOut(run, context={"request": request}).data
        return Response(
            body, status=status.HTTP_202_ACCEPTED, headers={"Location": self.location(body)}
        )

    def location(self, body: Any) -> str | None:
        return body["url"]


class EvaluationRunDetail(ProjectChild):
    @extend_schema(responses=s.EvaluationRunDetailOut)
    def get(self, request, slug, pk):
        run = (
            EvaluationRun.objects.restrict(self.request.user)
            .filter(project=self.project(), pk=pk)
            .select_related("gate", "model_version", "dataset_version", "requested_by", "project")
            .prefetch_related("results")
            .first()
        )
        if run is None:
            raise Http404
        return Response(s.EvaluationRunDetailOut(run, context={"request": request}).data)


class ProjectList(ApiView):
    """Projects the caller may see; registering one makes the caller its project lead."""

    queryset = Project.objects.none()
    ordering_fields = ["name", "created_at", "updated_at", "current_phase", "risk_tier"]
    ordering = ["name"]
    search_fields = ["name", "slug", "clinical_setting"]
    filterset_fields = ["task_category", "risk_tier", "current_phase"]

    def scoped_queryset(self):
        return self.visible_projects().select_related(
            "owner", "checklist_template", "signoff_policy"
        )

    @extend_schema(responses=s.ProjectOut(many=True))
    def get(self, request):
        return self.list_response(self.get_queryset(), s.ProjectOut)

    @extend_schema(request=s.ProjectCreateIn, responses={201: s.ProjectOut})
    def post(self, request):
        data = s.ProjectCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_services.project_create(actor=request.user, **data.validated_data)
        return Response(
            s.ProjectOut(project, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class ProjectDetail(ApiView):
    @extend_schema(responses=s.ProjectOut)
    def get(self, request, slug):
        return Response(s.ProjectOut(self.get_project(), context={"request": request}).data)

    @extend_schema(request=s.ProjectUpdateIn, responses=s.ProjectOut)
    def patch(self, request, slug):
        data = s.ProjectUpdateIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = project_services.project_update(
            actor=request.user, project=self.get_project(), **data.validated_data
        )
        return Response(s.ProjectOut(project, context={"request": request}).data)


# --- Model facts --------------------------------------------------------------------------------


class ModelFactsDetail(ProjectChild):
    """The project's model facts: what the CHAI card and the HTI-1 source attributes need that
    the project does not hold elsewhere (docs/reports.md)."""

    parser_classes = [JSONParser]

    def _out(self) -> Response:
        state = model_facts_state(self.project())
        return Response(
            s.ModelFactsOut(
                {
                    "facts": state.values,
                    "missing": state.missing_keys,
                    "updated_at": state.updated_at,
                    "updated_by": state.updated_by,
                }
            ).data
        )

    @extend_schema(
        responses=s.ModelFactsOut,
        description='Every declared model fact ("" when blank) and, for the CHAI Applied '
        "Model Card and for the HTI-1 source attributes, the required facts still missing.",
    )
    def get(self, request, slug):
        return self._out()

    @extend_schema(
        request=s.ModelFactsIn,
        responses=s.ModelFactsOut,
        description="Change some facts (those who may change the project's details: the project "
        "lead). Facts not named keep their value; a blank value clears one. Only the facts "
        "whose value changes are recorded, in one audit event with their old and new values "
        "and the reason. An unknown key, a value that is not text, too long or holding a NUL "
        "answers 400 naming the fact.",
    )
    def patch(self, request, slug):
        data = s.ModelFactsIn(data=request.data)
        data.is_valid(raise_exception=True)
        project_services.model_facts_update(
            actor=request.user,
            project=self.project(),
            changes=data.validated_data["facts"],
            reason=data.validated_data["reason"],
        )
        return self._out()
