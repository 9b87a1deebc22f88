"""The five lifecycle phases of Table 1, in order.

A plain enumeration (not a table): the phases and their order are the product's definition of
the lifecycle, so they change only through code review, never through data entry.
"""

from django.db import models


class Phase(models.TextChoices):
    PLANNING = "planning", "Project definition and planning"
    DATA = "data", "Data collection and curation"
    DEVELOPMENT = "development", "Model development and validation"
    DEPLOYMENT = "deployment", "Deployment (pilot)"
    MONITORING = "monitoring", "Monitoring and maintenance"

    @classmethod
    def ordered(cls) -> list["Phase"]:
        return list(cls)

    @property
    def number(self) -> int:
        return list(Phase).index(self) + 1

    @property
    def next(self) -> "Phase | None":
        phases = list(Phase)
        index = phases.index(self)
        return phases[index + 1] if index + 1 < len(phases) else None

    @property
    def previous(self) -> "Phase | None":
        phases = list(Phase)
        index = phases.index(self)
        return phases[index - 1] if index > 0 else None

    @property
    def short_label(self) -> str:
        return {
            "planning": "Planning",
            "data": "Data",
            "development": "Development & validation",
            "deployment": "Deployment",
            "monitoring": "Monitoring",
        }[self.value]
