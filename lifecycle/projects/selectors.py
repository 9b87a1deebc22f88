"""Reads about projects: the model facts of a project the caller may already see.

The project itself comes restricted to the user (`governance.selectors.project_get_for_user`,
or the API's `visible_projects`); everyone who may see a project may read its facts.
"""

from dataclasses import dataclass, field
from datetime import datetime

from governance.models import Project, User
from lifecycle.projects.facts import FACTS, Fact, missing_facts
from lifecycle.projects.models import ModelFacts


@dataclass(frozen=True)
class ModelFactsState:
    """Every declared fact's value ("" when blank), what each export still lacks, and who
    changed the facts last (None when they were never set)."""

    values: dict[str, str]
    missing_chai: list[Fact] = field(default_factory=list)
    missing_hti1: list[Fact] = field(default_factory=list)
    updated_at: datetime | None = None
    updated_by: User | None = None

    @property
    def missing_keys(self) -> dict[str, list[str]]:
        return {
            "chai": [fact.key for fact in self.missing_chai],
            "hti1": [fact.key for fact in self.missing_hti1],
        }


def fact_values(row: ModelFacts | None) -> dict[str, str]:
    """Every declared fact, in declaration order, with its stored text ("" when blank)."""
    stored = row.facts if row is not None and isinstance(row.facts, dict) else {}
    return {fact.key: str(stored.get(fact.key) or "") for fact in FACTS}


def model_facts_state(project: Project) -> ModelFactsState:
    """The project's model facts as the page, the API and the exports show them."""
    row = ModelFacts.objects.filter(project=project).select_related("updated_by").first()
    values = fact_values(row)
    return ModelFactsState(
        values=values,
        missing_chai=missing_facts(values, "chai"),
        missing_hti1=missing_facts(values, "hti1"),
        updated_at=row.updated_at if row is not None else None,
        updated_by=row.updated_by if row is not None else None,
    )
