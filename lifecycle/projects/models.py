"""What a project holds beyond its registration: the model facts of the compliance exports."""

from django.conf import settings
from django.db import models


class ModelFacts(models.Model):
    """The facts the CHAI model card and the HTI-1 source attributes need (declared in
    `lifecycle.projects.facts.FACTS`), one set per project; a blank fact is missing."""

    project = models.OneToOneField(
        "governance.Project", on_delete=models.CASCADE, related_name="model_facts"
    )
    facts = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = "model facts"
        verbose_name_plural = "model facts"

    def __str__(self) -> str:
        return f"Model facts of {self.project}"
