"""Monitoring endpoints: the overview, the plan, the batches pushed each period, incidents with
their timeline, and feedback from clinicians and patients (docs/api.md, "Monitoring").

Views and their input and output shapes live together here. As everywhere in the API, a view
parses, calls one monitoring service and renders: the services check permission, change the
rows and write the audit event in one transaction (`lifecycle.monitoring.services`).
"""

import hashlib
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Prefetch
from django.http import Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from governance.api.base import IdempotentCreate
from governance.api.serializers import UserField
from governance.models import IdempotentRequest, User
from lifecycle.api.serializers import GateOut
from lifecycle.api.views import ProjectChild
from lifecycle.evaluations.models import EvaluationRun, ModelVersion
from lifecycle.monitoring import selectors, services
from lifecycle.monitoring.models import (
    Feedback,
    FeedbackCategory,
    FeedbackSource,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentSource,
    IncidentStatus,
    MonitoringBatch,
    MonitoringPlan,
    MonitoringSignal,
    Severity,
    SignalRule,
)

# Caps on free text: enough for any real report, small enough that no request can store a
# novel in a title or an incident's timeline.
TITLE_MAX = 200
TEXT_MAX = 5000
REFERENCE_MAX = 200
LABEL_MAX = 100
USERNAME_MAX = 150
NAME_MAX = 60  # a metric or group attribute, as the result rows store them
MAX_METRICS = 50
MAX_COHORTS = 20
# Numbers beyond a database integer are refused as input, not left to overflow a query.
MAX_NUMBER = 2**31 - 1

NUMBER = OpenApiParameter(
    "number",
    OpenApiTypes.INT,
    OpenApiParameter.PATH,
    description="The object's number within the project (Batch 3, Incident 2).",
)


def _absolute(context: dict[str, Any], name: str, *args: Any) -> str:
    url: str = context["request"].build_absolute_uri(reverse(name, args=args))
    return url


def _plan_field(name: str) -> "models.Field[Any, Any]":
    field = MonitoringPlan._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _setting(name: str) -> dict[str, Any]:
    """A plan setting's default, help and bounds, read from the model: the API refuses what
    the model (and the plan page) refuses, with the same bounds."""
    field = _plan_field(name)
    options: dict[str, Any] = {"default": field.get_default(), "help_text": str(field.help_text)}
    for validator in field.validators:
        if isinstance(validator, MinValueValidator):
            options["min_value"] = validator.limit_value
        elif isinstance(validator, MaxValueValidator):
            options["max_value"] = validator.limit_value
    return options


def _help(name: str) -> str:
    return str(_plan_field(name).help_text)


# --- Shapes ------------------------------------------------------------------------------------


class RunRefOut(serializers.Serializer):
    """An evaluation run named by its number, with the URL of its endpoint."""

    id = serializers.IntegerField()
    number = serializers.IntegerField(help_text="The run's number within the project.")
    status = serializers.CharField()
    gate = serializers.CharField(source="gate.phase")
    model_version = serializers.CharField(source="model_version.label")
    dataset_version = serializers.CharField(source="dataset_version.label")
    n_records = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(help_text="SHA-256 of the uploaded file.")
    url = serializers.SerializerMethodField()

    def get_url(self, run: EvaluationRun) -> str:
        return _absolute(self.context, "api:run-detail", run.project.slug, run.pk)


class PlanOut(serializers.ModelSerializer):
    baseline_run = RunRefOut()
    metrics = serializers.ListField(child=serializers.CharField())
    cohorts = serializers.ListField(child=serializers.CharField())
    created_by = UserField()
    updated_by = UserField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = MonitoringPlan
        fields = [
            "baseline_run",
            "metrics",
            "cohorts",
            "starts_on",
            "period_days",
            "review_interval_days",
            "resamples",
            "cusum_k",
            "cusum_h",
            "psi_alert",
            "review_due_at",
            "review_overdue_since",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
            "url",
        ]

    def get_url(self, plan: MonitoringPlan) -> str:
        return _absolute(self.context, "api:monitoring-plan", plan.project.slug)


