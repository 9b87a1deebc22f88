"""The trends of a monitoring plan read from evaluation results: cohorts, order, the batches
that count, which criteria apply to which trend, and a fixed number of queries."""

from datetime import date, timedelta

import pytest

from lifecycle.evaluations.models import EvaluationResult, EvaluationRun
from lifecycle.gates.models import GateCriterion
from lifecycle.monitoring.models import MonitoringBatch, MonitoringPlan
from lifecycle.monitoring.rules import Z95, Observation
from lifecycle.monitoring.trends import plan_trends
from lifecycle.phases import Phase
from tests.factories import make_team, make_versions

pytestmark = pytest.mark.django_db

START = date(2026, 9, 7)


class Deployed:
    """A project with a baseline run on its development gate, a monitoring plan and helpers
    to add monitoring batches with their results (stored directly, as the job would)."""

    def __init__(self, *, metrics=("auroc", "demographic_parity_difference"), cohorts=()):
        self.team = make_team()
        self.project = self.team.project
        self.model, self.dataset = make_versions(self.team)
        self.runs = 0
        self.baseline = self.run(Phase.DEVELOPMENT)
        # AUROC 0.85, standard error 0.01 on 750 records: a batch of 250 is judged with the
        # standard error of the difference 0.01 x sqrt(1 + 750 / 250) = 0.02.
        self.results(
            self.baseline,
            [
                ("auroc", "overall", "", "", 0.85, 750, 0.01),
                ("auroc", "group", "age_band", "18-64", 0.86, 700, 0.012),
                ("auroc", "group", "age_band", "65+", 0.83, 300, 0.018),
                ("auroc", "group", "sex", "F", 0.85, 500, 0.014),
                ("auroc", "group", "sex", "M", 0.85, 500, 0.014),
                ("demographic_parity_difference", "fairness", "age_band", "", 0.05, 1000, 0.01),
                ("demographic_parity_difference", "fairness", "sex", "", 0.02, 1000, 0.01),
                ("recall", "overall", "", "", 0.8, 1000, 0.01),  # not watched
            ],
        )
        self.plan = MonitoringPlan.objects.create(
            project=self.project,
            baseline_run=self.baseline,
            metrics=list(metrics),
            cohorts=list(cohorts),
            starts_on=START,
            created_by=self.team.creator,
            updated_by=self.team.creator,
        )
        self.batches = 0

    def run(self, phase, status="succeeded"):
        self.runs += 1
        return EvaluationRun.objects.create(
            project=self.project,
            number=self.runs,
            gate=self.project.gates.get(phase=phase),
            model_version=self.model,
            dataset_version=self.dataset,
            file="evaluations/r.jsonl",
            original_name="r.jsonl",
            size=1,
            sha256="d" * 64,
            status=status,
            n_records=1000,
            requested_by=self.team.creator,
        )

    def results(self, run, rows):
        EvaluationResult.objects.bulk_create(
            EvaluationResult(
                run=run,
                metric=metric,
                scope=scope,
                group_attribute=attribute,
                group_value=value,
                value=x,
                ci_low=None if se is None else x - se * Z95,
                ci_high=None if se is None else x + se * Z95,
                n=n,
            )
            for metric, scope, attribute, value, x, n, se in rows
        )

    def batch(self, auroc=0.85, *, week=None, status="succeeded", rows=(), n=250):
        """A weekly batch (the next week unless `week` says which) with overall AUROC."""
        self.batches += 1
        week = self.batches - 1 if week is None else week
        run = self.run(Phase.MONITORING, status)
        self.results(run, [("auroc", "overall", "", "", auroc, n, 0.02), *rows])
        return MonitoringBatch.objects.create(
            project=self.project,
            number=self.batches,
            period_start=START + timedelta(weeks=week),
            period_end=START + timedelta(weeks=week, days=6),
            run=run,
            submitted_by=self.team.creator,
        )

    def criterion(self, metric, comparator, threshold, *, phase=Phase.MONITORING, **fields):
        return GateCriterion.objects.create(
            gate=self.project.gates.get(phase=phase),
            metric=metric,
            comparator=comparator,
            threshold=threshold,
            created_by=self.team.creator,
            **fields,
        )


