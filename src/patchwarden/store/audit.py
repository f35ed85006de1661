"""The audit log: append-only, keyed hash chain, anchored by checkpoints outside the database.

Every mutation appends one event in the *same* transaction as the change it records,
so an event exists exactly when its change committed. Appends are serialized by
updating the single ``audit_head`` row first (a row lock on PostgreSQL, the write lock
on SQLite). An event's hash is an HMAC-SHA256, under a key kept outside the database
(``AuditKey``), over the previous hash and the canonical JSON of its fields: someone
who can rewrite the tables but not read the key cannot recompute the chain after
editing, inserting or reordering events. Database triggers refuse UPDATE, DELETE and
TRUNCATE as well.

What a key cannot show is events cut off the end of the chain (with the head row
rewound to match), or a whole chain replaced. Checkpoints catch those: signed records
of the chain head (sequence number, hash, time, key id) appended to a file outside the
database; ``verify`` with checkpoints demands that the database still holds each
checkpointed event with exactly that hash.

Events written before the chain was keyed (migration 0012) carry an empty ``key_id``
and a plain sha256 hash. They are accepted only as the chain's prefix, before the
first keyed event, whose MAC then covers them; an unkeyed event after a keyed one is
tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from patchwarden.core.errors import ConfigError
from patchwarden.store.models import AuditEventRow, AuditHeadRow

if TYPE_CHECKING:  # store.db imports this module
    from patchwarden.store.db import Database

log = logging.getLogger(__name__)

GENESIS = "0" * 64

#: Where a process finds its key in ``Session.info`` (set by ``store.db.Database``).
SESSION_KEY = "audit_key"

# Every MAC made with the audit key starts with its own label, so a MAC of one kind
# (whose input partly comes from the database) can never pass for one of another.
_KEY_ID_LABEL = b"patchwarden audit key id"
_EVENT_LABEL = b"patchwarden audit event\x00"
_CHECKPOINT_LABEL = b"patchwarden audit checkpoint\x00"

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")

KEY_HINT = (
    "set PATCHWARDEN_AUDIT_KEY (64 hex digits) or put the key file at "
    "PATCHWARDEN_AUDIT_KEY_FILE (default $PATCHWARDEN_HOME/audit.key, mode 600); "
    "`patchwarden server`, `patchwarden up` and `patchwarden db upgrade` create one when "
    "there is none. Every machine writing to one database needs the same key."
)


@dataclass(frozen=True, slots=True)
class AuditKey:
    """The 256-bit secret that keys the chain and signs checkpoints.

    ``key_id`` names it in events and checkpoints without revealing it."""

    secret: bytes = field(repr=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise ConfigError("an audit key must be 32 bytes (256 bits)")
        key_id = hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]
        object.__setattr__(self, "key_id", key_id)

    @classmethod
    def generate(cls) -> AuditKey:
        """A new random key."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_text(cls, text: str, *, source: str) -> AuditKey:
        """Parse a key written as 64 hex digits; ``source`` names where it came from."""
        value = text.strip()
        if not _HEX_KEY.fullmatch(value):
            raise ConfigError(
                f"the audit key in {source} is not 64 hexadecimal digits (256 bits)",
                hint="generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'",
            )
        return cls(bytes.fromhex(value))

    def text(self) -> str:
        """The key as written in a key file or PATCHWARDEN_AUDIT_KEY."""
        return self.secret.hex()

    def event_mac(self, prev_hash: str, fields: dict[str, Any]) -> str:
        """HMAC-SHA256 over the previous hash and the canonical JSON of an event."""
        message = _EVENT_LABEL + prev_hash.encode() + _canonical(fields)
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def checkpoint_mac(self, fields: dict[str, Any]) -> str:
        """HMAC-SHA256 over the canonical JSON of a checkpoint's signed fields."""
        message = _CHECKPOINT_LABEL + _canonical(fields)
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def read_key_file(path: Path, *, create: bool = False) -> AuditKey:
    """The key stored in ``path``; a new one is written there first when ``create`` and
    the file does not exist. Refuses a file other users may read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if not create:
            raise ConfigError(f"no audit key: {path} does not exist", hint=KEY_HINT) from None
        return _create_key_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the audit key {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(
            f"the audit key {path} is accessible to other users (mode {mode & 0o777:o})",
            hint=f"chmod 600 {path}",
        )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the audit key {path}: {exc}") from exc
    return AuditKey.from_text(text, source=str(path))


def _create_key_file(path: Path) -> AuditKey:
    key = AuditKey.generate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written under a temporary name and linked into place: a process starting at
        # the same moment either finds no file or a complete one, and the first link
        # wins (the loser reads the winner's key).
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(key.text() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, path)
        except FileExistsError:
            return read_key_file(path)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the audit key {path}: {exc.strerror}", hint=KEY_HINT
        ) from exc
    log.warning(
        "created the audit key %s (key id %s): keep a copy, and give it to every machine "
        "that shares this database",
        path,
        key.key_id,
    )
    return key


def session_key(session: Session) -> AuditKey:
    """The audit key of the Database this session came from."""
    key = session.info.get(SESSION_KEY)
    if not isinstance(key, AuditKey):
        raise ConfigError("this process has no audit key: it cannot write or verify the audit log")
    return key


def _key_mismatch(chain_key_id: str, key: AuditKey) -> ConfigError:
    return ConfigError(
        f"the audit log in this database is keyed with audit key {chain_key_id}, "
        f"but this process has key {key.key_id}",
        hint="use the same audit key on every machine that shares the database "
        "(copy audit.key from the first server, or set PATCHWARDEN_AUDIT_KEY)",
    )


def check_key(session: Session) -> None:
    """Refuse to run with a key other than the one the chain is written with (servers
    call this on start, so a wrong key is found before the first change fails)."""
    key = session_key(session)
    head = session.get(AuditHeadRow, 1)
    if head is not None and head.key_id and head.key_id != key.key_id:
        raise _key_mismatch(head.key_id, key)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a user, an API token, an agent, the CLI or the system.

    ``user_id`` is the patchwarden user behind a user, token or CLI actor (None for
    agents and the system); four-eyes rules compare it, never the name.
    """

    name: str
    kind: str  # user, token, agent, cli, system
    ip: str = ""
    user_id: int | None = None


