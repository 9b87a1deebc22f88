"""Factories and personas: a project with one member per role, plus an outsider."""

import hashlib
from dataclasses import dataclass, field

import factory
from django.contrib.auth.models import Permission

from governance import services as governance_services
from governance.models import Project, RiskTier, TaskCategory, User
from governance.roles import Role
from lifecycle.checklists import services as checklist_services
from lifecycle.evaluations import services as evaluation_services
from lifecycle.gates import services as gate_services
from lifecycle.projects import services as project_services

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def project_creator() -> User:
    user = UserFactory(username=f"creator-{User.objects.count()}")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="governance", codename="add_project")
    )
    return User.objects.get(pk=user.pk)  # fresh instance: no stale permission cache


_counter = iter(range(1_000_000))


def make_project(creator: User | None = None, **overrides) -> Project:
    n = next(_counter)
    fields = {
        "name": f"Discharge summary assistant {n}",
        "slug": f"discharge-assistant-{n}",
        "clinical_setting": "Inpatient medicine",
        "intended_use": "Draft discharge summaries for physician review.",
        "intended_users": "Hospitalists",
        "task_category": TaskCategory.CLINICAL_DOCUMENTATION,
        "risk_tier": RiskTier.MEDIUM,
    }
    fields.update(overrides)
    return project_services.project_create(actor=creator or project_creator(), **fields)


@dataclass
class Team:
    """A project whose creator is its lead, one more user per role, and an outsider."""

    project: Project
    creator: User
    members: dict[str, User] = field(default_factory=dict)
    outsider: User | None = None

    def __getitem__(self, role: str) -> User:
        return self.members[role]


def make_team(**project_fields) -> Team:
    creator = project_creator()
    project = make_project(creator, **project_fields)
    team = Team(
        project=project, creator=creator, outsider=UserFactory(username=f"outsider-{project.pk}")
    )
    for role in Role:
        user = UserFactory(username=f"{role.value}-{project.pk}")
        governance_services.membership_add(actor=creator, project=project, user=user, role=role)
        team.members[role] = User.objects.get(pk=user.pk)
    return team


def settle(team: Team, phase) -> None:
    """Mark every item of the phase done, with evidence where required (by the lead)."""

    for item in team.project.checklist_items.filter(phase=phase):
        if item.evidence_required:
            checklist_services.evidence_add_note(actor=team.creator, item=item, note="Evidence.")
        checklist_services.checklist_item_update(actor=team.creator, item=item, status="done")


def sign(team: Team, gate, role: str, meaning: str = "approve", reason: str = "", **kwargs):
    """The persona holding `role` signs `gate` with re-authentication."""
    return gate_services.signoff_create(
        actor=team[role],
        gate=gate,
        role=role,
        meaning=meaning,
        reason=reason or ("Not acceptable yet." if meaning == "reject" else ""),
        password=PASSWORD,
        **kwargs,
    )


def approve(team: Team, gate) -> None:
    """Every role the sign-off policy requires approves the gate."""
    from lifecycle.gates.readiness import readiness_of

    for role in readiness_of(gate).required_roles:
        sign(team, gate, role)


def pass_gate(team: Team, phase) -> None:
    """Settle, submit and approve the gate of `phase`."""

    settle(team, phase)
    gate = team.project.gates.get(phase=phase)
    gate_services.gate_submit(actor=team.creator, gate=gate)
    approve(team, team.project.gates.get(phase=phase))


def rows_of(records: bytes) -> int:
    """The number of records in a JSON Lines file (its non-blank lines): the row count of the
    dataset version an upload of it must name."""
    return sum(1 for line in records.splitlines() if line.strip())


def make_versions(
    team: Team, model: str = "v1", dataset: str = "d1", purpose: str = "test", rows: int = 400
):
    """A model version and the dataset version it is evaluated on, registered by the lead."""

    model_version = evaluation_services.model_version_create(
        actor=team.creator, project=team.project, label=model, base_model="b", adaptation="rag"
    )
    dataset_version = evaluation_services.dataset_version_create(
        actor=team.creator,
        project=team.project,
        label=dataset,
        purpose=purpose,
        row_count=rows,
        sha256=hashlib.sha256(dataset.encode()).hexdigest(),
    )
    return model_version, dataset_version
