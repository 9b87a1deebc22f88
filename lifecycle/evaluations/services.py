"""Writes about evaluations: model and dataset versions, uploaded runs, and the background
job's claim, heartbeat, results, failure, release and requeue.

Uploads take the acting user; the job's steps are system actions recorded as such. Attaching
results changes what gate signatures cover, so it goes through `signoffs`.
"""

import datetime
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from audits.models import Action
from audits.trail import record, snapshot
from governance.models import Project, User
from governance.permissions import require_project_perm
from lifecycle.evaluations.models import (
    DatasetVersion,
    EvaluationResult,
    EvaluationRun,
    ModelVersion,
    ResultScope,
    RunStatus,
)
from lifecycle.gates import signoffs
from lifecycle.gates.models import Gate, GateCriterion
from lifecycle.gates.readiness import run_verdicts
from lifecycle.gates.transitions import lock_gate
from lifecycle.metrics import (
    DEFAULT_RESAMPLES,
    FAIRNESS_METRICS,
    MAX_RESAMPLES,
    METRICS,
    TASK_PRESETS,
    Limits,
    RecordError,
    parse_records,
)
from lifecycle.metrics.records import Dataset
from lifecycle.metrics.registry import resolve_metrics
from lifecycle.phases import Phase
from lifecycle.uploads import hash_upload


def _create_unique(
    actor: User, instance: ModelVersion | DatasetVersion, action: str, fields: tuple[str, ...]
) -> None:
    instance.full_clean()
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise ValidationError(
            {"label": f"The label “{instance.label}” is already used in this project."}
        ) from None
    record(
        actor=actor,
        action=action,
        project=instance.project,
        target=instance,
        after=snapshot(instance, fields),
    )


@transaction.atomic
def model_version_create(
    *,
    actor: User,
    project: Project,
    label: str,
    base_model: str,
    adaptation: str,
    notes: str = "",
) -> ModelVersion:
    """Register a model version (base model plus adaptation approach)."""
    require_project_perm(actor, "manage_versions", project)
    version = ModelVersion(
        project=project,
        label=label.strip(),
        base_model=base_model.strip(),
        adaptation=adaptation,
        notes=notes,
        created_by=actor,
    )
    _create_unique(
        actor,
        version,
        Action.MODEL_VERSION_CREATE,
        ("label", "base_model", "adaptation", "notes"),
    )
    return version


@transaction.atomic
def dataset_version_create(
    *,
    actor: User,
    project: Project,
    label: str,
    purpose: str,
    row_count: int,
    sha256: str,
    description: str = "",
) -> DatasetVersion:
    """Register a dataset version with its row count and content SHA-256."""
    require_project_perm(actor, "manage_versions", project)
    version = DatasetVersion(
        project=project,
        label=label.strip(),
        purpose=purpose,
        row_count=row_count,
        sha256=sha256.strip().lower(),
        description=description,
        created_by=actor,
    )
    _create_unique(
        actor,
        version,
        Action.DATASET_VERSION_CREATE,
        ("label", "purpose", "row_count", "sha256", "description"),
    )
    return version


@dataclass(frozen=True)
class EvaluationUpload:
    """An evaluation upload that passed every check needing no lock (`evaluation_upload_check`),
    with the file's clean name, size and SHA-256 and the task resolved."""

    gate: Gate
    model_version: ModelVersion
    dataset_version: DatasetVersion
    upload: UploadedFile
    name: str
    size: int
    sha256: str
    task: str
    metrics: list[str]
    seed: int
    resamples: int
    subset_reason: str = ""
    n_records: int | None = None  # None when the records were not read (`check_records`)
    # What the gate's criteria need that this file lacks: shown before anything is stored.
    warnings: tuple[str, ...] = ()