class PlanIn(serializers.Serializer):
    """The whole plan (PUT replaces it): settings left out take their defaults."""

    baseline_run = serializers.IntegerField(
        min_value=1,
        max_value=MAX_NUMBER,
        help_text="The NUMBER of the baseline run within the project: a succeeded evidence run "
        "of the approved development or deployment gate.",
    )
    metrics = serializers.ListField(
        child=serializers.CharField(max_length=NAME_MAX),
        allow_empty=False,
        max_length=MAX_METRICS,
        help_text=_help("metrics"),
    )
    cohorts = serializers.ListField(
        child=serializers.CharField(max_length=NAME_MAX),
        required=False,
        default=list,
        max_length=MAX_COHORTS,
        help_text=_help("cohorts"),
    )
    starts_on = serializers.DateField(help_text=_help("starts_on"))
    period_days = serializers.IntegerField(**_setting("period_days"))
    review_interval_days = serializers.IntegerField(**_setting("review_interval_days"))
    resamples = serializers.IntegerField(**_setting("resamples"))
    cusum_k = serializers.FloatField(**_setting("cusum_k"))
    cusum_h = serializers.FloatField(**_setting("cusum_h"))
    psi_alert = serializers.FloatField(**_setting("psi_alert"))


class SignalOut(serializers.ModelSerializer):
    rule = serializers.ChoiceField(choices=SignalRule.choices)
    incident = serializers.IntegerField(
        source="incident.number",
        allow_null=True,
        default=None,
        help_text="The number of the incident it raised or joined.",
    )

    class Meta:
        model = MonitoringSignal
        fields = [
            "rule",
            "metric",
            "scope",
            "group_attribute",
            "group_value",
            "value",
            "limit",
            "required",
            "message",
            "incident",
            "created_at",
        ]


class BatchOut(serializers.ModelSerializer):
    run = RunRefOut(help_text="The evaluation run on the monitoring gate that scores it.")
    model_version = serializers.CharField(source="run.model_version.label")
    n_records = serializers.IntegerField(source="run.n_records", allow_null=True)
    sha256 = serializers.CharField(source="run.sha256", help_text="SHA-256 of the file.")
    submitted_by = UserField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = MonitoringBatch
        fields = [
            "number",
            "period_start",
            "period_end",
            "status",
            "error_message",
            "model_version",
            "n_records",
            "sha256",
            "run",
            "submitted_by",
            "created_at",
            "analysed_at",
            "url",
        ]

    def get_url(self, batch: MonitoringBatch) -> str:
        return _absolute(
            self.context, "api:monitoring-batch-detail", batch.project.slug, batch.number
        )


@extend_schema_field(
    {
        "type": "object",
        "description": "Drift against the baseline, as stored (docs/monitoring.md): "
        '`{"n_baseline", "n_current", "fields": {field: {"psi", "ks_statistic", "ks_pvalue", '
        '"wasserstein"}}, "groups": {attribute: {"psi", "chi2_pvalue"}}}`, each statistic '
        '`{"value": x}` or `{"value": null, "reason": "…"}`. Empty until the batch is analysed.',
        "additionalProperties": True,
    }
)
class DriftField(serializers.Field):
    def to_representation(self, value: dict[str, Any]) -> dict[str, Any]:
        return value


class BatchDetailOut(BatchOut):
    drift = DriftField()
    signals = SignalOut(many=True, help_text="What the alert rules found on this batch.")

    class Meta(BatchOut.Meta):
        fields = [*BatchOut.Meta.fields, "drift", "signals"]


class BatchIn(serializers.Serializer):
    file = serializers.FileField(
        help_text="The period's monitoring records: .jsonl or .csv, in the record contract "
        "of docs/metrics.md (the plan's metrics decide which fields are needed)."
    )
    period_start = serializers.DateField(
        help_text="The first day of the period the records cover: a period of the plan "
        "(its starts_on plus a multiple of period_days), not in the future, not covered yet."
    )
    model_version = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=LABEL_MAX,
        help_text="Label of the model version that produced the records; default the "
        "baseline run's.",
    )


class EventOut(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=IncidentEventKind.choices)
    actor = UserField(allow_null=True, help_text="Null for the system (an alert rule, a job).")
    changes = serializers.DictField(
        child=serializers.ListField(),
        help_text="For a change: field → [before, after].",
    )

    class Meta:
        model = IncidentEvent
        fields = ["kind", "text", "changes", "actor", "at"]


