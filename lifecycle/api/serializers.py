"""Input and output shapes of the lifecycle endpoints."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api.serializers import UserField
from governance.models import Project, RiskTier, TaskCategory
from governance.roles import Role
from lifecycle.checklists.models import ChecklistItem, Comment, Evidence, ItemStatus
from lifecycle.evaluations.models import (
    Adaptation,
    DatasetPurpose,
    DatasetVersion,
    EvaluationResult,
    EvaluationRun,
    ModelVersion,
)
from lifecycle.gates.expressions import parse_criterion
from lifecycle.gates.models import (
    Comparator,
    CriterionBound,
    CriterionScope,
    Gate,
    GateCriterion,
    Signature,
    SignatureMeaning,
)
from lifecycle.gates.readiness import run_verdicts
from lifecycle.metrics.registry import DEFAULT_RESAMPLES, MAX_RESAMPLES
from lifecycle.projects.facts import FACTS, MAX_FACT_LENGTH


def _absolute(context: dict, name: str, *args) -> str:
    return context["request"].build_absolute_uri(reverse(name, args=args))


class ModelVersionOut(serializers.ModelSerializer):
    created_by = UserField()

    class Meta:
        model = ModelVersion
        fields = ["id", "label", "base_model", "adaptation", "notes", "created_at", "created_by"]


class ModelVersionIn(serializers.Serializer):
    label = serializers.CharField(max_length=100)
    base_model = serializers.CharField(max_length=200)
    adaptation = serializers.ChoiceField(choices=Adaptation.choices)
    notes = serializers.CharField(required=False, allow_blank=True, default="")


class DatasetVersionOut(serializers.ModelSerializer):
    created_by = UserField()

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "label",
            "purpose",
            "description",
            "row_count",
            "sha256",
            "created_at",
            "created_by",
        ]


class DatasetVersionIn(serializers.Serializer):
    label = serializers.CharField(max_length=100)
    purpose = serializers.ChoiceField(choices=DatasetPurpose.choices)
    row_count = serializers.IntegerField(min_value=0)
    sha256 = serializers.CharField(max_length=64)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class ChecklistItemOut(serializers.ModelSerializer):
    assignee = UserField(allow_null=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = ChecklistItem
        fields = [
            "key",
            "phase",
            "title",
            "guidance",
            "owner_role",
            "required",
            "evidence_required",
            "status",
            "justification",
            "assignee",
            "updated_at",
            "url",
        ]

    def get_url(self, item: ChecklistItem) -> str:
        return _absolute(self.context, "api:item-detail", item.project.slug, item.key)


class ChecklistItemIn(serializers.Serializer):
    status = serializers.ChoiceField(choices=ItemStatus.choices, required=False)
    justification = serializers.CharField(required=False, allow_blank=True)
    assignee = serializers.CharField(
        required=False, allow_null=True, help_text="Username of a project member, or null."
    )


class EvidenceOut(serializers.ModelSerializer):
    item = serializers.CharField(source="item.key")
    added_by = UserField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Evidence
        fields = [
            "id",
            "item",
            "kind",
            "title",
            "original_name",
            "content_type",
            "size",
            "sha256",
            "url",
            "note",
            "added_by",
            "added_at",
            "withdrawn_at",
            "withdrawal_reason",
            "download_url",
        ]

    def get_download_url(self, evidence: Evidence) -> str | None:
        if evidence.kind != Evidence.Kind.FILE:
            return None
        return _absolute(
            self.context, "api:evidence-download", evidence.item.project.slug, evidence.pk
        )


class EvidenceIn(serializers.Serializer):
    """A file (multipart `file`), a link (`url`) or a note (`note`)."""

    kind = serializers.ChoiceField(choices=Evidence.Kind.choices)
    title = serializers.CharField(required=False, allow_blank=True, default="")
    file = serializers.FileField(required=False)
    url = serializers.CharField(required=False)
    note = serializers.CharField(required=False)

    def validate(self, data):
        needed = {"file": "file", "link": "url", "note": "note"}[data["kind"]]
        if not data.get(needed):
            raise serializers.ValidationError({needed: f"Required for {data['kind']} evidence."})
        return data


class WithdrawIn(serializers.Serializer):
    reason = serializers.CharField()


class CommentOut(serializers.ModelSerializer):
    author = UserField()

    class Meta:
        model = Comment
        fields = ["id", "author", "body", "created_at"]


class CommentIn(serializers.Serializer):
    body = serializers.CharField()


class SignatureOut(serializers.ModelSerializer):
    signer = UserField()
    manifestation = serializers.CharField(read_only=True)
    counts = serializers.SerializerMethodField(help_text="False once invalidated or superseded.")
    invalidation = serializers.SerializerMethodField()

    class Meta:
        model = Signature
        fields = [
            "id",
            "review_round",
            "signer",
            "signer_name",
            "role",
            "meaning",
            "reason",
            "signed_at",
            "manifest_sha256",
            "record_sha256",
            "manifestation",
            "counts",
            "invalidation",
        ]

    def _invalidation(self, signature: Signature):
        return getattr(signature, "invalidation", None)

    def get_counts(self, signature: Signature) -> bool:
        return self._invalidation(signature) is None

    def get_invalidation(self, signature: Signature) -> dict | None:
        why = self._invalidation(signature)
        if why is None:
            return None
        return {"kind": why.kind, "cause": why.cause, "at": why.at, "event": why.cause_event_id}


class SignIn(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
    meaning = serializers.ChoiceField(choices=SignatureMeaning.choices)
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    password = serializers.CharField(
        style={"input_type": "password"}, help_text="Re-authentication: the signer's password."
    )
    otp_token = serializers.CharField(required=False, allow_blank=True, default="")


class CriterionOut(serializers.ModelSerializer):
    expression = serializers.CharField(read_only=True)
    verdict = serializers.SerializerMethodField()

    class Meta:
        model = GateCriterion
        fields = [
            "id",
            "metric",
            "scope",
            "group_attribute",
            "bound",
            "comparator",
            "threshold",
            "required",
            "min_records",
            "min_group_records",
            "expression",
            "verdict",
        ]

    def get_verdict(self, criterion: GateCriterion) -> dict | None:
        verdict = self.context.get("verdicts", {}).get(criterion.pk)
        if verdict is None:
            return None
        return {"status": verdict.status, "observed": verdict.observed, "detail": verdict.detail}


class CriterionIn(serializers.Serializer):
    """A criterion as an `expression` (`ci_low(recall) >= 0.9`, docs/evaluations.md) or as
    its separate fields (at least metric, comparator and threshold), never both."""

    EXPRESSION_FIELDS = ("metric", "scope", "group_attribute", "bound", "comparator", "threshold")

    expression = serializers.CharField(
        required=False,
        max_length=300,
        help_text="The whole criterion as the committee writes it, e.g. "
        "`each_group:ci_low(recall(sex)) >= 0.8`; instead of metric, scope, group_attribute, "
        "bound, comparator and threshold.",
    )
    metric = serializers.CharField(required=False)
    scope = serializers.ChoiceField(choices=CriterionScope.choices, required=False)
    group_attribute = serializers.CharField(required=False, allow_blank=True)
    bound = serializers.ChoiceField(choices=CriterionBound.choices, required=False)
    comparator = serializers.ChoiceField(choices=Comparator.choices, required=False)
    threshold = serializers.FloatField(required=False)
    required = serializers.BooleanField(default=True)
    min_records = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Fewer records than this overall: insufficient evidence. Null: no minimum.",
    )
    min_group_records = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="A subgroup with fewer records than this: insufficient evidence. Null: none.",
    )

    def validate(self, attrs: dict) -> dict:
        separate = [field for field in self.EXPRESSION_FIELDS if field in attrs]
        if "expression" in attrs:
            if separate:
                raise serializers.ValidationError(
                    {
                        "expression": "Give either expression or the separate fields, not "
                        f"both: found expression and {', '.join(separate)}."
                    }
                )
            try:
                attrs.update(parse_criterion(attrs.pop("expression")))
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"expression": exc.messages}) from None
        elif not self.partial:
            missing = [f for f in ("metric", "comparator", "threshold") if f not in attrs]
            if missing:
                raise serializers.ValidationError(
                    {f: "This field is required unless expression is given." for f in missing}
                )
        if not self.partial:
            attrs.setdefault("scope", CriterionScope.OVERALL)
            attrs.setdefault("group_attribute", "")
            attrs.setdefault("bound", CriterionBound.VALUE)
        return attrs


class GateOut(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Gate
        fields = [
            "phase",
            "position",
            "state",
            "review_round",
            "cycle",
            "opened_at",
            "submitted_at",
            "decided_at",
            "decision_note",
            "reopened_at",
            "reopened_reason",
            "url",
        ]

    def get_url(self, gate: Gate) -> str:
        return _absolute(self.context, "api:gate-detail", gate.project.slug, gate.phase)


class ItemRefOut(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    status = serializers.ChoiceField(choices=ItemStatus.choices)


class CriterionVerdictOut(serializers.Serializer):
    id = serializers.IntegerField()
    expression = serializers.CharField(help_text="As the committee writes it: auroc >= 0.85.")
    required = serializers.BooleanField()
    verdict = serializers.ChoiceField(choices=["pass", "fail", "no data"])
    observed = serializers.FloatField(
        allow_null=True, help_text="The deciding number (the worst one where several apply)."
    )
    detail = serializers.CharField()


class InvalidationOut(serializers.Serializer):
    kind = serializers.CharField()
    cause = serializers.CharField()
    at = serializers.DateTimeField()
    event = serializers.IntegerField(allow_null=True, help_text="The audit event that caused it.")


class InvalidatedSignatureOut(SignatureOut):
    invalidated_by = InvalidationOut()

    class Meta(SignatureOut.Meta):
        fields = [*SignatureOut.Meta.fields, "invalidated_by"]


class EvidenceRunOut(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField(help_text="The run's number within the project.")
    url = serializers.URLField()
    model_version = serializers.CharField()
    dataset_version = serializers.CharField()
    n_records = serializers.IntegerField(allow_null=True)
    subset_reason = serializers.CharField(help_text="Empty unless a declared subset.")


class GateEvidenceOut(serializers.Serializer):
    designated = serializers.BooleanField(
        help_text="True: the runs the project lead designated at submission (in review or "
        "approved). False: a preview on the latest run that is no subset."
    )
    runs = EvidenceRunOut(many=True)
    newer_run = EvidenceRunOut(
        allow_null=True,
        help_text="A succeeded run newer than the designated evidence; it does not change the "
        "verdict.",
    )


class RequirementOut(serializers.Serializer):
    criterion = serializers.CharField()
    required = serializers.BooleanField()
    metric = serializers.CharField()
    fields = serializers.ListField(child=serializers.CharField())
    group_attribute = serializers.CharField(help_text='Empty, an attribute, or "any".')
    min_records = serializers.IntegerField(allow_null=True)
    min_group_records = serializers.IntegerField(allow_null=True)


class ConditionsOut(serializers.Serializer):
    """Every condition of the gate's approval (governance.signoffs.gate_conditions)."""

    can_be_approved = serializers.BooleanField()
    items_missing = ItemRefOut(many=True, help_text="Required items not done or justified.")
    required_roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices))
    approvals = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Role → usernames of its current approvals.",
    )
    missing_roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices))
    separation_of_duties_met = serializers.BooleanField()
    criteria = CriterionVerdictOut(many=True)
    signatures = SignatureOut(many=True, help_text="Signatures that count in this round.")
    invalidated_signatures = InvalidatedSignatureOut(many=True)
    next_action = serializers.CharField(
        help_text="Who must act next and on what, e.g. \"waiting for: privacy officer's "
        'approval; 2 required items open" (empty when approved).'
    )
    evidence = GateEvidenceOut()
    requirements = RequirementOut(
        many=True, help_text="What the gate's criteria need from an evaluation file."
    )
    earlier_gates_not_approved = serializers.ListField(
        child=serializers.DictField(),
        help_text="Earlier gates that were reopened: {phase, reason}. While any is listed the "
        "gate cannot be submitted or approved.",
    )


