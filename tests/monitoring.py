"""A deployed project with a monitoring plan, and monitoring batches, for the monitoring tests:
everything through the services, the evaluation and analysis jobs run in-process."""

import datetime
import json

import numpy as np
from django.core.files.base import ContentFile
from django.utils import timezone

from lifecycle.evaluations import services as evaluation_services
from lifecycle.evaluations.tasks import run_evaluation
from lifecycle.gates import services as gate_services
from lifecycle.monitoring import services as monitoring_services
from lifecycle.monitoring.models import MonitoringBatch, MonitoringPlan
from lifecycle.monitoring.tasks import analyse_monitoring_batch
from lifecycle.phases import Phase
from tests.factories import Team, approve, make_versions, pass_gate, settle

METRICS = ["auroc", "recall", "precision", "demographic_parity_difference"]
BASELINE_ROWS = 400


def classifier_records(
    *, seed: int, n: int, weak_group: str | None = None, weakness: float = 0.0
) -> bytes:
    """Binary labels, scores and predictions with sex and age band; the `weak_group` age band
    loses `weakness` of the model's separation (a cohort the model serves worse)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        band = str(rng.choice(["18-39", "40-64", "65+"]))
        label = int(rng.random() < 0.3)
        separation = 1.6 - (weakness if band == weak_group else 0.0)
        logit = rng.normal(separation if label else -separation, 1.0)
        score = float(1 / (1 + np.exp(-logit)))
        record = {
            "id": f"r{i}",
            "label": label,
            "score": round(score, 4),
            "prediction": int(score >= 0.5),
            "latency_ms": round(float(rng.lognormal(6.0, 0.3)), 1),
            "groups": {"sex": str(rng.choice(["F", "M"])), "age_band": band},
        }
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


def deploy(team: Team, *, criteria: list[dict] | None = None) -> MonitoringPlan:
    """Take the team's project through deployment with an approved development run as the
    baseline, set the monitoring gate's criteria and a weekly plan starting twelve weeks ago.
    The jobs are run here explicitly (`apply`), whatever the broker."""
    project = team.project
    pass_gate(team, Phase.PLANNING)
    pass_gate(team, Phase.DATA)
    model, dataset = make_versions(team, purpose="validation", rows=BASELINE_ROWS)
    development = project.gates.get(phase=Phase.DEVELOPMENT)
    run = evaluation_services.evaluation_run_start(
        actor=team.creator,
        gate=development,
        model_version=model,
        dataset_version=dataset,
        upload=ContentFile(classifier_records(seed=1, n=BASELINE_ROWS), name="baseline.jsonl"),
        metrics=METRICS,
        resamples=200,
    )
    run_evaluation.apply(args=[run.pk])
    run.refresh_from_db()
    settle(team, Phase.DEVELOPMENT)
    gate_services.gate_submit(actor=team.creator, gate=development, evidence_runs=[run])
    approve(team, project.gates.get(phase=Phase.DEVELOPMENT))
    pass_gate(team, Phase.DEPLOYMENT)
    monitoring = project.gates.get(phase=Phase.MONITORING)
    chair = team["committee_chair"]
    for criterion in criteria or [
        {"metric": "auroc", "scope": "each_group", "group_attribute": "age_band",
         "comparator": ">=", "threshold": 0.75},
    ]:  # fmt: skip
        gate_services.gate_criterion_create(
            actor=chair, gate=monitoring, required=True, **criterion
        )
    today = timezone.localdate()
    return monitoring_services.monitoring_plan_save(
        actor=chair,
        project=project,
        baseline_run=run,
        metrics=METRICS,
        cohorts=["age_band", "sex"],
        starts_on=today - datetime.timedelta(days=today.weekday() + 7 * 12),
        resamples=200,
    )


def send_batch(
    team: Team,
    plan: MonitoringPlan,
    week: int,
    records: bytes,
    *,
    analyse: bool = True,
) -> MonitoringBatch:
    """Send week `week` (0-based) of the plan as a batch by the data steward, evaluate it and
    (unless `analyse` is false) analyse it, in-process."""
    batch = monitoring_services.monitoring_batch_submit(
        actor=team["data_steward"],
        project=team.project,
        upload=ContentFile(records, name=f"week-{week}.jsonl"),
        period_start=plan.starts_on + datetime.timedelta(days=7 * week),
    )
    run_evaluation.apply(args=[batch.run_id])
    if analyse:
        analyse_monitoring_batch.apply(args=[batch.run_id])
    batch.refresh_from_db()
    return batch