SYSTEM = Actor("patchwarden", "system")


def _canonical(fields: dict[str, Any]) -> bytes:
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS, default=str)


def legacy_event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """sha256 over the previous hash and the canonical JSON of an event: how events were
    chained before the chain was keyed (anyone can recompute it, hence the key)."""
    return hashlib.sha256(prev_hash.encode() + _canonical(fields)).hexdigest()


def _fields(row: AuditEventRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "actor_type": row.actor_type,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "ip": row.ip,
        "before": row.before,
        "after": row.after,
    }


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    now: datetime,
    target_type: str = "",
    target_id: str | int = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEventRow:
    """Append one event to the chain (in the caller's transaction), keyed with the
    session's audit key."""
    key = session_key(session)
    head = session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == 1)
        .values(seq=AuditHeadRow.seq + 1)
        .returning(AuditHeadRow.seq, AuditHeadRow.last_hash, AuditHeadRow.key_id)
    ).one()
    seq, prev_hash, chain_key_id = head
    if chain_key_id and chain_key_id != key.key_id:
        raise _key_mismatch(chain_key_id, key)  # the caller's transaction rolls back
    row = AuditEventRow(
        seq=seq,
        at=now,
        actor=actor.name,
        actor_type=actor.kind,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        ip=actor.ip,
        before=before,
        after=after,
        prev_hash=prev_hash,
        hash="",
        key_id=key.key_id,
    )
    # Round-trip JSON now so the hash covers exactly what the database will return.
    row.before = orjson.loads(_canonical(before)) if before is not None else None
    row.after = orjson.loads(_canonical(after)) if after is not None else None
    row.hash = key.event_mac(prev_hash, _fields(row))
    session.add(row)
    session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == 1)
        .values(last_hash=row.hash, key_id=key.key_id)
    )
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of checking the chain (and checkpoints, when given)."""

    ok: bool
    events: int
    problem: str = ""
    bad_seq: int | None = None
    #: Events written before the chain was keyed (plain sha256, the chain's prefix).
    legacy_events: int = 0
    #: The key id of the key the chain was verified with.
    key_id: str = ""
    #: Checkpoints found to match the database.
    checkpoints: int = 0
    #: The hash of the last event verified.
    head_hash: str = GENESIS

    def as_json(self) -> dict[str, Any]:
        """The result as the CLI (--json) and the API print it."""
        return {
            "ok": self.ok,
            "events": self.events,
            "problem": self.problem or None,
            "bad_seq": self.bad_seq,
            "legacy_events": self.legacy_events,
            "key_id": self.key_id,
            "checkpoints": self.checkpoints,
        }


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _walk(
    session: Session, key: AuditKey, *, after_seq: int = 0, after_hash: str = GENESIS
) -> VerifyResult:
    """Recompute the chain from the event after ``after_seq`` (whose hash is
    ``after_hash``) up to the head; report the first break."""
    # The head first: every event up to its seq was committed with it, and events
    # appended while we read have higher numbers (no false "events were removed").
    head = session.get(AuditHeadRow, 1)
    head_seq, head_hash = (head.seq, head.last_hash) if head is not None else (0, GENESIS)
    prev, count, legacy = after_hash, after_seq, 0
    keyed = bool(
        after_seq
        and session.scalar(select(AuditEventRow.key_id).where(AuditEventRow.seq == after_seq))
    )

    def broken(problem: str, seq: int) -> VerifyResult:
        return VerifyResult(False, count, problem, seq, legacy, key.key_id)

    for row in iter_events(session, after_seq=after_seq, up_to=head_seq):
        count += 1
        if row.seq != count:
            return broken(f"event seq {count} is missing (found {row.seq})", row.seq)
        if row.prev_hash != prev:
            return broken(f"event {row.seq} does not follow its predecessor", row.seq)
        if not row.key_id:
            if keyed:
                return broken(
                    f"event {row.seq} carries no key although earlier events do: it was "
                    "rewritten with the unkeyed hash function",
                    row.seq,
                )
            legacy += 1
            expected = legacy_event_hash(prev, _fields(row))
        elif row.key_id != key.key_id:
            return broken(
                f"event {row.seq} is signed with audit key {row.key_id}, not with this "
                f"machine's key {key.key_id}: it was forged, or this machine has the "
                "wrong key",
                row.seq,
            )
        else:
            keyed = True
            expected = key.event_mac(prev, _fields(row))
        if not _same(expected, row.hash):
            return broken(f"event {row.seq} was altered after it was written", row.seq)
        prev = row.hash
    if head_seq != count or head_hash != prev:
        return broken(
            f"the chain head records {head_seq} events but {count} remain: "
            "events were removed from the end",
            head_seq,
        )
    return VerifyResult(True, count, legacy_events=legacy, key_id=key.key_id, head_hash=prev)


# ------------------------------------------------------------------ checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed record of the chain head, kept outside the database."""

    seq: int
    hash: str
    at: str
    key_id: str
    mac: str

    def signed_fields(self) -> dict[str, Any]:
        """What the MAC covers."""
        return {"seq": self.seq, "hash": self.hash, "at": self.at, "key_id": self.key_id}

    def line(self) -> bytes:
        """The checkpoint as one JSON line of a checkpoint file."""
        return orjson.dumps({**self.signed_fields(), "mac": self.mac}) + b"\n"