class GateDetailOut(GateOut):
    """A gate with its conditions. Describes what `lifecycle.api.views.GateDetail` renders."""

    conditions = ConditionsOut()

    class Meta(GateOut.Meta):
        fields = [*GateOut.Meta.fields, "conditions"]


# Ids beyond a database integer are refused as input, not left to overflow a query.
MAX_RUN_ID = 2**31 - 1
MAX_EVIDENCE_RUNS = 50


class SubmitIn(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="")
    evidence_runs = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_RUN_ID),
        required=False,
        max_length=MAX_EVIDENCE_RUNS,
        help_text="Ids of the succeeded runs the gate is judged on; omitted: its latest run "
        "that is no subset.",
    )


class DesignateEvidenceIn(serializers.Serializer):
    evidence_runs = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_RUN_ID),
        allow_empty=False,
        max_length=MAX_EVIDENCE_RUNS,
        help_text="Ids of the succeeded runs the gate is judged on from now on.",
    )
    reason = serializers.CharField(help_text="Why the evidence changes (audited).")


class UploadCheckOut(serializers.Serializer):
    n_records = serializers.IntegerField()
    subset_reason = serializers.CharField()
    warnings = serializers.ListField(child=serializers.CharField())
    requirements = RequirementOut(many=True)


class ResultOut(serializers.ModelSerializer):
    class Meta:
        model = EvaluationResult
        fields = [
            "metric",
            "scope",
            "group_attribute",
            "group_value",
            "value",
            "ci_low",
            "ci_high",
            "n",
            "reason",
            "warnings",
            "detail",
        ]