def coverage_problem(n_records: int, dataset_version: DatasetVersion, subset_reason: str) -> str:
    """Why `n_records` records cannot stand for `dataset_version` (empty when they can): a run
    covers its whole dataset version, or is declared a subset with a reason."""
    rows = dataset_version.row_count
    label = f"dataset version “{dataset_version.label}”"
    if subset_reason:
        if n_records >= rows:
            return (
                f"The file has {n_records:,} records and {label} has {rows:,} rows: it is "
                "not a subset. Remove the subset reason, or name the dataset version the "
                "records come from."
            )
        return ""
    if n_records != rows:
        return (
            f"The file has {n_records:,} records but {label} has {rows:,} rows: an evaluation "
            "must cover the dataset version it names. Upload the records for every row, name "
            "the dataset version these records are, or declare a deliberate subset with a "
            "reason (a subset is shown but never satisfies a required criterion)."
        )
    return ""


def _refuse_locked(gate: Gate) -> None:
    if gate.state == Gate.State.LOCKED:
        raise ValidationError(
            {"gate": f"The {gate.phase_enum.label} gate is locked: evaluate an open phase."}
        )


def evaluation_upload_check(
    *,
    user: User,
    gate: Gate,
    model_version: ModelVersion,
    dataset_version: DatasetVersion,
    upload: UploadedFile,
    task: str = "",
    metrics: list[str] | None = None,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    check_records: bool = True,
    subset_reason: str = "",
) -> EvaluationUpload:
    """Check that `user` may upload this evaluation and that it is sound, writing and recording
    nothing: permission, versions, task, metrics, resamples, size, and with `check_records` the
    whole file against the record contract (a file that breaks it is refused with its
    line-precise message), its coverage of the dataset version (`coverage_problem`), and its
    fit to the gate's criteria (`warnings`: metrics, group attributes or records they need
    that the file lacks).

    Reading a large file takes seconds, and on SQLite any transaction holds the whole database's
    write lock, so this runs outside every transaction: `evaluation_run_start` calls it first,
    and a caller that must open its own transaction around the start calls it before that and
    passes the result on.
    """
    project = gate.project
    require_project_perm(user, "upload_evaluation", project)
    _refuse_locked(gate)
    if model_version.project_id != project.pk:
        raise ValidationError({"model_version": f"“{model_version}” is not of this project."})
    if dataset_version.project_id != project.pk:
        raise ValidationError({"dataset_version": f"“{dataset_version}” is not of this project."})
    task = task or project.task_category
    if task not in TASK_PRESETS:
        raise ValidationError({"task": f"“{task}” is not a task category."})
    unknown = [m for m in metrics or [] if m not in METRICS]
    if unknown:
        raise ValidationError({"metrics": f"Unknown metric(s): {', '.join(unknown)}."})
    if not 1 <= resamples <= MAX_RESAMPLES:
        raise ValidationError(
            {"resamples": f"Use between 1 and {MAX_RESAMPLES:,} bootstrap resamples."}
        )
    # Django's multipart parser drops control characters from names; other callers' names are
    # stored and shown, and PostgreSQL text cannot hold a NUL.
    if "\x00" in (upload.name or ""):
        raise ValidationError({"file": "The file name contains a NUL character."})
    name, size, digest = hash_upload(
        upload, "file", settings.EVALUATION_MAX_BYTES, "EVALUATION_MAX_BYTES"
    )
    subset_reason = subset_reason.strip()
    if "\x00" in subset_reason:
        raise ValidationError({"subset_reason": "The reason contains a NUL character."})
    n_records: int | None = None
    warnings: tuple[str, ...] = ()
    if check_records:
        dataset = read_records(upload, name, task, metrics)
        n_records = dataset.n
        problem = coverage_problem(dataset.n, dataset_version, subset_reason)
        if problem:
            raise ValidationError({"file": ValidationError(problem, code="coverage")})
        warnings = tuple(fit_warnings(gate, dataset, task, metrics))
    return EvaluationUpload(
        gate=gate,
        model_version=model_version,
        dataset_version=dataset_version,
        upload=upload,
        name=name,
        size=size,
        sha256=digest,
        task=task,
        metrics=list(metrics or []),
        seed=seed,
        resamples=resamples,
        subset_reason=subset_reason,
        n_records=n_records,
        warnings=warnings,
    )


