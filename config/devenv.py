"""Write the local `.env` with development settings, once (`make run` calls this first).

The generated SECRET_KEY is random per machine, so nothing derived from it (sessions, the
development audit checkpoint key) is a public constant. An existing `.env` is never touched: it
may hold a real deployment's settings. Usage: `python -m config.devenv [PATH]`.
"""

import secrets
import sys
from pathlib import Path

TEMPLATE = """\
# Local development settings, written by `make run` (config/devenv.py) because there was no .env.
# Every manage.py command reads this file; the environment overrides it. Never deploy with it:
# for docker compose or production, start from .env.example instead.
DEBUG=1
SECRET_KEY={secret_key}
"""


def write_dev_env(path: Path) -> bool:
    """Create `path` with development settings unless it exists; True when written."""
    if path.exists():
        return False
    path.write_text(TEMPLATE.format(secret_key=secrets.token_urlsafe(50)))
    path.chmod(0o600)
    return True


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / ".env"
    if write_dev_env(path):
        print(f"Wrote {path} with development settings (DEBUG=1, a generated SECRET_KEY).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
