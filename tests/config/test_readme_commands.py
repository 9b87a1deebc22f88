"""The README's command lines work exactly as printed after its first command (`make run`).

`make run` writes a local `.env` (config/devenv.py); nothing else is set. The test gives the
commands the same: a fresh working directory, a `.env` written by the same code (plus where to
keep the database and files, so the test touches nothing of the developer's), and an
environment with no DEBUG, SECRET_KEY or DATABASE_URL.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from config.devenv import write_dev_env

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Blocks whose commands are self-contained (the others start servers or need a token).
SECTIONS = ("## Evaluations", "## Monitoring", "## Audit trail", "## Compliance reports")
# docs/reports.md: every sh block, run by a shell (its examples redirect output to a file).
REPORTS_DOC = (ROOT / "docs" / "reports.md").read_text()

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="runs once, in the SQLite pass: the commands use the embedded default",
)


def _commands(section: str) -> list[str]:
    body = README.split(section, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", body, re.S)
    assert block, f"no sh block under {section}"
    return [line.split(" #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def after_make_run(tmp_path):
    """A directory laid out like the clone after `make run`: manage.py and the venv at hand,
    a development .env, a migrated database with the demo."""
    (tmp_path / "manage.py").symlink_to(ROOT / "manage.py")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env_file = tmp_path / ".env"
    assert write_dev_env(env_file)
    with env_file.open("a") as f:
        f.write(
            f"DATABASE_URL=sqlite:///{tmp_path / 'db.sqlite3'}\n"
            f"MEDIA_ROOT={tmp_path / 'media'}\nAUDIT_CHECKPOINT_DIR={tmp_path / 'checkpoints'}\n"
        )
    # Only what a shell has: no DEBUG, SECRET_KEY, DATABASE_URL, nor pytest's marker (which
    # makes settings skip .env). ENV_FILE stands for "the .env next to manage.py".
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "ENV_FILE": str(env_file)}
    for step in (["migrate", "--no-input"], ["load_demo"]):
        done = _run([".venv/bin/python", "manage.py", *step], tmp_path, env)
        assert done.returncode == 0, done.stderr
    return tmp_path, env


def test_the_readme_command_lines_work_as_printed(after_make_run):
    cwd, env = after_make_run
    for section in SECTIONS:
        for command in _commands(section):
            done = _run(shlex.split(command), cwd, env)
            assert done.returncode == 0, f"`{command}` failed:\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr, command
    assert (cwd / "ed.jsonl").stat().st_size > 0
    assert (cwd / "sepsis-dossier.pdf").read_bytes().startswith(b"%PDF-")
    for block in re.findall(r"```sh\n(.*?)```", REPORTS_DOC, re.S):
        for line in block.splitlines():
            command = line.split(" #")[0].strip()
            if not command:
                continue
            done = _run(["bash", "-c", command], cwd, env)
            assert done.returncode == 0, f"`{command}` failed:\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr, command
    assert (
        "Report seal verified"
        in _run(
            shlex.split(".venv/bin/python manage.py verify_report sepsis-card.pdf"), cwd, env
        ).stdout
    )


def test_without_a_dot_env_production_mode_says_how_to_get_one(tmp_path):
    env = {"PATH": os.environ["PATH"], "ENV_FILE": str(tmp_path / "absent.env")}
    done = _run([str(ROOT / ".venv/bin/python"), str(ROOT / "manage.py"), "check"], tmp_path, env)
    assert done.returncode != 0
    assert "SECRET_KEY is not set" in done.stderr and "make run" in done.stderr


def test_the_dev_env_is_private_random_and_never_overwritten(tmp_path):
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert write_dev_env(first) and write_dev_env(second)
    assert first.stat().st_mode & 0o777 == 0o600
    assert "DEBUG=1" in first.read_text()
    assert first.read_text() != second.read_text()  # a fresh SECRET_KEY each time
    first.write_text("SECRET_KEY=kept\n")
    assert not write_dev_env(first)
    assert first.read_text() == "SECRET_KEY=kept\n"
