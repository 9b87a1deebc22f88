"""The demo health system: realistic projects in different phases, one user per role.

Everything is created through the services, exactly as a real team would, so the demo also
exercises the rules. Loading is idempotent: a second run changes nothing.
"""

import hashlib

from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.db import transaction

from demo import monitoring as demo_monitoring
from demo import records as demo_records
from demo.model_facts import record_model_facts
from demo.monitoring import FeedbackSpec, MonitoringSpec, TriageSpec
from governance import services as governance_services
from governance.models import Project, RiskTier, TaskCategory, User
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.checklists.models import ItemStatus
from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.models import Adaptation, DatasetPurpose
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.gates.models import Gate, SignatureMeaning
from lifecycle.gates.readiness import readiness_of
from lifecycle.monitoring.models import FeedbackCategory, FeedbackSource, IncidentStatus
from lifecycle.phases import Phase
from lifecycle.projects import services as project_services

DEMO_PASSWORD = "governance-demo"  # noqa: S105 - documented demo credential

# username, first name, last name, the role they hold on every demo project
DEMO_USERS = [
    ("lead", "Priya", "Raman", Role.PROJECT_LEAD),
    ("clinician", "Marcus", "Chen", Role.CLINICAL_LEAD),
    ("steward", "Amara", "Okafor", Role.DATA_STEWARD),
    ("privacy", "Elena", "Garcia", Role.PRIVACY_OFFICER),
    ("safety", "Tom", "Lindqvist", Role.CLINICAL_SAFETY_OFFICER),
    ("compliance", "Grace", "Mensah", Role.COMPLIANCE_OFFICER),
    ("chair", "Robert", "Alvarez", Role.COMMITTEE_CHAIR),
    ("member", "Hannah", "Kowalski", Role.COMMITTEE_MEMBER),
    ("auditor", "Samuel", "Idowu", Role.AUDITOR),
]
OUTSIDER = ("outsider", "Olivia", "Park")

CLASSIFICATION = [
    "precision",
    "recall",
    "f1",
    "auroc",
    "ece",
    "brier_score",
    "confusion_matrix",
    "demographic_parity_difference",
    "equalized_odds_difference",
]