def evaluation_run_start(
    *,
    actor: User,
    gate: Gate,
    model_version: ModelVersion,
    dataset_version: DatasetVersion,
    upload: UploadedFile,
    task: str = "",
    metrics: list[str] | None = None,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    check_records: bool = True,
    checked: EvaluationUpload | None = None,
    subset_reason: str = "",
) -> EvaluationRun:
    """Store an evaluation file for a gate and queue the job that scores it (after commit).

    The upload is checked first, outside any transaction (`evaluation_upload_check`: with
    `check_records` the whole file against the record contract, a refused file storing
    nothing), unless `checked` is that check's result for the same upload. Only then is the
    gate locked, briefly: its state and the actor's permission are checked again (either may
    have changed while the file was read) and the run is saved with its audit event. The job
    validates the file again in any case: a run whose file fails there is marked failed.
    """
    if checked is None:
        checked = evaluation_upload_check(
            user=actor,
            gate=gate,
            model_version=model_version,
            dataset_version=dataset_version,
            upload=upload,
            task=task,
            metrics=metrics,
            seed=seed,
            resamples=resamples,
            check_records=check_records,
            subset_reason=subset_reason,
        )
    elif checked.upload is not upload or checked.gate.pk != gate.pk:
        raise ValueError("`checked` is the check of another upload")
    run = EvaluationRun(
        project=checked.gate.project,
        gate=checked.gate,
        model_version=checked.model_version,
        dataset_version=checked.dataset_version,
        original_name=checked.name[:255],
        size=checked.size,
        sha256=checked.sha256,
        task=checked.task,
        metrics=checked.metrics,
        seed=checked.seed,
        resamples=checked.resamples,
        subset_reason=checked.subset_reason,
        warnings=list(checked.warnings),
        requested_by=actor,
    )
    # Copying the file into storage needs no lock either.
    run.file.save(checked.name, checked.upload, save=False)
    try:
        with transaction.atomic():
            gate = lock_gate(checked.gate)
            require_project_perm(actor, "upload_evaluation", gate.project)
            _refuse_locked(gate)
            run.gate = gate
            run.number = _next_run_number(gate.project)
            run.save()
            record(
                actor=actor,
                action=Action.EVALUATION_START,
                project=gate.project,
                target=run,
                after={
                    "gate": gate.phase,
                    "file": checked.name,
                    "sha256": checked.sha256,
                    "size": checked.size,
                    "model_version": checked.model_version.label,
                    "dataset_version": checked.dataset_version.label,
                    "task": checked.task,
                    "metrics": run.metrics,
                    "seed": checked.seed,
                    "resamples": checked.resamples,
                    **({"subset_reason": checked.subset_reason} if checked.subset_reason else {}),
                    **({"warnings": list(checked.warnings)} if checked.warnings else {}),
                },
            )
            enqueue_evaluation(run.pk)
    except BaseException:
        run.file.delete(save=False)
        raise
    return run


def _next_run_number(project: Project) -> int:
    """The project's next run number, under a lock on the project row: uploads to two gates of
    one project at once must not draw the same number."""
    Project.objects.select_for_update().filter(pk=project.pk).first()
    last = EvaluationRun.objects.filter(project=project).aggregate(last=Max("number"))["last"]
    return (last or 0) + 1


def read_records(upload: UploadedFile, name: str, task: str, metrics: list[str] | None) -> Dataset:
    """Read a whole upload against the record contract for `task` and `metrics`; a file that
    breaks it raises a ValidationError on `file` with the line-precise message (and the line
    and field as params, for the API)."""
    _, strict, optional = resolve_metrics(task, list(metrics) if metrics else None)
    try:
        return parse_records(
            upload,
            filename=name,
            metrics=strict,
            limits=Limits.from_settings(settings),
            optional_metrics=optional,
        )
    except RecordError as exc:
        # The message quotes the file, and a ValidationError with params %-formats its message.
        message = str(exc).replace("%", "%%")
        raise ValidationError(
            {"file": ValidationError(message, code="invalid_records", params=_where(exc))}
        ) from None
    finally:
        upload.seek(0)