class EvaluationRunOut(serializers.ModelSerializer):
    gate = serializers.CharField(source="gate.phase")
    model_version = serializers.CharField(source="model_version.label")
    dataset_version = serializers.CharField(source="dataset_version.label")
    requested_by = UserField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = EvaluationRun
        fields = [
            "id",
            "number",
            "gate",
            "model_version",
            "dataset_version",
            "subset_reason",
            "status",
            "progress",
            "progress_message",
            "error_message",
            "original_name",
            "size",
            "sha256",
            "task",
            "metrics",
            "seed",
            "resamples",
            "n_records",
            "warnings",
            "attempts",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "url",
        ]

    def get_url(self, run: EvaluationRun) -> str:
        return _absolute(self.context, "api:run-detail", run.project.slug, run.pk)


class RunVerdictOut(serializers.Serializer):
    expression = serializers.CharField()
    required = serializers.BooleanField()
    verdict = serializers.ChoiceField(choices=["pass", "fail", "no data", "insufficient evidence"])
    observed = serializers.FloatField(allow_null=True)
    observed_text = serializers.CharField(
        help_text='The compared number named, e.g. "lower bound 0.88 of recall 0.92".'
    )
    detail = serializers.CharField()


class EvaluationRunDetailOut(EvaluationRunOut):
    results = ResultOut(many=True)
    verdicts = serializers.SerializerMethodField(
        help_text="The gate's criteria judged on this run (whether or not it is the gate's "
        "evidence)."
    )
    stall_notice = serializers.CharField(
        read_only=True,
        help_text="Empty, or why the run is late: no worker took it up, or its worker went "
        "silent (the same sentence as the run page).",
    )

    class Meta(EvaluationRunOut.Meta):
        fields = [
            *EvaluationRunOut.Meta.fields,
            "stall_notice",
            "provenance",
            "verdicts",
            "results",
        ]

    @extend_schema_field(RunVerdictOut(many=True))
    def get_verdicts(self, run: EvaluationRun) -> list[dict[str, Any]]:
        return [
            {
                "expression": v.criterion.expression,
                "required": v.criterion.required,
                "verdict": v.status,
                "observed": v.observed,
                "observed_text": v.observed_text,
                "detail": v.detail,
            }
            for v in run_verdicts(run)
        ]