PROJECTS = [
    {
        "slug": "ambient-scribe",
        "name": "Ambient documentation scribe",
        "description": "Drafts outpatient visit notes from the recorded clinician-patient "
        "conversation for the clinician to review and sign.",
        "clinical_setting": "Primary care and outpatient clinics",
        "intended_use": "Generate a draft SOAP note from ambient audio transcripts; the "
        "clinician edits and signs every note. Not used for orders or billing.",
        "intended_users": "Primary care physicians, nurse practitioners",
        "task_category": TaskCategory.CLINICAL_DOCUMENTATION,
        "risk_tier": RiskTier.MEDIUM,
        "approved_through": Phase.DEPLOYMENT,
        "evaluations": {
            Phase.DEVELOPMENT: {
                "model": "scribe-v1.0",
                "dataset": "visits-2026q1-test",
                "records": lambda: demo_records.documentation_drafts(
                    seed=11, n=1200, error_rate=0.06
                ),
                "metrics": [
                    "wer",
                    "latency_p50_ms",
                    "latency_p95_ms",
                    "flesch_kincaid_grade",
                    "hallucination_rate",
                    "redundancy_rate",
                ],
                "criteria": [
                    ("hallucination_rate", "value", "<=", 0.05),
                    ("latency_p95_ms", "value", "<=", 4000),
                    ("wer", "ci_high", "<=", 0.15),
                ],
            },
        },
        # Deployed, its monitoring gate not yet reviewed: twelve quiet weeks, no alert.
        "monitoring": MonitoringSpec(
            baseline_phase=Phase.DEVELOPMENT,
            metrics=["wer", "latency_p95_ms", "hallucination_rate"],
            cohorts=["sex", "age_band"],
            criteria=[
                ("hallucination_rate", "value", "<=", 0.05),
                ("latency_p95_ms", "value", "<=", 4000),
                ("wer", "ci_high", "<=", 0.15),
            ],
            records=demo_records.scribe_monitoring_week,
        ),
        "models": [("scribe-v1.0", "Llama 3.1 70B Instruct", Adaptation.LORA)],
        "datasets": [
            ("visits-2025q4-train", DatasetPurpose.TRAINING, 18_400),
            ("visits-2026q1-test", DatasetPurpose.TEST, 1_200),
        ],
    },
    {
        "slug": "ed-triage-assistant",
        "name": "ED triage assistant",
        "description": "Suggests an Emergency Severity Index level from the triage note.",
        "clinical_setting": "Emergency department",
        "intended_use": "Suggest an ESI level (1-5) and the reasons for it to the triage nurse, "
        "who decides. Flags possible under-triage for a second look.",
        "intended_users": "Triage nurses",
        "task_category": TaskCategory.DIAGNOSTIC_SUPPORT,
        "risk_tier": RiskTier.HIGH,
        "approved_through": Phase.DATA,
        "submit": Phase.DEVELOPMENT,
        "evaluations": {
            Phase.DEVELOPMENT: {
                "model": "triage-v1.0",
                "dataset": "ed-notes-2025-validation",
                "records": lambda: demo_records.binary_classifier(
                    seed=21, n=1200, prevalence=0.18, separation=1.45
                ),
                "metrics": [
                    "accuracy",
                    "recall",
                    "specificity",
                    "auroc",
                    "ece",
                    "brier_score",
                    "demographic_parity_difference",
                    "equalized_odds_difference",
                ],
                # Recall misses the committee's bar: the gate cannot be approved yet.
                "criteria": [
                    ("auroc", "value", ">=", 0.85),
                    ("recall", "ci_low", ">=", 0.90),
                    ("equalized_odds_difference(sex)", "value", "<=", 0.10),
                ],
            },
        },
        "models": [
            ("triage-v0.9", "GPT-4o (hosted, BAA)", Adaptation.PROMPT_ENGINEERING),
            ("triage-v1.0", "GPT-4o (hosted, BAA)", Adaptation.RAG),
        ],
        "datasets": [("ed-notes-2025-validation", DatasetPurpose.VALIDATION, 1_200)],
    },
    {
        "slug": "icd10-coding-assistant",
        "name": "ICD-10 coding assistant",
        "description": "Proposes ICD-10-CM codes for inpatient discharge summaries.",
        "clinical_setting": "Health information management (coding)",
        "intended_use": "Rank candidate ICD-10-CM codes with supporting text spans for the "
        "professional coder, who selects the final codes.",
        "intended_users": "Certified medical coders",
        "task_category": TaskCategory.MEDICAL_CODING,
        "risk_tier": RiskTier.MEDIUM,
        "approved_through": Phase.PLANNING,
        "changes_requested": Phase.DATA,
        "models": [("coder-v2.1", "Mistral Large 2", Adaptation.FULL_FINE_TUNING)],
        "datasets": [("discharge-2024-train", DatasetPurpose.TRAINING, 52_000)],
    },
    {
        "slug": "patient-message-drafter",
        "name": "Patient-portal message drafter",
        "description": "Drafts replies to patient portal messages for clinician review.",
        "clinical_setting": "Patient portal, all ambulatory specialties",
        "intended_use": "Draft an empathetic, plain-language reply to a patient message; a "
        "clinician edits and sends it. Urgent symptoms are routed to the nurse line instead.",
        "intended_users": "Physicians, nurses and medical assistants answering the portal inbox",
        "task_category": TaskCategory.PATIENT_INTERACTION,
        "risk_tier": RiskTier.HIGH,
        "submit": Phase.PLANNING,
        "models": [],
        "datasets": [],
    },
    {
        "slug": "sepsis-risk-summariser",
        "name": "Sepsis risk summariser",
        "description": "Summarises the evidence for sepsis risk from notes and vitals for the "
        "rapid response team.",
        "clinical_setting": "Inpatient wards",
        "intended_use": "Classify admissions at elevated sepsis risk and summarise the supporting "
        "findings for the rapid response nurse; never triggers treatment by itself.",
        "intended_users": "Rapid response nurses, hospitalists",
        "task_category": TaskCategory.CLINICAL_TEXT_CLASSIFICATION,
        "risk_tier": RiskTier.HIGH,
        # Deployed, and its monitoring gate approved on the first four weeks; the rest of the
        # lifecycle is the monitoring below.
        "approved_through": Phase.DEPLOYMENT,
        "evaluations": {
            Phase.DEVELOPMENT: {
                "model": "sepsis-v3.2",
                "dataset": "sepsis-2023-holdout",
                "records": lambda: demo_records.binary_classifier(
                    seed=31, n=1500, prevalence=0.12, separation=1.7
                ),
                "metrics": CLASSIFICATION,
                "criteria": [
                    ("auroc", "value", ">=", 0.85),
                    ("demographic_parity_difference(sex)", "value", "<=", 0.10),
                ],
            },
        },
        # Twelve weekly batches; from week 9 the model separates cases far worse in the 65+
        # band, which grows (demo.records.sepsis_monitoring_week): the rules raise an alert,
        # its incident, and reopen the monitoring gate. ECE is not watched: it grows as a
        # batch shrinks (ten bins over fewer records), a false drift to a CUSUM; the Brier
        # score has no such bias.
        "monitoring": MonitoringSpec(
            baseline_phase=Phase.DEVELOPMENT,
            metrics=[
                "auroc",
                "recall",
                "precision",
                "brier_score",
                "demographic_parity_difference",
            ],
            cohorts=["sex", "age_band"],
            criteria=[
                ("auroc", "value", ">=", 0.85),
                ("worst_group:auroc(age_band)", "value", ">=", 0.80),
                ("demographic_parity_difference(sex)", "value", "<=", 0.10),
            ],
            records=demo_records.sepsis_monitoring_week,
            approve_after_week=4,
            feedback=[
                FeedbackSpec(
                    week=demo_records.SHIFT_WEEK,
                    source=FeedbackSource.CLINICIAN,
                    category=FeedbackCategory.ACCURACY,
                    rating=2,
                    text="Two patients over 80 on the elderly-care ward deteriorated this week "
                    "without a sepsis flag; the summaries quoted the new admission template "
                    "rather than the observations.",
                    record_reference="ward 7 / admissions this week",
                ),
            ],
            triage=[
                TriageSpec(
                    week=demo_records.SHIFT_WEEK,
                    status=IncidentStatus.INVESTIGATING,
                    note="Matches the rapid response team's feedback from ward 7. The "
                    "elderly-care wards switched to a new admission template in this period; "
                    "checking whether the summariser reads it.",
                ),
            ],
        ),
        "models": [("sepsis-v3.2", "Meditron 70B", Adaptation.LORA)],
        "datasets": [
            ("sepsis-2023-train", DatasetPurpose.TRAINING, 120_000),
            ("sepsis-2023-holdout", DatasetPurpose.VALIDATION, 1_500),
        ],
    },
]