def evidence_requirements(gate: Gate) -> list[dict[str, Any]]:
    """What the gate's criteria need from an evaluation file: per criterion its metric, the
    group attribute it looks at, and its minimum records (the upload form and the API show
    them before an upload)."""
    needs = []
    for criterion in GateCriterion.objects.filter(gate=gate).order_by("id"):
        fairness = criterion.metric in FAIRNESS_METRICS
        grouped = fairness or criterion.scope != "overall"
        needs.append(
            {
                "criterion": criterion.expression,
                "required": criterion.required,
                "metric": criterion.metric,
                "fields": sorted(METRICS[criterion.metric].fields)
                if criterion.metric in METRICS
                else [],
                "group_attribute": criterion.group_attribute or ("any" if grouped else ""),
                "min_records": criterion.min_records,
                "min_group_records": criterion.min_group_records,
            }
        )
    return needs


def fit_warnings(gate: Gate, dataset: Dataset, task: str, metrics: list[str] | None) -> list[str]:
    """Each thing a gate criterion needs that this file (with these metrics) will not give:
    the criterion would have no data or too little evidence if the run were its evidence."""
    computed, _, _ = resolve_metrics(task, list(metrics) if metrics else None)
    found = []
    for need in evidence_requirements(gate):
        criterion, metric = need["criterion"], need["metric"]
        if metric not in computed:
            found.append(
                f"Criterion {criterion} needs the metric {metric}, which this upload does not "
                f"compute (it computes {', '.join(computed) or 'none'}): add it to the metrics."
            )
            continue
        if metric in dataset.unavailable:
            found.append(f"Criterion {criterion}: {metric} {dataset.unavailable[metric]}.")
        attribute = need["group_attribute"]
        if attribute == "any" and not dataset.groups:
            found.append(
                f"Criterion {criterion} compares subgroups, but no record has a group "
                "attribute (`groups`)."
            )
        elif attribute and attribute != "any" and attribute not in dataset.groups:
            present = ", ".join(sorted(dataset.groups)) or "none"
            found.append(
                f"Criterion {criterion} needs the group attribute “{attribute}”, which no "
                f"record has (the file has: {present})."
            )
        if need["min_records"] and dataset.n < need["min_records"]:
            found.append(
                f"Criterion {criterion} needs at least {need['min_records']:,} records; the "
                f"file has {dataset.n:,}."
            )
        minimum = need["min_group_records"]
        if minimum:
            attributes = [attribute] if attribute and attribute != "any" else list(dataset.groups)
            for name in attributes:
                counts = Counter(v for v in dataset.groups.get(name, []) if v is not None)
                small = sorted(f"{v} ({n:,})" for v, n in counts.items() if n < minimum)
                if small:
                    found.append(
                        f"Criterion {criterion} needs {minimum:,} records per subgroup; "
                        f"{name} has fewer in: {', '.join(small)}."
                    )
    return found


def _where(exc: RecordError) -> dict[str, Any]:
    """Where a refused file breaks the contract, for the API's error body (null when the
    problem is the whole file)."""
    return {"line": exc.line, "field": exc.field}


RUN_EVALUATION_TASK = "lifecycle.run_evaluation"
ANALYSE_MONITORING_BATCH_TASK = "lifecycle.analyse_monitoring_batch"


def enqueue_evaluation(run_id: int) -> None:
    """Queue the evaluation job once the surrounding transaction commits (never before: the
    worker must find the run). In the embedded default the job then runs in-process."""
    # By its registered name: the task calls these services, so they never import it back.
    job = current_app.signature(RUN_EVALUATION_TASK, args=(run_id,))
    transaction.on_commit(job.delay)


def evaluation_run_claim(*, run_id: int, stale_before: datetime.datetime) -> uuid.UUID | None:
    """Claim a run for this job with one conditional update; None if another job has it or it
    is finished. A running run whose heartbeat is older than `stale_before` lost its worker
    and may be claimed again."""
    token = uuid.uuid4()
    now = timezone.now()
    claimable = Q(status=RunStatus.QUEUED) | Q(
        status=RunStatus.RUNNING, heartbeat_at__lt=stale_before
    )
    claimed = EvaluationRun.objects.filter(claimable, pk=run_id).update(
        status=RunStatus.RUNNING,
        claim_token=token,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        progress=0.0,
        progress_message="started",
    )
    return token if claimed else None


