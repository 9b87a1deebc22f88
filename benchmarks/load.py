"""Web tier load benchmark: gunicorn with the production settings on PostgreSQL, 20 clients.

    DATABASE_URL=postgres://... python benchmarks/load.py [--seconds 10] [--clients 20]
        [--workers N] [--projects 1000] [--events 100000] [--in-review-every 10]

Prints numbers; asserts nothing. Creates a throwaway database (test_<name>) and seeds it through
the services: `--projects` projects whose committee chair is the user under test (so their
dashboard lists every one; every `--in-review-every`-th has its planning gate in review, waiting
for their signature), and on the first project a succeeded evaluation run with its results, the
planning gate submitted on it, and `--events` more events written into that project's audit
chain with COPY (a genuine hash chain continuing from the head the services left), then one
round of signed checkpoints as Celery beat would write them.

It then starts gunicorn (`config.wsgi`, the production settings: DEBUG=0, the deploy keys,
ALLOWED_HOSTS=127.0.0.1) bound to 127.0.0.1 only, logs in through the login form (one session
per client) and creates an API token, and for each endpoint runs `--clients` threads for
`--seconds` (after `--warmup` seconds not counted). Each thread keeps its HTTP connection open
where the server allows it (gunicorn's sync workers close it after every response; the client
then reconnects, as a browser would). Every response other than 200 counts as an error and is
printed.

HTTPS: the production settings redirect plain http to https (SECURE_SSL_REDIRECT) and set secure
cookies. The benchmark does what a deployment does: it declares a TLS-terminating proxy
(SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto, as .env.example describes) and its clients play that
proxy, sending `X-Forwarded-Proto: https`. The production settings are otherwise unchanged, except
API_THROTTLE_RATE, raised so that one token's 20 clients measure the API rather than its request
budget (1,200/min by default).

Each endpoint is printed with its p50 and p95 latency and requests per second, and as ratios to
the trivial endpoint (/healthz/: one `SELECT 1`): p50 / p50, p95 / p95 and trivial requests/s
over its requests/s. Goals from issue 15: every ratio <= 5, the API project list <= 3. The
client threads run on the same machine as gunicorn and PostgreSQL: the load average is printed
with each endpoint, and the ratios are steadier than the absolute numbers.
"""

import argparse
import atexit
import base64
import http.client
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The production settings: no DEBUG, and tasks run in-process while seeding (no broker), so the
# evaluation is scored and notifications do not wait in a queue nobody reads.
for _name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
    os.environ.pop(_name, None)
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
os.environ["DEBUG"] = "0"
os.environ.setdefault("SECRET_KEY", "benchmark-only-" + secrets.token_urlsafe(40))
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
os.environ.setdefault("LOG_LEVEL", "WARNING")
_WORKDIR = Path(tempfile.mkdtemp(prefix="llmgov-load-"))
atexit.register(shutil.rmtree, _WORKDIR, ignore_errors=True)  # however the script ends
os.environ["MEDIA_ROOT"] = str(_WORKDIR / "media")
os.environ["AUDIT_CHECKPOINT_DIR"] = str(_WORKDIR / "checkpoints")
os.environ["STATIC_ROOT"] = str(_WORKDIR / "static")  # collected, as the Dockerfile does
_LOG = _WORKDIR / "gunicorn.log"