def by_label(trends):
    return {t.label: t for t in trends}


def test_it_lists_every_watched_cohort_overall_first_then_fairness_then_subgroups():
    d = Deployed()
    d.batch(rows=[("auroc", "group", "insurance", "<none>", 0.8, 40, 0.05)])
    labels = [t.label for t in plan_trends(d.plan)]
    assert labels == [
        "auroc",
        "demographic_parity_difference (age_band)",
        "demographic_parity_difference (sex)",
        "auroc — age_band = 18-64",
        "auroc — age_band = 65+",
        # A subgroup only the batches carry is watched too (no baseline value for it).
        "auroc — insurance = <none>",
        "auroc — sex = F",
        "auroc — sex = M",
    ]
    insurance = by_label(plan_trends(d.plan))["auroc — insurance = <none>"]
    assert insurance.baseline == Observation(None, None, None, None)
    assert [p.observation.value for p in insurance.points] == [0.8]


def test_the_plans_cohorts_limit_subgroups_and_fairness_but_never_the_overall_trend():
    d = Deployed(cohorts=["sex"])
    labels = [t.label for t in plan_trends(d.plan)]
    assert labels == [
        "auroc",
        "demographic_parity_difference (sex)",
        "auroc — sex = F",
        "auroc — sex = M",
    ]


def test_the_series_is_the_succeeded_batches_in_period_order_up_to_through():
    d = Deployed(metrics=["auroc"], cohorts=["sex"])
    first = d.batch(0.84, week=0)
    third = d.batch(0.80, week=2)
    d.batch(0.99, week=3, status="failed")
    d.batch(0.99, week=4, status="queued")
    # Uploaded late: batch 5 covers week 2, before batch 2.
    late = d.batch(0.82, week=1)
    (overall, *_) = plan_trends(d.plan)
    assert [(p.batch, p.label) for p in overall.points] == [
        (first.number, "2026-09-07"),
        (late.number, "2026-09-14"),
        (third.number, "2026-09-21"),
    ]
    assert [p.observation.value for p in overall.points] == [0.84, 0.82, 0.80]
    assert overall.baseline.value == 0.85 and overall.baseline.n == 750
    # Standard error 0.01 on 750 records: 0.02 for a batch of 250, limits 0.85 ± 0.06.
    assert overall.points[0].se == pytest.approx(0.02)
    assert (overall.points[0].lower, overall.points[0].upper) == (
        pytest.approx(0.79),
        pytest.approx(0.91),
    )
    (through_late, *_) = plan_trends(d.plan, through=late)
    assert [p.batch for p in through_late.points] == [first.number, late.number]


def test_a_batch_without_a_result_for_a_cohort_is_a_point_without_a_value():
    d = Deployed(metrics=["auroc"], cohorts=["sex"])
    d.batch(rows=[("auroc", "group", "sex", "F", 0.85, 120, 0.03)])
    d.batch()  # no subgroup results this week
    female = by_label(plan_trends(d.plan))["auroc — sex = F"]
    assert [p.observation.value for p in female.points] == [0.85, None]
    assert female.points[1].signals == () and female.points[1].se is None


def test_a_drift_in_one_cohort_signals_at_the_batch_the_cusum_exceeds_h():
    d = Deployed(metrics=["auroc"], cohorts=["age_band"])
    assert (d.plan.cusum_k, d.plan.cusum_h) == (0.5, 5.0)  # the plan's defaults
    # 65+: baseline 0.83, standard error 0.018 on 300 records, so a batch of 100 has the
    # standard error 0.018 x sqrt(1 + 300 / 100) = 0.036 and z = (x - 0.83) / 0.036.
    for week, value in enumerate([0.83, 0.83, 0.7796, 0.7796, 0.7796, 0.7796, 0.7796]):
        d.batch(
            0.85,
            week=week,
            rows=[
                ("auroc", "group", "age_band", "65+", value, 100, 0.036),
                ("auroc", "group", "age_band", "18-64", 0.86, 700, 0.012),
            ],
        )
    trends = by_label(plan_trends(d.plan))
    older = trends["auroc — age_band = 65+"]
    assert older.points[0].se == pytest.approx(0.036)
    # z = -1.4 from the third batch on: S- = 0.9, 1.8, 2.7, 3.6, 4.5, not beyond h = 5 yet ...
    assert [round(p.cusum_low, 6) for p in older.points] == [0, 0, 0.9, 1.8, 2.7, 3.6, 4.5]
    assert [p.signals for p in older.points] == [()] * 7
    d.batch(
        0.85,
        week=7,
        rows=[("auroc", "group", "age_band", "65+", 0.7796, 100, 0.036)],
    )
    # ... until the eighth batch: S- = 5.4.
    older = by_label(plan_trends(d.plan))["auroc — age_band = 65+"]
    assert round(older.points[-1].cusum_low, 6) == 5.4
    assert older.latest_signals == ("cusum_down",)
    assert by_label(plan_trends(d.plan))["auroc"].latest_signals == ()
    assert by_label(plan_trends(d.plan))["auroc — age_band = 18-64"].latest_signals == ()