def evaluation_run_heartbeat(
    *, run_id: int, token: uuid.UUID, progress: float | None = None, message: str | None = None
) -> bool:
    """Report that the job is alive, with its progress when given (the job's background beat
    has none); False when the job no longer holds the run (someone reclaimed it)."""
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if progress is not None:
        fields["progress"] = min(max(progress, 0.0), 1.0)
    if message is not None:
        fields["progress_message"] = message[:200]
    return bool(
        EvaluationRun.objects.filter(pk=run_id, claim_token=token, status=RunStatus.RUNNING).update(
            **fields
        )
    )


def _result_rows(run: EvaluationRun, result: dict[str, Any]) -> list[EvaluationResult]:
    def row(
        metric: str, scope: str, attribute: str, value: str, data: dict[str, Any]
    ) -> EvaluationResult:
        scalar = data.get("value")
        detail = {} if isinstance(scalar, int | float) or scalar is None else {"value": scalar}
        # Non-scalar companions: confusion-matrix labels, the ROC curve, reliability bins.
        detail.update({k: data[k] for k in ("labels", "curve", "bins") if k in data})
        return EvaluationResult(
            run=run,
            metric=metric,
            scope=scope,
            group_attribute=attribute,
            group_value=value,
            value=scalar
            if isinstance(scalar, int | float) and not isinstance(scalar, bool)
            else None,
            ci_low=data.get("ci_low"),
            ci_high=data.get("ci_high"),
            n=data.get("n"),
            reason=data.get("reason") or "",
            warnings=data.get("warnings") or [],
            detail=detail,
        )

    rows = [row(m, ResultScope.OVERALL, "", "", d) for m, d in result.get("metrics", {}).items()]
    for attribute, groups in result.get("groups", {}).items():
        for value, metrics in groups.items():
            rows += [
                row(m, ResultScope.GROUP, attribute, str(value), d) for m, d in metrics.items()
            ]
    for attribute, metrics in result.get("fairness", {}).items():
        rows += [row(m, ResultScope.FAIRNESS, attribute, "", d) for m, d in metrics.items()]
    return rows


@transaction.atomic
def evaluation_run_succeed(*, run_id: int, token: uuid.UUID, result: dict[str, Any]) -> bool:
    """Store a finished run's results, all in one transaction, if this job still holds the run.

    A redelivered or duplicated job finds the run finished or claimed by another token and
    stores nothing. New results change what the gate's signatures cover, so those are
    invalidated (and an approved gate reopens) here too.
    """
    run = (
        EvaluationRun.objects.select_for_update()
        .select_related("dataset_version")
        .filter(pk=run_id)
        .first()
    )
    if run is None or run.claim_token != token or run.status != RunStatus.RUNNING:
        return False
    EvaluationResult.objects.bulk_create(_result_rows(run, result))
    run.status = RunStatus.SUCCEEDED
    run.progress, run.progress_message = 1.0, "finished"
    run.provenance = result.get("provenance", {})
    # The upload's fit warnings first, then the engine's.
    run.warnings = [*run.warnings, *result.get("warnings", [])]
    run.n_records = result.get("n_records")
    run.finished_at = timezone.now()
    run.error_message = ""
    run.save(
        update_fields=[
            "status",
            "progress",
            "progress_message",
            "provenance",
            "warnings",
            "n_records",
            "finished_at",
            "error_message",
        ]
    )
    verdicts = run_verdicts(run)
    signoffs.record_signed_content_change(
        None,
        run.gate,
        action=Action.EVALUATION_SUCCEED,
        target=run,
        after={
            "n_records": run.n_records,
            "results": run.results.count(),
            "criteria": {v.criterion.expression: v.status for v in verdicts},
        },
        cause=f"evaluation run {run.number} of {run.model_version} was attached",
    )
    if run.gate.phase == Phase.MONITORING:
        # A monitoring batch's run: its analysis (drift, alert rules) follows once this
        # commits. By name: the monitoring job builds on these services, not the reverse.
        job = current_app.signature(ANALYSE_MONITORING_BATCH_TASK, args=(run.pk,))
        transaction.on_commit(job.delay)
    return True