def load_demo() -> list[str]:
    """Create the demo users and projects that do not exist yet; return what was created."""
    created: list[str] = []
    # No surrounding transaction: signing commits on its own (a failed re-authentication must
    # be recorded durably), so each step is as it would be for a real user.
    with transaction.atomic():
        users = _users(created)
    for spec in PROJECTS:
        if not Project.objects.filter(slug=spec["slug"]).exists():
            _project(spec, users)
            created.append(f"project {spec['slug']}")
    return created


def _users(created: list[str]) -> dict[str, User]:
    users: dict[str, User] = {}
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser(
            "admin", "admin@demo.invalid", DEMO_PASSWORD, first_name="Site", last_name="Admin"
        )
        created.append("user admin")
    for username, first, last, *_ in [*DEMO_USERS, (*OUTSIDER, None)]:
        user, new = User.objects.get_or_create(
            username=username,
            defaults={
                "first_name": first,
                "last_name": last,
                "email": f"{username}@demo.invalid",
                "is_staff": True,
            },
        )
        if new:
            user.set_password(DEMO_PASSWORD)
            user.save()
            created.append(f"user {username}")
        users[username] = user
    users["lead"].user_permissions.add(
        Permission.objects.get(content_type__app_label="governance", codename="add_project")
    )
    return users


