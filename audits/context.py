"""Where an action comes from: the request (id, IP, user agent, API token) or a system job.

Set once per request by `audits.middleware.AuditContextMiddleware`, or around a task or
command with `system_context`; read by `audits.trail.record`.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class AuditContext:
    request_id: str = ""
    ip: str | None = None
    user_agent: str = ""
    token_id: int | None = None
    system_job: str = ""


_EMPTY = AuditContext()
_current: ContextVar[AuditContext | None] = ContextVar("audit_context", default=None)


def current() -> AuditContext:
    return _current.get() or _EMPTY


@contextmanager
def bind(context: AuditContext) -> Iterator[AuditContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


@contextmanager
def system_context(job: str) -> Iterator[AuditContext]:
    """Attribute what happens inside to the named system job (a task or a command)."""
    with bind(AuditContext(request_id=f"job-{uuid.uuid4()}", system_job=job)) as context:
        yield context


@contextmanager
def token_context(token_id: int) -> Iterator[AuditContext]:
    """Attribute what happens inside to an API token of the acting user."""
    with bind(replace(current(), token_id=token_id)) as context:
        yield context