@transaction.atomic
def evaluation_run_fail(*, run_id: int, token: uuid.UUID | None, message: str) -> bool:
    """Mark a run failed with its message (a refused file, an exhausted retry, a time limit)."""
    runs = EvaluationRun.objects.select_for_update().filter(pk=run_id)
    run = runs.first()
    if run is None or run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        return False
    if token is not None and run.claim_token != token:
        return False
    run.status = RunStatus.FAILED
    run.error_message = message
    run.finished_at = timezone.now()
    run.progress_message = "failed"
    run.save(update_fields=["status", "error_message", "finished_at", "progress_message"])
    record(
        actor=None,
        action=Action.EVALUATION_FAIL,
        project=run.project,
        target=run,
        after={"error": message},
    )
    if run.gate.phase == Phase.MONITORING:
        # A monitoring batch's run: the batch job marks the batch failed once this commits.
        job = current_app.signature(ANALYSE_MONITORING_BATCH_TASK, args=(run.pk,))
        transaction.on_commit(job.delay)
    return True


@transaction.atomic
def evaluation_run_release(*, run_id: int, token: uuid.UUID, reason: str) -> bool:
    """Give a claimed run back to the queue after a transient error, for the job's retry to
    claim it again. Only the current claim holder may release it; it is recorded as a requeue
    with the error as its reason."""
    run = (
        EvaluationRun.objects.select_for_update()
        .filter(pk=run_id, claim_token=token, status=RunStatus.RUNNING)
        .first()
    )
    if run is None:
        return False
    run.status = RunStatus.QUEUED
    run.progress_message = "waiting to retry"
    run.requeued_at = timezone.now()
    run.save(update_fields=["status", "progress_message", "requeued_at"])
    record(
        actor=None,
        action=Action.EVALUATION_REQUEUE,
        project=run.project,
        target=run,
        before={"status": RunStatus.RUNNING},
        after={"status": RunStatus.QUEUED, "attempts": run.attempts},
        reason=reason,
    )
    return True


def evaluation_runs_requeue_stuck(
    *, queued_before: datetime.datetime, stale_before: datetime.datetime
) -> list[int]:
    """Queue again the runs stuck in queued (lost messages) and the running ones whose worker
    stopped sending heartbeats. Each is re-enqueued in its own transaction.

    A run is queued again at most once per stale period, counted from when a job was last
    queued for it (upload, or `requeued_at`): while no worker is up, or the queue is backed
    up, a sweep every minute would otherwise add a message and a requeue event each time.
    """
    queued_long_ago = Q(status=RunStatus.QUEUED) & (
        Q(requeued_at__isnull=True, created_at__lt=queued_before) | Q(requeued_at__lt=queued_before)
    )
    lost_its_worker = Q(status=RunStatus.RUNNING, heartbeat_at__lt=stale_before) & (
        Q(requeued_at__isnull=True) | Q(requeued_at__lt=stale_before)
    )
    stuck = list(
        EvaluationRun.objects.filter(queued_long_ago | lost_its_worker).values_list("pk", "status")
    )
    requeued = []
    for run_id, status in stuck:
        with transaction.atomic():
            # Again under the lock: another sweep (a starting worker's, beat's) may have
            # queued it meanwhile.
            run = (
                EvaluationRun.objects.select_for_update()
                .filter(queued_long_ago | lost_its_worker, pk=run_id, status=status)
                .first()
            )
            if run is None:
                continue
            run.requeued_at = timezone.now()
            run.save(update_fields=["requeued_at"])
            record(
                actor=None,
                action=Action.EVALUATION_REQUEUE,
                project=run.project,
                target=run,
                before={"status": status},
                after={"attempts": run.attempts},
            )
            enqueue_evaluation(run.pk)
            requeued.append(run.pk)
    return requeued
