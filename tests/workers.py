"""Real Celery worker processes for tests that depend on the broker and the worker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from config.celery import app


def test_database_url() -> str:
    """The URL of the database the test run uses (pytest-django's test_* database)."""
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class WorkerProcess:
    """A `celery worker` subprocess on the test database and the test Redis."""

    def __init__(self, redis_url: str, log_dir: Path, name: str = "test") -> None:
        self.redis_url = redis_url
        self.log_path = log_dir / f"worker-{name}.log"
        self.hostname = f"{name}-{os.getpid()}@localhost"
        self.checkpoint_dir = log_dir / "checkpoints"
        self.media_dir = log_dir / "media"  # tests that upload files point MEDIA_ROOT here
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "CELERY_RESULT_BACKEND": self.redis_url,
            "AUDIT_CHECKPOINT_DIR": str(self.checkpoint_dir),
            "MEDIA_ROOT": str(self.media_dir),
            # Short enough for the lost-worker tests: a killed job's run and message come back
            # within seconds (the claim keeps a live job's results from being stored twice).
            "EVALUATION_STALE_AFTER": "3",
            "CELERY_VISIBILITY_TIMEOUT": "8",
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "-n",
                self.hostname,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early; see {self.log_path}")
            if app.control.ping(destination=[self.hostname], timeout=0.5):
                return
        raise RuntimeError(f"worker did not answer a ping within {timeout}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a lost node would."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class BeatProcess:
    """A `celery beat` subprocess sending the real schedule (config.settings) to the test Redis,
    with every interval in `intervals` (setting name → seconds) shortened for the test."""

    def __init__(self, redis_url: str, log_dir: Path, intervals: dict[str, int]) -> None:
        self.redis_url = redis_url
        self.log_path = log_dir / "beat.log"
        self.schedule_path = log_dir / "beat-schedule"
        self.intervals = intervals
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "CELERY_RESULT_BACKEND": self.redis_url,
            **{name: str(seconds) for name, seconds in self.intervals.items()},
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel=INFO",
                "--schedule",
                str(self.schedule_path),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
        )

    def sent(self, task: str) -> int:
        """How many times beat has sent `task` so far (from its log)."""
        lines = self.log_path.read_text().splitlines()
        return sum(1 for line in lines if "Sending due task" in line and f"({task})" in line)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
