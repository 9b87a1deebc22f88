# Evidence rules (issue 12): runs numbered per project, declared subsets, the runs a gate is
# judged on, and minimum evidence per criterion.
#
# Existing gates in review or approved were judged on their latest succeeded run: that run
# becomes their designated evidence, so every verdict, manifest and signature stays exactly as
# it was.

from django.db import migrations, models

LATEST_FIRST = ("-finished_at", "-id")


def number_runs_and_designate(apps, schema_editor):
    EvaluationRun = apps.get_model("lifecycle", "EvaluationRun")
    Gate = apps.get_model("lifecycle", "Gate")
    counters: dict[int, int] = {}
    for run in EvaluationRun.objects.order_by("project_id", "created_at", "id").only(
        "pk", "project_id"
    ):
        counters[run.project_id] = counters.get(run.project_id, 0) + 1
        EvaluationRun.objects.filter(pk=run.pk).update(number=counters[run.project_id])
    for gate in Gate.objects.filter(state__in=["in_review", "approved"]):
        latest = (
            EvaluationRun.objects.filter(gate=gate, status="succeeded")
            .order_by(*LATEST_FIRST)
            .first()
        )
        if latest is not None:
            gate.evidence_runs.add(latest)


class Migration(migrations.Migration):
    dependencies = [
        ("lifecycle", "0005_evaluationrun_requeued_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="evaluationrun",
            name="number",
            field=models.PositiveIntegerField(
                null=True,
                help_text="The run's number within its project: run 1, 2, … in upload order.",
            ),
        ),
        migrations.AddField(
            model_name="evaluationrun",
            name="subset_reason",
            field=models.TextField(
                blank=True,
                help_text="Set when the upload deliberately covers only part of its dataset "
                "version, and why. A subset run is shown but never satisfies a required "
                "criterion.",
            ),
        ),
        migrations.AddField(
            model_name="gate",
            name="evidence_runs",
            field=models.ManyToManyField(
                blank=True,
                help_text="The runs the gate is judged on, designated by the project lead at "
                "submission (docs/evaluations.md). Empty before submission: the gate is "
                "previewed on its latest run that covers its dataset.",
                related_name="evidence_for",
                to="lifecycle.evaluationrun",
            ),
        ),
        migrations.AddField(
            model_name="gatecriterion",
            name="min_group_records",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="A subgroup with fewer records than this: insufficient evidence, "
                "never pass.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="gatecriterion",
            name="min_records",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Fewer records than this overall: insufficient evidence, never pass.",
                null=True,
            ),
        ),
        migrations.RunPython(number_runs_and_designate, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="evaluationrun",
            name="number",
            field=models.PositiveIntegerField(
                help_text="The run's number within its project: run 1, 2, … in upload order."
            ),
        ),
        migrations.AddConstraint(
            model_name="evaluationrun",
            constraint=models.UniqueConstraint(
                fields=("project", "number"), name="evaluation_run_number"
            ),
        ),
    ]