def _parse_checkpoint(line: str) -> Checkpoint | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    seq, hash_, at, key_id, mac = (value.get(k) for k in ("seq", "hash", "at", "key_id", "mac"))
    if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0):
        return None
    if not (
        isinstance(hash_, str)
        and isinstance(at, str)
        and isinstance(key_id, str)
        and isinstance(mac, str)
    ):
        return None
    return Checkpoint(seq, hash_, at, key_id, mac)


def read_checkpoint_lines(path: Path) -> list[str]:
    """The non-empty lines of a checkpoint file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"checkpoint file {path} does not exist",
            hint="checkpoints are written by `patchwarden audit checkpoint` and by the server "
            "(PATCHWARDEN_AUDIT_CHECKPOINT_FILE)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read checkpoint file {path}: {exc}") from exc
    return [line for line in text.splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class _Problem:
    text: str
    bad_seq: int | None = None


def _check_checkpoints(
    session: Session, key: AuditKey, lines: Sequence[tuple[str, str]]
) -> list[Checkpoint] | _Problem:
    """The checkpoints on ``lines`` (each with the name problems give it) when every
    signature holds and the database holds every checkpointed event with its hash."""
    checkpoints: list[tuple[str, Checkpoint]] = []
    for label, line in lines:
        checkpoint = _parse_checkpoint(line)
        if checkpoint is None:
            return _Problem(f"{label} is not a checkpoint record: {line[:80]!r}")
        name = f"{label} (event {checkpoint.seq}, {checkpoint.at})"
        if checkpoint.key_id != key.key_id:
            return _Problem(
                f"{name} is signed with audit key {checkpoint.key_id}, not with this "
                f"machine's key {key.key_id}"
            )
        if not _same(key.checkpoint_mac(checkpoint.signed_fields()), checkpoint.mac):
            return _Problem(f"{name}: its signature does not match: the line was edited or forged")
        checkpoints.append((name, checkpoint))
    held = _event_hashes(session, [c.seq for _name, c in checkpoints])
    for name, checkpoint in checkpoints:
        if checkpoint.seq == 0:
            continue  # a checkpoint of the empty chain: nothing to compare
        now_hash = held.get(checkpoint.seq)
        if now_hash is None:
            last = session.scalar(select(func.max(AuditEventRow.seq))) or 0
            return _Problem(
                f"{name}: the database no longer holds event {checkpoint.seq} (its chain "
                f"ends at event {last}): events were removed and the chain head rewound",
                checkpoint.seq,
            )
        if not _same(now_hash, checkpoint.hash):
            return _Problem(
                f"{name}: event {checkpoint.seq} now has hash {now_hash[:16]}…, the "
                f"checkpoint recorded {checkpoint.hash[:16]}…: the chain was rewritten",
                checkpoint.seq,
            )
    return [c for _name, c in checkpoints]


def _event_hashes(session: Session, seqs: Sequence[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    unique = sorted(set(seqs))
    for start in range(0, len(unique), 500):
        rows = session.execute(
            select(AuditEventRow.seq, AuditEventRow.hash).where(
                AuditEventRow.seq.in_(unique[start : start + 500])
            )
        )
        found.update((seq, hash_) for seq, hash_ in rows)
    return found


def verify(session: Session, *, checkpoints: Sequence[str] | None = None) -> VerifyResult:
    """Recompute the chain from the first event and report the first break; then check
    every checkpoint line given (signature, and that the database still holds the
    checkpointed event with that hash)."""
    key = session_key(session)
    chain = _walk(session, key)
    if not chain.ok or checkpoints is None:
        return chain
    named = [(f"checkpoint {n}", line) for n, line in enumerate(checkpoints, start=1)]
    checked = _check_checkpoints(session, key, named)
    if isinstance(checked, _Problem):
        return replace(chain, ok=False, problem=checked.text, bad_seq=checked.bad_seq)
    return replace(chain, checkpoints=len(checked))


def _last_line(path: Path) -> str | None:
    """The last line of a checkpoint file (read from its end: the file only grows)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 4096))
            tail = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint file {path}: {exc.strerror}") from exc
    lines = [line for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else None


@dataclass(frozen=True, slots=True)
class CheckpointOutcome:
    """What ``write_checkpoint`` did: the checkpoint written (None when the chain did not
    verify, or nothing was appended since the last checkpoint) and the verification."""

    written: Checkpoint | None
    verified: VerifyResult


def write_checkpoint(session: Session, path: Path, *, now: datetime) -> CheckpointOutcome:
    """Verify the chain since the last checkpoint in ``path`` (all of it when there is
    none), then append a signed checkpoint of the head. Nothing is written when the
    chain does not verify, or when it has not grown since the last checkpoint."""
    key = session_key(session)
    after_seq, after_hash = 0, GENESIS
    last_line = _last_line(path)
    if last_line is not None:
        checked = _check_checkpoints(session, key, [(f"the last checkpoint in {path}", last_line)])
        if isinstance(checked, _Problem):
            failed = VerifyResult(False, 0, checked.text, checked.bad_seq, key_id=key.key_id)
            return CheckpointOutcome(None, failed)
        after_seq, after_hash = checked[0].seq, checked[0].hash
    verified = _walk(session, key, after_seq=after_seq, after_hash=after_hash)
    if not verified.ok or verified.events in (0, after_seq):
        return CheckpointOutcome(None, verified)
    fields: dict[str, Any] = {
        "seq": verified.events,
        "hash": verified.head_hash,
        "at": now.isoformat(),
        "key_id": key.key_id,
    }
    checkpoint = Checkpoint(**fields, mac=key.checkpoint_mac(fields))
    _append(path, checkpoint.line())
    return CheckpointOutcome(checkpoint, verified)


def _append(path: Path, line: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one write of one short line: appends never interleave
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"cannot write checkpoint file {path}: {exc.strerror}",
            hint="set PATCHWARDEN_AUDIT_CHECKPOINT_FILE or pass --file to a writable place",
        ) from exc


class PeriodicCheckpoints:
    """Write a checkpoint every ``every`` (called by the elected orchestrator after each
    tick; a failure is logged, never raised, so the orchestrator goes on)."""

    def __init__(self, database: Database, path: Path, every: timedelta) -> None:
        self.database = database
        self.path = path
        self.every = every
        self._last: datetime | None = None

    def __call__(self, now: datetime) -> None:
        if self._last is not None and now - self._last < self.every:
            return
        self._last = now
        try:
            with self.database.session() as session:
                outcome = write_checkpoint(session, self.path, now=now)
        except Exception:  # a full disk or a database blip must not stop the orchestrator
            log.exception("writing an audit checkpoint to %s failed", self.path)
            return
        if not outcome.verified.ok:
            log.error(
                "audit log verification failed, no checkpoint written to %s: %s",
                self.path,
                outcome.verified.problem,
            )


def event_json(row: AuditEventRow) -> dict[str, Any]:
    """One event as exported (JSON lines) and served by the API."""
    return {**_fields(row), "key_id": row.key_id, "prev_hash": row.prev_hash, "hash": row.hash}


def iter_events(
    session: Session, *, after_seq: int = 0, up_to: int | None = None, batch: int = 1000
) -> Iterator[AuditEventRow]:
    """Every event in order (after ``after_seq``, up to ``up_to``), fetched in batches."""
    last = after_seq
    while True:
        query = select(AuditEventRow).where(AuditEventRow.seq > last)
        if up_to is not None:
            query = query.where(AuditEventRow.seq <= up_to)
        rows = list(session.scalars(query.order_by(AuditEventRow.seq).limit(batch)))
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
