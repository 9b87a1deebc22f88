"""The lifecycle's models, collected for Django's app registry from the concept packages
that define them. Code imports them from their own package (`lifecycle.checklists.models`,
`lifecycle.gates.models`, `lifecycle.evaluations.models`)."""

from lifecycle.checklists.models import (  # noqa: F401
    SETTLED_STATUSES,
    ChecklistItem,
    ChecklistTemplate,
    Comment,
    Evidence,
    EvidenceKind,
    ItemStatus,
    TemplateItem,
    evidence_upload_to,
    sha256_validator,
)
from lifecycle.evaluations.models import (  # noqa: F401
    Adaptation,
    DatasetPurpose,
    DatasetVersion,
    EvaluationResult,
    EvaluationRun,
    ModelVersion,
    ResultScope,
    RunStatus,
    evaluation_upload_to,
)
from lifecycle.gates.models import (  # noqa: F401
    Comparator,
    CriterionBound,
    CriterionScope,
    Gate,
    GateCriterion,
    GateState,
    ReauthFailure,
    Signature,
    SignatureInvalidation,
    SignatureMeaning,
    SignOffPolicy,
    SignOffRequirement,
)
from lifecycle.monitoring.models import (  # noqa: F401
    Feedback,
    Incident,
    IncidentEvent,
    MonitoringBatch,
    MonitoringPlan,
    MonitoringSignal,
    ScheduledJob,
)
from lifecycle.projects.models import ModelFacts  # noqa: F401
