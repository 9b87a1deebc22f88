"""What a web or worker process loads at start-up: the site, not the metric engine's heavy
reference libraries (they load when an evaluation runs)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sklearn", "scipy", "pandas", "lifelines", "sacrebleu", "nltk", "rouge_score", "jiwer")

PROBE = """
import sys
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # every view, serializer, admin and API module
from config.celery import app
print(" ".join(sorted(name for name in app.tasks if not name.startswith("celery."))))
app.loader.import_default_modules()  # every task module a worker imports
print(" ".join(sorted(name for name in app.tasks if not name.startswith("celery."))))
print(",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""
JOBS = {
    "lifecycle.run_evaluation",
    "lifecycle.sweep_evaluation_runs",
    "lifecycle.send_notification",
}
WORKER = JOBS | {"audits.write_checkpoints", "governance.health_check"}


def _probe() -> list[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def test_a_process_that_loaded_its_urls_and_tasks_has_not_imported_the_heavy_libraries():
    assert _probe()[2] == ""


def test_a_web_process_knows_the_jobs_it_enqueues_and_a_worker_every_task():
    # Services enqueue by task name; the embedded default runs the job in the web process.
    web, worker, _ = _probe()
    assert set(web.split()) >= JOBS
    assert set(worker.split()) >= WORKER


def test_the_engine_loads_its_libraries_when_it_evaluates():
    probe = (
        "import io, sys\n"
        "from lifecycle.metrics import evaluate\n"
        "assert 'sklearn' not in sys.modules\n"
        'rows = b\'{"id":"1","label":1,"score":0.9}\\n{"id":"2","label":0,"score":0.2}\\n\'\n'
        "evaluate(io.BytesIO(rows), filename='r.jsonl', metrics=['auroc'], resamples=10)\n"
        "print('sklearn' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"