def test_criteria_apply_to_the_trends_they_judge():
    d = Deployed()
    overall = d.criterion("auroc", ">=", 0.8)
    ages = d.criterion("auroc", ">=", 0.75, scope="each_group", group_attribute="age_band")
    every_group = d.criterion("auroc", ">=", 0.7, scope="worst_group", required=False)
    fairness_sex = d.criterion("demographic_parity_difference", "<=", 0.1, group_attribute="sex")
    fairness_all = d.criterion("demographic_parity_difference", "<=", 0.2)
    d.criterion("auroc", ">=", 0.9, phase=Phase.DEVELOPMENT)  # another gate's
    d.criterion("recall", ">=", 0.9)  # a metric the plan does not watch
    trends = by_label(plan_trends(d.plan))

    def expressions(label):
        return [c.expression for c in trends[label].criteria]

    assert expressions("auroc") == [overall.expression]
    assert expressions("auroc — age_band = 65+") == [ages.expression, every_group.expression]
    assert expressions("auroc — sex = F") == [every_group.expression]
    assert expressions("demographic_parity_difference (sex)") == [
        fairness_sex.expression,
        fairness_all.expression,
    ]
    assert expressions("demographic_parity_difference (age_band)") == [fairness_all.expression]
    assert trends["auroc — sex = F"].criteria[0].required is False
    assert trends["auroc"].criteria[0].threshold == 0.8


def test_a_batch_wholly_below_a_threshold_signals_it_by_its_expression():
    d = Deployed(metrics=["auroc"], cohorts=["sex"])
    criterion = d.criterion("auroc", ">=", 0.8)
    d.batch(0.82)  # 0.82 ± 0.039: reaches above 0.8
    d.batch(0.74)  # 0.74 ± 0.039: wholly below
    # z = -1.5 then -5.5 (standard error 0.02): S- = 1, then 6, beyond h = 5.
    (overall, *_) = plan_trends(d.plan)
    assert [p.signals for p in overall.points] == [
        (),
        ("cusum_down", f"threshold:{criterion.expression}"),
    ]
    assert overall.latest_signals[-1] == "threshold:auroc >= 0.8"


def test_no_batches_yet_gives_the_baselines_trends_without_points():
    d = Deployed(metrics=["auroc"], cohorts=["sex"])
    trends = plan_trends(d.plan)
    assert [t.label for t in trends] == ["auroc", "auroc — sex = F", "auroc — sex = M"]
    assert all(t.points == [] and t.latest_signals == () for t in trends)


def test_the_number_of_queries_does_not_grow_with_batches_or_cohorts(
    django_assert_num_queries,
):
    d = Deployed()
    d.criterion("auroc", ">=", 0.8)
    d.batch()
    plan = MonitoringPlan.objects.get(pk=d.plan.pk)
    with django_assert_num_queries(4):  # baseline results, batches, their results, criteria
        few = plan_trends(plan)
    for week in range(1, 12):
        d.batch(rows=[("auroc", "group", "ward", f"ward {week}", 0.8, 50, 0.05)])
    through = MonitoringBatch.objects.get(project=d.project, number=12)
    with django_assert_num_queries(4):
        many = plan_trends(plan, through=through)
    assert len(many) == len(few) + 11
    assert all(len(t.points) == 12 for t in many)