def _ed25519_key() -> str:
    """A fresh signing key, as `manage.py audit_keygen` prints it (base64 of the raw bytes)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return base64.b64encode(raw).decode()


os.environ["AUDIT_CHECKPOINT_SIGNING_KEY"] = _ed25519_key()
os.environ["REPORT_SIGNING_KEY"] = _ed25519_key()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Permission  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from audits import chain as hashchain  # noqa: E402
from audits.models import Action, AuditChain  # noqa: E402
from audits.tasks import write_audit_checkpoints  # noqa: E402
from demo.records import binary_classifier  # noqa: E402
from governance import services as governance_services  # noqa: E402
from governance.models import Project, User  # noqa: E402
from governance.roles import Role  # noqa: E402
from lifecycle.checklists import services as checklist_services  # noqa: E402
from lifecycle.evaluations import services as evaluation_services  # noqa: E402
from lifecycle.evaluations.models import EvaluationRun, RunStatus  # noqa: E402
from lifecycle.evaluations.tasks import run_evaluation  # noqa: E402
from lifecycle.gates import services as gate_services  # noqa: E402
from lifecycle.phases import Phase  # noqa: E402
from lifecycle.projects import services as project_services  # noqa: E402
from lifecycle.projects.dashboard import pending_signoffs  # noqa: E402

PASSWORD = "load-benchmark-" + secrets.token_urlsafe(12)
GOAL_RATIO = 5.0
GOAL_API_RATIO = 3.0
METRICS = ["accuracy", "recall", "specificity", "auroc", "ece", "brier_score"]


@dataclass
class Seeded:
    """What the clients need: who logs in, the API token, and the pages of the big project."""

    username: str
    token: str
    paths: dict[str, str]
    pending: int


def _user(username: str, *, first: str, last: str) -> User:
    return User.objects.create_user(
        username=username,
        password=PASSWORD,
        first_name=first,
        last_name=last,
        email=f"{username}@hospital.example",
    )


def _settle_planning(lead: User, project: Project) -> None:
    """Every planning item done, with a note as evidence where the template asks for one."""
    for item in project.checklist_items.filter(phase=Phase.PLANNING):
        if item.evidence_required:
            checklist_services.evidence_add_note(
                actor=lead, item=item, note="Reviewed with the committee; see the project share."
            )
        checklist_services.checklist_item_update(actor=lead, item=item, status="done")


def _evaluate(lead: User, chair: User, project: Project) -> EvaluationRun:
    """A scored evaluation run on the planning gate, with criteria judged on it."""
    gate = project.gates.get(phase=Phase.PLANNING)
    for metric, threshold, comparator in (("auroc", 0.8, ">="), ("ece", 0.1, "<=")):
        gate_services.gate_criterion_create(
            actor=chair,
            gate=gate,
            metric=metric,
            bound="value",
            comparator=comparator,
            threshold=threshold,
            required=True,
        )
    model = evaluation_services.model_version_create(
        actor=lead, project=project, label="triage-v1", base_model="b", adaptation="rag"
    )
    dataset = evaluation_services.dataset_version_create(
        actor=lead,
        project=project,
        label="validation-2025",
        purpose="validation",
        row_count=2000,
        sha256="0" * 64,
    )
    run = evaluation_services.evaluation_run_start(
        actor=lead,
        gate=gate,
        model_version=model,
        dataset_version=dataset,
        upload=SimpleUploadedFile(
            "val.jsonl", binary_classifier(seed=7, n=2000, prevalence=0.2, separation=1.5)
        ),
        metrics=METRICS,
        resamples=200,
    )
    run_evaluation.apply(args=(run.pk,))
    run.refresh_from_db()
    if run.status != RunStatus.SUCCEEDED:
        sys.exit(f"the seeded evaluation run did not succeed: {run.status} {run.error_message}")
    return run


def append_events(project: Project, actor: User, events: int) -> None:
    """Continue the project's chain with `events` genuine events, written with COPY.

    Each payload is built and sealed as `audits.trail.record` would (checklist status changes
    by the project lead, on the project's own items), starting from the head the services left.
    """
    chain = AuditChain.objects.get(project=project)
    items = list(project.checklist_items.values_list("pk", "title"))
    prev, start = chain.head_hash, chain.length
    now = timezone.now()
    columns = (
        "chain_id, sequence, recorded_at, actor_type, actor_user_id, actor_token_id, action, "
        "target_type, target_id, payload, prev_hash, hash"
    )
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY audits_auditevent ({columns}) FROM STDIN") as copy,
    ):
        for offset in range(1, events + 1):
            sequence = start + offset
            at = now + timedelta(microseconds=offset)
            item_id, title = items[offset % len(items)]
            states = ("in_progress", "done") if offset % 2 else ("done", "in_progress")
            payload = hashchain.build_payload(
                chain=chain.key,
                sequence=sequence,
                at=hashchain.format_time(at),
                actor_type="user",
                actor_id=actor.pk,
                token_id=None,
                action=Action.ITEM_UPDATE.value,
                target_type="lifecycle.checklistitem",
                target_id=str(item_id),
                actor_name=actor.get_full_name(),
                target_text=title,
                before={"status": states[0]},
                after={"status": states[1]},
                reason="",
                request_id=f"00000000-0000-4000-8000-{sequence:012d}",
                ip="10.1.2.3",
                user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
            )
            digest = hashchain.seal(prev, payload)
            copy.write_row(
                (
                    chain.pk,
                    sequence,
                    at,
                    "user",
                    actor.pk,
                    None,
                    Action.ITEM_UPDATE.value,
                    "lifecycle.checklistitem",
                    str(item_id),
                    payload,
                    prev,
                    digest,
                )
            )
            prev = digest
    AuditChain.objects.filter(pk=chain.pk).update(
        length=start + events, head_hash=prev, updated_at=timezone.now()
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would after a bulk load


def seed(projects: int, events: int, in_review_every: int) -> Seeded:
    """The data the pages are measured on (see the module docstring)."""
    started = time.perf_counter()
    lead = _user("lead", first="Robert", last="Alvarez")
    lead.user_permissions.add(
        Permission.objects.get(content_type__app_label="governance", codename="add_project")
    )
    lead = User.objects.get(pk=lead.pk)
    chair = _user("chair", first="Amara", last="Okafor")
    created: list[Project] = []
    for n in range(projects):
        project = project_services.project_create(
            actor=lead,
            name=f"Clinical assistant {n:04d}",
            slug=f"assistant-{n:04d}",
            clinical_setting=("Emergency department", "Inpatient medicine", "Primary care")[n % 3],
            intended_use="Draft summaries for clinician review.",
            intended_users="Physicians and nurses",
            task_category="clinical_documentation",
            risk_tier=("low", "medium", "high")[n % 3],
        )
        governance_services.membership_add(
            actor=lead, project=project, user=chair, role=Role.COMMITTEE_CHAIR
        )
        created.append(project)
        if (n + 1) % 100 == 0:
            print(f"  {n + 1:,} projects ({time.perf_counter() - started:.0f} s)", flush=True)
    main = created[0]
    _settle_planning(lead, main)
    run = _evaluate(lead, chair, main)
    gate_services.gate_submit(actor=lead, gate=main.gates.get(phase=Phase.PLANNING))
    for project in created[in_review_every::in_review_every]:
        _settle_planning(lead, project)
        gate_services.gate_submit(actor=lead, gate=project.gates.get(phase=Phase.PLANNING))
    print(f"  gates submitted ({time.perf_counter() - started:.0f} s)", flush=True)
    append_events(main, lead, events)
    print(f"  {events:,} audit events ({time.perf_counter() - started:.0f} s)", flush=True)
    report = write_audit_checkpoints()
    if report["problems"]:
        sys.exit(f"the seeded audit trail does not verify: {report['problems']}")
    print(
        f"  checkpoints: {report['checkpointed']:,} of {report['chains']:,} chains, "
        f"{report['events']:,} events ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    _, token = governance_services.api_token_create(actor=chair, name="load benchmark")
    return Seeded(
        username=chair.username,
        token=token,
        paths={
            "trivial (/healthz/)": "/healthz/",
            "API project list": "/api/v1/projects/",
            f"dashboard ({projects:,} projects)": "/",
            f"audit timeline ({AuditChain.objects.get(project=main).length:,} events)": (
                f"/projects/{main.slug}/audit/"
            ),
            "phase page": f"/projects/{main.slug}/phases/{Phase.PLANNING.value}/",
            "evaluation run page": f"/projects/{main.slug}/runs/{run.pk}/",
        },
        pending=len(pending_signoffs(chair)),
    )


def fail(message: str) -> NoReturn:
    """Stop with `message` and the end of gunicorn's log, where the server's side is told."""
    log = _LOG.read_text(errors="replace")[-4000:] if _LOG.exists() else ""
    raise SystemExit(f"{message}\n--- gunicorn log (end) ---\n{log}" if log else message)


def _database_url(name: str) -> str:
    """The benchmark database's URL: DATABASE_URL with the test database's name."""
    parts = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def serve(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start gunicorn on 127.0.0.1:`port` and wait until /healthz/ answers."""
    process = subprocess.Popen(  # noqa: S603 - gunicorn, with arguments made here
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env=env,
        stdout=_LOG.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"gunicorn exited with {process.returncode}")
        try:
            status, _, _ = request(port, "/healthz/")
            if status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.terminate()
    fail("gunicorn did not answer /healthz/ within 60 s")


def _headers(port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    # The clients play the TLS-terminating proxy that SECURE_PROXY_SSL_HEADER declares.
    return {"Host": f"127.0.0.1:{port}", "X-Forwarded-Proto": "https", **(extra or {})}


def request(
    port: int, path: str, *, method: str = "GET", body: str | None = None, **headers: str
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a fresh connection: status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=_headers(port, headers))
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def _cookies(headers: http.client.HTTPMessage) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for value in headers.get_all("Set-Cookie") or []:
        jar.load(value)
    return {name: morsel.value for name, morsel in jar.items()}


def login(port: int, username: str) -> str:
    """Sign in through the login form as a browser does; return the Cookie header."""
    status, headers, body = request(port, "/accounts/login/")
    if status != 200:
        fail(f"GET /accounts/login/ answered {status}")
    csrf = _cookies(headers)["csrftoken"]
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": match.group(1).decode() if match else csrf,
            "username": username,
            "password": PASSWORD,
        }
    )
    status, headers, _ = request(
        port,
        "/accounts/login/",
        method="POST",
        body=form,
        **{
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf}",
            "Origin": f"https://127.0.0.1:{port}",
            "Referer": f"https://127.0.0.1:{port}/accounts/login/",
        },
    )
    session = _cookies(headers).get(settings.SESSION_COOKIE_NAME)
    if status != 302 or not session:
        fail(f"login as {username} failed: HTTP {status}")
    return f"{settings.SESSION_COOKIE_NAME}={session}; csrftoken={csrf}"