class IncidentOut(serializers.ModelSerializer):
    source = serializers.ChoiceField(choices=IncidentSource.choices)
    severity = serializers.ChoiceField(choices=Severity.choices)
    status = serializers.ChoiceField(choices=IncidentStatus.choices)
    owner = UserField(allow_null=True)
    reported_by = UserField(allow_null=True, help_text="Null when an alert rule raised it.")
    batch = serializers.IntegerField(
        source="batch.number",
        allow_null=True,
        default=None,
        help_text="The number of the batch whose alert raised it.",
    )
    url = serializers.SerializerMethodField()

    class Meta:
        model = Incident
        fields = [
            "number",
            "title",
            "description",
            "source",
            "severity",
            "status",
            "owner",
            "batch",
            "resolution",
            "reported_by",
            "opened_at",
            "updated_at",
            "resolved_at",
            "url",
        ]

    def get_url(self, incident: Incident) -> str:
        return _absolute(
            self.context, "api:incident-detail", incident.project.slug, incident.number
        )


class IncidentDetailOut(IncidentOut):
    timeline = serializers.SerializerMethodField()
    signals = SignalOut(many=True, help_text="The alerts that raised or joined it.")

    class Meta(IncidentOut.Meta):
        fields = [*IncidentOut.Meta.fields, "timeline", "signals"]

    @extend_schema_field(EventOut(many=True))
    def get_timeline(self, incident: Incident) -> list[dict[str, Any]]:
        events = selectors.incident_timeline(incident)
        return EventOut(events, many=True, context=self.context).data


class IncidentIn(serializers.Serializer):
    """A clinical safety report."""

    title = serializers.CharField(max_length=TITLE_MAX)
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=TEXT_MAX
    )
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.MODERATE)
    owner = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        max_length=USERNAME_MAX,
        help_text="Username of the member who sees it through; null: nobody yet.",
    )


class IncidentUpdateIn(serializers.Serializer):
    status = serializers.ChoiceField(choices=IncidentStatus.choices, required=False)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    owner = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=USERNAME_MAX,
        help_text="Username of a member, or null to leave it unassigned.",
    )
    resolution = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=TEXT_MAX,
        help_text="How it was resolved: required to resolve it.",
    )
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=TEXT_MAX,
        help_text="Added to the timeline with the change.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A misspelt field would otherwise change nothing without a word.
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {key: "Not a field of an incident change." for key in unknown}
            )
        return attrs


class NoteIn(serializers.Serializer):
    text = serializers.CharField(max_length=TEXT_MAX)


class FeedbackOut(serializers.ModelSerializer):
    source = serializers.ChoiceField(choices=FeedbackSource.choices)
    category = serializers.ChoiceField(choices=FeedbackCategory.choices)
    incident = serializers.IntegerField(
        source="incident.number",
        allow_null=True,
        default=None,
        help_text="The number of the incident it opened or joined.",
    )
    submitted_by = UserField()

    class Meta:
        model = Feedback
        fields = [
            "id",
            "source",
            "category",
            "rating",
            "text",
            "record_reference",
            "incident",
            "submitted_by",
            "created_at",
        ]


class FeedbackIn(serializers.Serializer):
    source = serializers.ChoiceField(choices=FeedbackSource.choices)
    category = serializers.ChoiceField(choices=FeedbackCategory.choices)
    rating = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=5,
        help_text="1 (harmful or useless) to 5 (excellent); 1 opens an incident.",
    )
    text = serializers.CharField(required=False, allow_blank=True, default="", max_length=TEXT_MAX)
    record_reference = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=REFERENCE_MAX,
        help_text="The record, encounter or message it is about.",
    )


