"""Writing to the audit trail.

`record` is called by every service that changes governed data, inside the service's own
transaction: the event commits with the change or not at all. Appends to one chain are
serialised by a row lock on the chain's head (`AuditChain`), so concurrent writers queue up
instead of forking the chain.
"""

import datetime
import enum
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Protocol

from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.db import IntegrityError, connection, models, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from audits import chain as hashchain
from audits.context import current
from audits.models import Action, ActorType, AuditChain, AuditEvent


class ChainOwner(Protocol):
    """What the trail needs of a project: its chain is `project:<slug>`. The trail's core
    imports nothing of the domain (docs/architecture.md)."""

    pk: Any
    slug: str


Actor = AbstractUser | AnonymousUser


def chain_key(project: ChainOwner | None) -> str:
    return hashchain.GLOBAL_CHAIN if project is None else f"project:{project.slug}"


def locked_chain(project: ChainOwner | None) -> AuditChain:
    key = chain_key(project)
    chain = AuditChain.objects.select_for_update().filter(key=key).first()
    if chain is not None:
        return chain
    try:
        with transaction.atomic():
            AuditChain.objects.create(key=key, project_id=project.pk if project else None)
    except IntegrityError:
        pass  # created concurrently; lock the winner's row below
    return AuditChain.objects.select_for_update().get(key=key)


# The append path is three plain statements: it runs inside every write of the product, and
# the ORM's per-query overhead would triple its cost (see benchmarks/audit.py).
_SELECT_HEAD = "SELECT id, length, head_hash FROM audits_auditchain WHERE key = %s"
_INSERT_EVENT = (
    "INSERT INTO audits_auditevent (chain_id, sequence, recorded_at, actor_type, "
    "actor_user_id, actor_token_id, action, target_type, target_id, payload, prev_hash, hash) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)
_UPDATE_HEAD = (
    "UPDATE audits_auditchain SET length = %s, head_hash = %s, updated_at = %s WHERE id = %s"
)
# PostgreSQL inserts the event and moves the head in one round trip.
_INSERT_EVENT_AND_UPDATE_HEAD = (
    f"WITH event AS ({_INSERT_EVENT}) {_UPDATE_HEAD} RETURNING (SELECT id FROM event)"  # noqa: S608 - constants only
)
_ACTIONS = frozenset(Action.values)


def _lock_head(cursor: CursorWrapper, key: str, project: ChainOwner | None) -> tuple[int, int, str]:
    """Lock the chain's head row (creating the chain on its first event)."""
    locking = connection.features.has_select_for_update  # SQLite locks the whole database
    cursor.execute(_SELECT_HEAD + (" FOR UPDATE" if locking else ""), [key])
    row = cursor.fetchone()
    if row is None:
        chain = locked_chain(project)
        return chain.pk, chain.length, chain.head_hash
    chain_id, length, head_hash = row
    return int(chain_id), int(length), str(head_hash)


def jsonable(value: Any) -> Any:
    """Values as they appear in before/after: JSON types only, models by primary key."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "name") and hasattr(value, "url"):  # a stored file
        return value.name
    return str(value)


def snapshot(instance: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The current values of `fields` (foreign keys by id), ready for before/after."""
    values = {}
    for name in fields:
        field = instance._meta.get_field(name)
        values[name] = jsonable(getattr(instance, getattr(field, "attname", name)))
    return values


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose value changed, for a compact before/after."""
    keys = [key for key in after if before.get(key) != after[key]]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def _label(model: type[models.Model] | models.Model) -> str:
    return model._meta.label_lower


def record(
    *,
    actor: Actor | None,
    action: str,
    project: ChainOwner | None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str | int = "",
    target_text: str = "",
    before: Any = None,
    after: Any = None,
    reason: str = "",
    actor_name: str = "",
) -> AuditEvent:
    """Append one event to the project's chain (or the global chain) and return it.

    Runs inside the caller's transaction, so a change that rolls back leaves no event behind.
    No savepoint of its own: a failure here must fail the whole change, and appends stay at
    three statements.
    """
    if action not in _ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if target is not None:
        target_type = target_type or _label(target)
        target_id = target.pk if target_id == "" else target_id
        target_text = target_text or str(target)
    context = current()
    if actor is not None and actor.is_authenticated:
        actor_type = ActorType.TOKEN if context.token_id else ActorType.USER
        actor_id: int | None = actor.pk
        actor_name = actor_name or actor.get_full_name() or actor.get_username()
    elif context.system_job:
        actor_type, actor_id, actor_name = ActorType.SYSTEM, None, context.system_job
    else:
        actor_type, actor_id = ActorType.ANONYMOUS, None
    key = chain_key(project)
    now = timezone.now()
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        chain_id, length, prev_hash = _lock_head(cursor, key, project)
        sequence = length + 1
        payload = hashchain.build_payload(
            chain=key,
            sequence=sequence,
            at=hashchain.format_time(now),
            actor_type=actor_type,
            actor_id=actor_id,
            token_id=context.token_id,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            actor_name=actor_name,
            target_text=target_text[:300],
            before=jsonable(before),
            after=jsonable(after),
            reason=reason,
            request_id=context.request_id,
            ip=context.ip,
            user_agent=context.user_agent,
        )
        event = AuditEvent(
            chain_id=chain_id,
            sequence=sequence,
            recorded_at=now,
            actor_type=actor_type,
            actor_user_id=actor_id,
            actor_token_id=context.token_id,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            payload=payload,
            prev_hash=prev_hash,
            hash=hashchain.seal(prev_hash, payload),
        )
        stored_at = connection.ops.adapt_datetimefield_value(now)
        values = [
            chain_id,
            sequence,
            stored_at,
            actor_type,
            actor_id,
            context.token_id,
            action,
            target_type,
            event.target_id,
            payload,
            prev_hash,
            event.hash,
        ]
        head: list[Any] = [sequence, event.hash, stored_at, chain_id]
        if connection.vendor == "postgresql":
            cursor.execute(_INSERT_EVENT_AND_UPDATE_HEAD, values + head)
            event.id = cursor.fetchone()[0]
        else:
            cursor.execute(_INSERT_EVENT, values)
            event.id = cursor.fetchone()[0]
            cursor.execute(_UPDATE_HEAD, head)
    return event