@dataclass
class Stats:
    """Latencies of the successful requests, and every other outcome counted by status."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        """The q-th quantile (nearest rank), in seconds; NaN without a success."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _client(
    port: int, path: str, headers: dict[str, str], until: float, stats: Stats, lock: threading.Lock
) -> None:
    """One client: requests back to back on one kept-alive connection until `until`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    mine: list[float] = []
    errors: Counter[str] = Counter()
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            errors[type(exc).__name__] += 1
            conn.close()  # the next request reconnects
            continue
        if response.status == 200:
            mine.append(time.perf_counter() - started)
        else:
            errors[f"HTTP {response.status}"] += 1
    conn.close()
    with lock:
        stats.latencies += mine
        stats.errors += errors


def measure(port: int, path: str, client_headers: list[dict[str, str]], seconds: float) -> Stats:
    """`len(client_headers)` concurrent clients on `path` for `seconds`."""
    stats, lock = Stats(), threading.Lock()
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_client, args=(port, path, headers, until, stats, lock))
        for headers in client_headers
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats.elapsed = time.perf_counter() - started
    return stats


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per endpoint")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="per endpoint: one client, then all, unrated"
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn workers"
    )
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--in-review-every", type=int, default=10, help="every n-th project has a gate in review"
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL server: the benchmark measures PostgreSQL.")

    original = settings.DATABASES["default"]["NAME"]
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    server = None
    try:
        database = settings.DATABASES["default"]
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
        print(
            f"PostgreSQL {version}, {os.cpu_count()} cores, gunicorn "
            f"{args.workers} sync workers, {args.clients} clients, {args.seconds:g} s per "
            f"endpoint; CONN_MAX_AGE={database['CONN_MAX_AGE']}, "
            f"CONN_HEALTH_CHECKS={database['CONN_HEALTH_CHECKS']}, "
            f"pool={bool(database.get('OPTIONS', {}).get('pool'))}"
        )
        print(f"Seeding {args.projects:,} projects and {args.events:,} audit events ...")
        seeded = seed(args.projects, args.events, args.in_review_every)
        print(f"  the chair's dashboard: {seeded.pending} gates waiting for their signature")
        connection.close()  # gunicorn's workers open their own
        call_command("collectstatic", interactive=False, verbosity=0)

        port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(name),
            "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
            "API_THROTTLE_RATE": "1000000/min",
        }
        server = serve(port, args.workers, env)
        sessions = [login(port, seeded.username) for _ in range(args.clients)]
        as_browser = [_headers(port, {"Cookie": cookie}) for cookie in sessions]
        as_token = [_headers(port, {"Authorization": f"Bearer {seeded.token}"})] * args.clients
        print()
        header = (
            f"{'endpoint':<32} {'alone':>8} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8}   "
            f"{'p50 x':>6} {'p95 x':>6} {'rps x':>6}  goal  {'load':>5}  errors"
        )
        print(header)
        print("-" * len(header))
        trivial: Stats | None = None
        for label, path in seeded.paths.items():
            headers = as_token if path.startswith("/api/") else as_browser
            if path == "/healthz/":
                headers = [_headers(port)] * args.clients
            # One client alone first: the page's own cost, without queueing for a worker.
            alone = measure(port, path, headers[:1], args.warmup)
            measure(port, path, headers, args.warmup)  # every worker has served the page
            stats = measure(port, path, headers, args.seconds)
            load = os.getloadavg()[0]
            trivial = trivial or stats
            ratios = (
                stats.percentile(0.5) / trivial.percentile(0.5),
                stats.percentile(0.95) / trivial.percentile(0.95),
                trivial.per_second / stats.per_second if stats.per_second else float("inf"),
            )
            goal = GOAL_API_RATIO if path.startswith("/api/") else GOAL_RATIO
            verdict = "met" if max(ratios) <= goal and not (stats.errors or alone.errors) else "NOT"
            errors = stats.errors + alone.errors
            listed = ", ".join(f"{n} x {what}" for what, n in errors.most_common()) or "-"
            print(
                f"{label:<32} {alone.percentile(0.5) * 1000:8.1f} "
                f"{stats.percentile(0.5) * 1000:8.1f} "
                f"{stats.percentile(0.95) * 1000:8.1f} {stats.per_second:8.1f}   "
                f"{ratios[0]:6.2f} {ratios[1]:6.2f} {ratios[2]:6.2f}  {verdict:<4}  "
                f"{load:5.2f}  {listed}",
                flush=True,
            )
        print()
        print(
            "alone: p50 ms of one client by itself (the page's own cost, measured first, for "
            f"--warmup s); then {args.clients} clients: p50, p95, requests/s.\n"
            f"x: ratio to the trivial endpoint (p50/p50, p95/p95, its req/s over this one's). "
            f"Goal: every ratio <= {GOAL_RATIO:g}, the API project list <= {GOAL_API_RATIO:g}; "
            f"load: 1-minute load average after the endpoint."
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        connection.close()
        connection.creation.destroy_test_db(original, verbosity=0)


if __name__ == "__main__":
    main()