class ObservationOut(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField(allow_null=True)


class TrendPointOut(serializers.Serializer):
    batch = serializers.IntegerField(help_text="The batch's number.")
    period_start = serializers.DateField(source="label")
    value = serializers.FloatField(source="observation.value", allow_null=True)
    ci_low = serializers.FloatField(source="observation.ci_low", allow_null=True)
    ci_high = serializers.FloatField(source="observation.ci_high", allow_null=True)
    n = serializers.IntegerField(source="observation.n", allow_null=True)
    lower = serializers.FloatField(allow_null=True, help_text="Lower control limit.")
    upper = serializers.FloatField(allow_null=True, help_text="Upper control limit.")
    cusum_high = serializers.FloatField()
    cusum_low = serializers.FloatField()
    signals = serializers.ListField(
        child=serializers.CharField(),
        help_text='"cusum_up", "cusum_down", and "threshold:<criterion>" for each criterion '
        "whose threshold the batch's whole interval is beyond.",
    )


class TrendCriterionOut(serializers.Serializer):
    expression = serializers.CharField()
    comparator = serializers.CharField()
    threshold = serializers.FloatField()
    required = serializers.BooleanField()


class TrendOut(serializers.Serializer):
    """One watched metric of one cohort across the batches (`lifecycle.monitoring.trends`)."""

    metric = serializers.CharField()
    scope = serializers.CharField(help_text="overall, group or fairness.")
    group_attribute = serializers.CharField()
    group_value = serializers.CharField()
    label = serializers.CharField(help_text='e.g. "recall — age_band = 65+".')
    baseline = ObservationOut(help_text="The baseline run's value.")
    criteria = TrendCriterionOut(many=True, help_text="The monitoring gate's criteria on it.")
    points = TrendPointOut(many=True, help_text="One per batch, in period order.")
    signals = serializers.ListField(
        source="latest_signals",
        child=serializers.CharField(),
        help_text="The signals of the latest batch.",
    )


class DriftRowOut(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["field", "group"])
    name = serializers.CharField()
    psi = serializers.FloatField(allow_null=True)
    ks_statistic = serializers.FloatField(allow_null=True)
    ks_pvalue = serializers.FloatField(allow_null=True)
    wasserstein = serializers.FloatField(allow_null=True)
    chi2_pvalue = serializers.FloatField(allow_null=True)
    alert = serializers.BooleanField(help_text="PSI at or above the plan's psi_alert.")


class OverviewOut(serializers.Serializer):
    """`lifecycle.monitoring.selectors.MonitoringOverview`, as the API shows it."""

    plan = PlanOut(allow_null=True, help_text="Null until the plan is saved.")
    gate = GateOut(help_text="The monitoring gate.")
    review_due_at = serializers.DateTimeField(allow_null=True)
    review_overdue = serializers.BooleanField()
    next_batch_due = serializers.DateField(
        allow_null=True, help_text="The first period without a batch (its period_start)."
    )
    batches = serializers.SerializerMethodField(help_text="How many batches were received.")
    open_incidents = serializers.IntegerField()
    open_alerts = serializers.IntegerField(help_text="Open incidents raised by alert rules.")
    incidents = serializers.SerializerMethodField(help_text="The open incidents, newest first.")
    latest_batch = BatchOut(
        source="latest", allow_null=True, help_text="The newest analysed batch."
    )
    drift = DriftRowOut(
        source="drift_rows", many=True, help_text="The latest batch's drift, worst first."
    )
    trends = TrendOut(many=True)

    def get_batches(self, overview: selectors.MonitoringOverview) -> int:
        return len(overview.batches)

    @extend_schema_field(IncidentOut(many=True))
    def get_incidents(self, overview: selectors.MonitoringOverview) -> list[dict[str, Any]]:
        open_ones = [incident for incident in overview.incidents if incident.is_open]
        return IncidentOut(open_ones, many=True, context=self.context).data


# --- Views -------------------------------------------------------------------------------------


class MonitoringChild(ProjectChild):
    """An endpoint of the project's monitoring: objects found by their number, or 404."""

    def batch(self) -> MonitoringBatch:
        batch = (
            MonitoringBatch.objects.restrict(self.request.user)
            .filter(project=self.project(), number=self.kwargs["number"])
            .select_related(
                "project",
                "submitted_by",
                "run__project",
                "run__gate",
                "run__model_version",
                "run__dataset_version",
            )
            .prefetch_related(
                Prefetch(
                    "signals",
                    queryset=MonitoringSignal.objects.select_related("incident").order_by("id"),
                )
            )
            .first()
        )
        if batch is None:
            raise Http404
        return batch

    def incident(self) -> Incident:
        try:
            incident = selectors.incident_get(self.project(), self.kwargs["number"])
        except Incident.DoesNotExist:
            raise Http404 from None
        incident.project = self.project()
        return incident

    def user_named(self, field: str, username: str | None) -> User | None:
        """The user of `username` (None for None), or a 400 on `field`."""
        if username is None:
            return None
        user = User.objects.filter(username=username).first()
        if user is None:
            raise ValidationError({field: f"No user has the username “{username}”."})
        return user


def _incident_detail(incident: Incident, request: Request) -> dict[str, Any]:
    incident = (
        Incident.objects.filter(pk=incident.pk)
        .select_related("project", "owner", "reported_by", "batch")
        .prefetch_related(
            Prefetch("signals", queryset=MonitoringSignal.objects.select_related("incident"))
        )
        .get()
    )
    return IncidentDetailOut(incident, context={"request": request}).data


class MonitoringOverview(MonitoringChild):
    @extend_schema(
        responses=OverviewOut,
        description="Where monitoring stands: the plan, the monitoring gate and its periodic "
        "review (due, overdue), the next batch due, open incidents and alerts, the latest "
        "analysed batch's drift (worst first) and every trend with its points and signals.",
    )
    def get(self, request: Request, slug: str) -> Response:
        project = self.project()
        overview = selectors.monitoring_overview(project)
        # The project is the one already read: no query for each URL that names it.
        overview.gate.project = project
        for obj in (overview.plan, overview.latest, *overview.incidents):
            if obj is not None:
                obj.project = project
        return Response(OverviewOut(overview, context={"request": request}).data)


class MonitoringPlanDetail(MonitoringChild):
    parser_classes = [JSONParser]

    def _out(self, plan: MonitoringPlan, code: int = status.HTTP_200_OK) -> Response:
        plan.project = self.project()
        return Response(PlanOut(plan, context={"request": self.request}).data, status=code)

    @extend_schema(responses=PlanOut, description="The monitoring plan; 404 until one is saved.")
    def get(self, request: Request, slug: str) -> Response:
        plan = selectors.monitoring_plan_of(self.project())
        if plan is None:
            raise Http404
        return self._out(plan)

    @extend_schema(
        request=PlanIn,
        responses={200: PlanOut, 201: PlanOut},
        description="Save the plan (the roles that set gate criteria: committee chair, "
        "clinical safety officer): 201 when it is created, 200 when it replaces the plan. "
        "Settings left out take their defaults.",
    )
    def put(self, request: Request, slug: str) -> Response:
        data = PlanIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        project = self.project()
        number = values.pop("baseline_run")
        baseline = EvaluationRun.objects.filter(project=project, number=number).first()
        if baseline is None:
            raise ValidationError({"baseline_run": f"No evaluation run {number} in this project."})
        existed = selectors.monitoring_plan_of(project) is not None
        plan = services.monitoring_plan_save(
            actor=request.user, project=project, baseline_run=baseline, **values
        )
        return self._out(plan, status.HTTP_200_OK if existed else status.HTTP_201_CREATED)


class BatchFilter(django_filters.FilterSet):
    class Meta:
        model = MonitoringBatch
        fields = ["status"]


class MonitoringBatchList(IdempotentCreate, MonitoringChild):
    queryset = MonitoringBatch.objects.none()
    parser_classes = [MultiPartParser, FormParser]
    filterset_class = BatchFilter
    ordering = ["-period_start"]
    ordering_fields = ["period_start", "number", "created_at"]

    def scoped_queryset(self):
        return (
            MonitoringBatch.objects.restrict(self.request.user)
            .filter(project=self.project())
            .select_related(
                "project",
                "submitted_by",
                "run__project",
                "run__gate",
                "run__model_version",
                "run__dataset_version",
            )
        )

    @extend_schema(responses=BatchOut(many=True))
    def get(self, request: Request, slug: str) -> Response:
        return self.list_response(self.get_queryset(), BatchOut)

    @extend_schema(
        request={"multipart/form-data": BatchIn},
        responses={202: BatchOut},
        parameters=[
            OpenApiParameter(
                "Location",
                OpenApiTypes.URI,
                OpenApiParameter.HEADER,
                response=[202],
                required=True,
                description="The batch's URL, to poll.",
            )
        ],
        description="Send one period's monitoring records (project lead, data steward). The "
        "file is checked at once — a refused file answers 400 with its line and field, a "
        "period already covered or not of the plan 400 on period_start — then evaluated as a "
        "run on the monitoring gate and compared with the baseline by background jobs: poll "
        "the batch's URL until its status is analysed (or failed). Send an `Idempotency-Key` "
        "header to make retries safe; a retry must send the same period and file.",
    )
    def post(self, request: Request, slug: str) -> Response:
        data = BatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        self.values = data.validated_data
        self.model_version = self._model_version()
        self.checked: services.BatchUpload | None = None
        # The file is read and checked before IdempotentCreate opens its transaction (on
        # SQLite a transaction holds the whole database's write lock) — except on a retry,
        # whose period the first request already covers: it gets the first answer back.
        if not self._is_retry(request):
            self.checked = services.monitoring_batch_check(
                user=request.user,
                project=self.project(),
                upload=self.values["file"],
                period_start=self.values["period_start"],
                model_version=self.model_version,
            )
        return super().post(request, slug)

    def _is_retry(self, request: Request) -> bool:
        key = request.headers.get("Idempotency-Key", "").strip()
        return bool(key) and IdempotentRequest.objects.filter(user=request.user, key=key).exists()

    def _model_version(self) -> ModelVersion | None:
        label = self.values["model_version"]
        if not label:
            return None
        version = self.project().model_versions.filter(label=label).first()
        if version is None:
            raise ValidationError({"model_version": f"No model version “{label}” in this project."})
        return version

    def create(self, request: Request, slug: str) -> Response:
        # Without a check here (a retry whose first request failed after all), the service
        # checks inside its transaction.
        batch = services.monitoring_batch_submit(
            actor=request.user,
            project=self.project(),
            upload=self.values["file"],
            period_start=self.values["period_start"],
            model_version=self.model_version,
            checked=self.checked,
        )
        batch = self.get_queryset().get(pk=batch.pk)
        body = BatchOut(batch, context={"request": request}).data
        return Response(
            body, status=status.HTTP_202_ACCEPTED, headers={"Location": self.location(body)}
        )

    def location(self, body: Any) -> str | None:
        return body["url"]

    def _replay(self, request: Request, key: str, fingerprint: str) -> Response:
        """A retry gets the first answer back only if it sends the same batch: the same key
        with another period or file would otherwise hide that this batch was never stored."""
        response = super()._replay(request, key, fingerprint)
        first = response.data if response.status_code == status.HTTP_202_ACCEPTED else None
        if first is not None and (
            first.get("period_start") != self.values["period_start"].isoformat()
            or first.get("sha256") != _sha256(self.values["file"])
        ):
            message = (
                "This Idempotency-Key was used for another batch (another period or file): "
                "send this one with a new key."
            )
            return Response(
                {"error": {"status": 422, "code": "idempotency_key_reused", "message": message}},
                status=422,
            )
        return response


def _sha256(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    upload.seek(0)
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


class MonitoringBatchDetail(MonitoringChild):
    @extend_schema(
        parameters=[NUMBER],
        responses=BatchDetailOut,
        description="A batch: its status (evaluating, analysing, analysed, failed), its run, "
        "the drift against the baseline as stored, and the signals of the alert rules.",
    )
    def get(self, request: Request, slug: str, number: int) -> Response:
        return Response(BatchDetailOut(self.batch(), context={"request": request}).data)


class IncidentFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=IncidentStatus.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    source = django_filters.ChoiceFilter(choices=IncidentSource.choices)

    class Meta:
        model = Incident
        fields = ["status", "severity", "source"]


class IncidentList(IdempotentCreate, MonitoringChild):
    queryset = Incident.objects.none()
    parser_classes = [JSONParser]
    filterset_class = IncidentFilter
    # No default ordering here: the selector's, open first and newest first.
    ordering_fields = ["opened_at", "updated_at", "number"]

    def scoped_queryset(self):
        return (
            selectors.incident_list(self.project())
            .restrict(self.request.user)
            .select_related("project", "owner", "reported_by", "batch")
        )

    @extend_schema(
        responses=IncidentOut(many=True),
        description="Open incidents first, then the newest. Filter with `status` and "
        "`severity` (each may repeat) and `source`.",
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.list_response(self.get_queryset(), IncidentOut)

    @extend_schema(
        request=IncidentIn,
        responses={201: IncidentDetailOut},
        description="Report an incident by hand (a clinical safety report; every member but "
        "the auditor). A serious or critical one reopens the monitoring gate. Send an "
        "`Idempotency-Key` header to make retries safe.",
    )
    def post(self, request: Request, slug: str) -> Response:
        return super().post(request, slug)

    def create(self, request: Request, slug: str) -> Response:
        data = IncidentIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        incident = services.incident_report(
            actor=request.user,
            project=self.project(),
            title=values["title"],
            description=values["description"],
            severity=values["severity"],
            owner=self.user_named("owner", values["owner"]),
        )
        body = _incident_detail(incident, request)
        return Response(
            body, status=status.HTTP_201_CREATED, headers={"Location": self.location(body)}
        )

    def location(self, body: Any) -> str | None:
        return body["url"]


class IncidentDetail(MonitoringChild):
    parser_classes = [JSONParser]

    @extend_schema(parameters=[NUMBER], responses=IncidentDetailOut)
    def get(self, request: Request, slug: str, number: int) -> Response:
        return Response(_incident_detail(self.incident(), request))

    @extend_schema(
        parameters=[NUMBER],
        request=IncidentUpdateIn,
        responses=IncidentDetailOut,
        description="Triage, assign or resolve (project lead, clinical safety officer, "
        "committee chair): any of status, severity, owner (a username, or null), resolution "
        "(required to resolve), with a note for the timeline. Raising the severity to serious "
        "or critical reopens the monitoring gate.",
    )
    def patch(self, request: Request, slug: str, number: int) -> Response:
        data = IncidentUpdateIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        incident = self.incident()
        changes: dict[str, Any] = {}
        if "owner" in values:
            changes["owner"] = self.user_named("owner", values["owner"])
        incident = services.incident_update(
            actor=request.user,
            incident=incident,
            status=values.get("status"),
            severity=values.get("severity"),
            resolution=values.get("resolution"),
            note=values["note"],
            **changes,
        )
        return Response(_incident_detail(incident, request))


class IncidentNoteList(IdempotentCreate, MonitoringChild):
    parser_classes = [JSONParser]

    @extend_schema(
        parameters=[NUMBER],
        request=NoteIn,
        responses={201: EventOut},
        description="Add a note to the incident's timeline (every member but the auditor). "
        "Send an `Idempotency-Key` header to make retries safe.",
    )
    def post(self, request: Request, slug: str, number: int) -> Response:
        return super().post(request, slug, number)

    def create(self, request: Request, slug: str, number: int) -> Response:
        data = NoteIn(data=request.data)
        data.is_valid(raise_exception=True)
        event = services.incident_note_add(
            actor=request.user, incident=self.incident(), text=data.validated_data["text"]
        )
        return Response(
            EventOut(event, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class FeedbackFilter(django_filters.FilterSet):
    class Meta:
        model = Feedback
        fields = ["source", "category", "rating"]


class FeedbackList(IdempotentCreate, MonitoringChild):
    queryset = Feedback.objects.none()
    parser_classes = [JSONParser]
    filterset_class = FeedbackFilter
    ordering = ["-created_at", "-id"]
    ordering_fields = ["created_at", "rating"]

    def scoped_queryset(self):
        return (
            Feedback.objects.restrict(self.request.user)
            .filter(project=self.project())
            .select_related("submitted_by", "incident")
        )

    @extend_schema(responses=FeedbackOut(many=True))
    def get(self, request: Request, slug: str) -> Response:
        return self.list_response(self.get_queryset(), FeedbackOut)

    @extend_schema(
        request=FeedbackIn,
        responses={201: FeedbackOut},
        description="Send a clinician's or patient's feedback (every member but the auditor). "
        "Safety feedback, or a rating of 1, opens an incident: its number is in `incident`. "
        "Send an `Idempotency-Key` header to make retries safe.",
    )
    def post(self, request: Request, slug: str) -> Response:
        return super().post(request, slug)

    def create(self, request: Request, slug: str) -> Response:
        data = FeedbackIn(data=request.data)
        data.is_valid(raise_exception=True)
        feedback = services.feedback_submit(
            actor=request.user, project=self.project(), **data.validated_data
        )
        return Response(FeedbackOut(feedback).data, status=status.HTTP_201_CREATED)