def _project(spec: dict, users: dict[str, User]) -> None:
    lead, chair = users["lead"], users["chair"]
    fields = ("slug", "name", "description", "clinical_setting", "intended_use")
    project = project_services.project_create(
        actor=lead,
        intended_users=spec["intended_users"],
        task_category=spec["task_category"],
        risk_tier=spec["risk_tier"],
        **{field: spec[field] for field in fields},
    )
    for username, *_, role in DEMO_USERS:
        if role != Role.PROJECT_LEAD:
            governance_services.membership_add(
                actor=lead, project=project, user=users[username], role=role
            )
    for label, base, adaptation in spec["models"]:
        evaluation_services.model_version_create(
            actor=lead,
            project=project,
            label=label,
            base_model=base,
            adaptation=adaptation,
            notes=f"Registered for the {project.name} evaluation.",
        )
    for label, purpose, rows in spec["datasets"]:
        evaluation_services.dataset_version_create(
            actor=users["steward"],
            project=project,
            label=label,
            purpose=purpose,
            row_count=rows,
            sha256=hashlib.sha256(f"{project.slug}/{label}".encode()).hexdigest(),
            description=f"{rows:,} de-identified records.",
        )

    gates = {gate.phase: gate for gate in project.gates.all()}
    through = spec.get("approved_through")
    for phase in Phase:
        if through is None or phase.number > Phase(through).number:
            break
        _settle_phase(project, phase, users)
        _evaluate(project, spec.get("evaluations", {}).get(phase), phase, users)
        gate_services.gate_submit(actor=lead, gate=gates[phase], note="All items settled.")
        _approve(gates[phase], users)
    if spec.get("submit"):
        _settle_phase(project, spec["submit"], users)
        _evaluate(project, spec.get("evaluations", {}).get(spec["submit"]), spec["submit"], users)
        gate_services.gate_submit(actor=lead, gate=gates[spec["submit"]])
    if spec.get("changes_requested"):
        phase = spec["changes_requested"]
        _settle_phase(project, phase, users)
        gate_services.gate_submit(actor=lead, gate=gates[phase])
        gate_services.signoff_create(
            actor=chair,
            gate=gates[phase],
            role=Role.COMMITTEE_CHAIR,
            meaning=SignatureMeaning.REJECT,
            password=DEMO_PASSWORD,
            reason="The data diversity evidence does not break down the training set by "
            "payer and language; add the table and resubmit.",
        )
    if spec.get("monitoring"):
        _monitor(project, spec["monitoring"], gates[Phase.MONITORING], users)
    _work_in_progress(project, users)
    record_model_facts(project, lead)


def _monitor(project: Project, spec: MonitoringSpec, gate: Gate, users: dict[str, User]) -> None:
    """After go-live: the plan, the weekly batches, and, when the spec says so, the monitoring
    gate reviewed and approved on the first weeks' evidence before the later weeks arrive."""
    plan = demo_monitoring.start_monitoring(project, spec, users)
    first = spec.approve_after_week or 0
    demo_monitoring.send_batches(project, plan, spec, users, range(1, first + 1))
    if first:
        _settle_phase(project, Phase.MONITORING, users)
        gate_services.gate_submit(
            actor=users["lead"],
            gate=gate,
            note=f"First periodic review: {first} weeks of monitoring within the criteria.",
        )
        _approve(gate, users)
    demo_monitoring.send_batches(project, plan, spec, users, range(first + 1, spec.weeks + 1))