class EvaluationRunIn(serializers.Serializer):
    file = serializers.FileField(help_text="Records: .jsonl or .csv (docs/metrics.md).")
    gate = serializers.CharField(help_text="Phase of the gate, e.g. development.")
    model_version = serializers.CharField(help_text="Label of a registered model version.")
    dataset_version = serializers.CharField(help_text="Label of a registered dataset version.")
    task = serializers.CharField(required=False, allow_blank=True, default="")
    metrics = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Comma-separated metric keys."
    )
    seed = serializers.IntegerField(min_value=0, default=0)
    resamples = serializers.IntegerField(
        min_value=1, max_value=MAX_RESAMPLES, default=DEFAULT_RESAMPLES
    )
    subset_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=2000,
        help_text="Only for a deliberate subset of the dataset version: why. Without it the "
        "record count must equal the dataset version's row_count.",
    )
    check_only = serializers.BooleanField(
        default=False,
        help_text="Check the file (contract, coverage, fit to the gate's criteria) and answer "
        "200 with its warnings, storing nothing.",
    )


class ProjectOut(serializers.ModelSerializer):
    owner = UserField()
    checklist_template = serializers.CharField(source="checklist_template.version")
    signoff_policy = serializers.CharField(source="signoff_policy.version")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "slug",
            "name",
            "description",
            "owner",
            "clinical_setting",
            "intended_use",
            "intended_users",
            "task_category",
            "risk_tier",
            "current_phase",
            "checklist_template",
            "signoff_policy",
            "created_at",
            "updated_at",
            "url",
        ]

    def get_url(self, project: Project) -> str:
        return self.context["request"].build_absolute_uri(
            reverse("api:project-detail", args=[project.slug])
        )


class ProjectCreateIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.CharField(max_length=80)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    clinical_setting = serializers.CharField(max_length=200)
    intended_use = serializers.CharField()
    intended_users = serializers.CharField(max_length=300)
    task_category = serializers.ChoiceField(choices=TaskCategory.choices)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices)


class ProjectUpdateIn(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    clinical_setting = serializers.CharField(max_length=200, required=False)
    intended_use = serializers.CharField(required=False)
    intended_users = serializers.CharField(max_length=300, required=False)
    task_category = serializers.ChoiceField(choices=TaskCategory.choices, required=False)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False)


# --- Model facts ---------------------------------------------------------------------------------

_FACT_KEYS = [fact.key for fact in FACTS]


@extend_schema_field(
    {
        "type": "object",
        "description": 'Every declared model fact by its key, with its text ("" when blank).',
        "properties": {
            fact.key: {"type": "string", "title": fact.label, "description": fact.help}
            for fact in FACTS
        },
        "required": _FACT_KEYS,
        "additionalProperties": False,
    }
)
class FactValuesOut(serializers.Field):
    def to_representation(self, value: dict[str, str]) -> dict[str, str]:
        return value


@extend_schema_field(
    {
        "type": "object",
        "description": "The model facts to change, by key (see the GET answer). A blank value "
        "clears a fact; facts not named keep their value. Each value is stripped and at most "
        f"{MAX_FACT_LENGTH:,} characters.",
        "properties": {
            fact.key: {
                "type": "string",
                "maxLength": MAX_FACT_LENGTH,
                "title": fact.label,
                "description": fact.help,
            }
            for fact in FACTS
        },
        "additionalProperties": False,
    }
)
class FactValuesIn(serializers.Field):
    """An object of fact key → text. Which keys exist and how long a value may be are the
    service's rules (`model_facts_update`); here only the shape."""

    default_error_messages = {
        # Braces doubled: DRF formats its messages.
        "not_an_object": 'An object of model facts: {{"key": "text", …}}.',
        "not_text": "Each model fact is text: {keys}.",
    }

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if not isinstance(data, dict):
            self.fail("not_an_object")
        wrong = sorted(str(key) for key, value in data.items() if not isinstance(value, str))
        if wrong:
            self.fail("not_text", keys=", ".join(wrong))
        return dict(data)

    def to_representation(self, value: dict[str, str]) -> dict[str, str]:
        return value


def _fact_keys(description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "enum": _FACT_KEYS},
        "description": description,
    }


@extend_schema_field(
    {
        "type": "object",
        "description": "The required facts still blank, in declaration order, for each export "
        "(optional facts are never listed).",
        "properties": {
            "chai": _fact_keys("What the CHAI Applied Model Card lacks."),
            "hti1": _fact_keys("What the HTI-1 source attributes lack."),
        },
        "required": ["chai", "hti1"],
        "additionalProperties": False,
    }
)
class MissingFactsOut(serializers.Field):
    def to_representation(self, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return value


class ModelFactsOut(serializers.Serializer):
    facts = FactValuesOut()
    missing = MissingFactsOut()
    updated_at = serializers.DateTimeField(
        allow_null=True, help_text="When a fact last changed; null if none was ever given."
    )
    updated_by = UserField(allow_null=True, help_text="Who changed a fact last.")


class ModelFactsIn(serializers.Serializer):
    facts = FactValuesIn(required=False, default=dict)
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Why the facts change; recorded in the audit trail.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A misspelt "facts" would otherwise change nothing without a word.
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {key: "Not a field of this request: send “facts” and “reason”." for key in unknown}
            )
        return attrs