def _evaluate(project: Project, plan: dict | None, phase: Phase, users: dict[str, User]) -> None:
    """The chair sets the gate's criteria, the data steward uploads records, the job scores
    them (in-process here, whatever the broker: the demo needs the results right away)."""
    if plan is None:
        return
    gate = project.gates.get(phase=phase)
    for target, bound, comparator, threshold in plan["criteria"]:
        metric, _, attribute = target.partition("(")
        gate_services.gate_criterion_create(
            actor=users["chair"],
            gate=gate,
            metric=metric,
            group_attribute=attribute.rstrip(")"),
            bound=bound,
            comparator=comparator,
            threshold=threshold,
            required=True,
        )
    run = evaluation_services.evaluation_run_start(
        actor=users["steward"],
        gate=gate,
        model_version=project.model_versions.get(label=plan["model"]),
        dataset_version=project.dataset_versions.get(label=plan["dataset"]),
        upload=ContentFile(plan["records"](), name=f"{project.slug}-{phase.value}.jsonl"),
        metrics=plan["metrics"],
        resamples=500,
    )
    run_evaluation.apply(args=[run.pk])


def _approve(gate: Gate, users: dict[str, User]) -> None:
    """Every role the sign-off policy requires signs an approval, with re-authentication."""
    by_role = {role: username for username, *_, role in DEMO_USERS}
    for role in readiness_of(gate).required_roles:
        gate_services.signoff_create(
            actor=users[by_role[role]],
            gate=gate,
            role=role,
            meaning=SignatureMeaning.APPROVE,
            password=DEMO_PASSWORD,
            reason="Reviewed at the governance committee meeting.",
        )


def _settle_phase(project: Project, phase: Phase, users: dict[str, User]) -> None:
    lead = users["lead"]
    for index, item in enumerate(project.checklist_items.filter(phase=phase)):
        if not item.required and index % 2:
            checklist_services.checklist_item_update(
                actor=lead,
                item=item,
                status=ItemStatus.NOT_APPLICABLE,
                justification="Out of scope for the pilot; revisited at the annual review.",
            )
            continue
        if item.evidence_required:
            if index % 3 == 0:
                body = f"{item.title}\n\n{project.name}: evidence summary for the committee.\n"
                checklist_services.evidence_add_file(
                    actor=lead,
                    item=item,
                    upload=ContentFile(body.encode(), name=f"{item.key.split('.')[1]}.txt"),
                    title=f"{item.title} — summary",
                )
            else:
                checklist_services.evidence_add_note(
                    actor=lead,
                    item=item,
                    note=f"Reviewed with the {item.get_owner_role_display().lower()}; "
                    "see the project share for the signed document.",
                )
        checklist_services.checklist_item_update(actor=lead, item=item, status=ItemStatus.DONE)


def _work_in_progress(project: Project, users: dict[str, User]) -> None:
    """Leave the open phase visibly in progress: assignments, a status and a discussion."""
    gate = project.gates.filter(state=Gate.State.OPEN).first()
    if gate is None:
        return
    owners = {role: username for username, *_, role in DEMO_USERS}
    for item in gate.items.order_by("position")[:3]:
        assignee = users[owners[item.owner_role]]
        checklist_services.checklist_item_assign(actor=users["lead"], item=item, assignee=assignee)
        checklist_services.checklist_item_update(
            actor=assignee, item=item, status=ItemStatus.IN_PROGRESS
        )
        checklist_services.comment_add(
            actor=users["member"],
            item=item,
            body="Could we see how this was checked for patients whose preferred language "
            "is not English?",
        )
