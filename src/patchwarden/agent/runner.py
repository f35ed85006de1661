"""The agent's cycle: deliver the spool, collect, check in, upload when asked.

One cycle (``Agent.run_once``), under the state directory's lock:

1. send the spooled reports, oldest first (each was written to disk before any attempt,
   so a crash at any point leaves it there to be sent next time);
2. collect the inventory and its content hash;
3. check in (liveness, hash, reboot-required, uptime, spool size) — skipped when step 1
   already found the server unreachable;
4. when the server asks for the inventory, spool it and send it (unless step 1 has just
   delivered that same inventory: the server may still be processing it); when the
   server could not be reached and the inventory differs from what the server last
   acknowledged, spool it for the next contact.

The next cycle comes after the server's ``next_checkin_seconds`` (the configured
``interval`` until the server has answered; an exponential back-off capped at the
interval while it is unreachable), spread by ``± jitter``.

A 401 (or a 404 on check-in) means the server no longer knows this credential: the
agent remembers that, stops contacting the server and asks to be re-enrolled.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
from dataclasses import dataclass
from typing import Any

from patchwarden.agent import AGENT_VERSION, PROTOCOL_VERSION
from patchwarden.agent.client import INVENTORY_PATH, ServerClient
from patchwarden.agent.config import AgentConfig
from patchwarden.agent.errors import (
    REENROLL_HINT,
    CredentialRevoked,
    NotEnrolled,
    ServerRefused,
    ServerUnreachable,
)
from patchwarden.agent.host import (
    collect_inventory,
    fully_qualified_name,
    gzip_document,
    inventory_document,
    machine_id,
    uptime_seconds,
)
from patchwarden.agent.spool import Report, Spool, SpoolCorrupt
from patchwarden.agent.state import AgentState, StateDir, utc_now
from patchwarden.core.errors import (
    AuthenticationRequired,
    ConfigError,
    InventoryError,
    PatchwardenError,
)
from patchwarden.core.model import Inventory

log = logging.getLogger("patchwarden.agent")

INVENTORY_KIND = "inventory"
MIN_INTERVAL = 5
MAX_INTERVAL = 86400
RETRY_BASE = 30


@dataclass(frozen=True)
class CycleResult:
    """What one cycle did.

    ``spooled`` counts the reports still waiting on disk after the cycle;
    ``delivered`` those sent during it (the fresh upload included); ``next_interval``
    is the jittered wait, in seconds, before the next cycle; ``error`` says why the
    server was not reached or refused the check-in (``""`` when all went well).
    """

    checked_in: bool
    uploaded: bool
    spooled: int
    next_interval: float
    delivered: int = 0
    inventory_hash: str = ""
    error: str = ""


class Agent:
    """The host agent for one configuration and state directory."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.state_dir = StateDir(config.state_dir)
        self.spool = Spool(
            self.state_dir.spool_path,
            max_reports=config.spool_max_reports,
            max_bytes=config.spool_max_bytes,
        )
        #: Why ``run_forever`` stopped on its own (``None`` while it runs or when stopped).
        self.halted: PatchwardenError | None = None

    # ------------------------------------------------------------------ enrollment

    @property
    def enrolled(self) -> bool:
        """Whether the agent holds a credential the server has not refused."""
        return bool(self.state_dir.read_credential()) and not self.state_dir.load().revoked

    def enroll(self, token: str, hostname: str | None = None) -> None:
        """Exchange an enrollment token for this host's credential and store it.

        Raises ``AuthenticationRequired`` with the server's reason when the token is
        invalid, expired, revoked or used up; ``ServerUnreachable`` when the server
        cannot be reached. Spooled reports are kept and go out with the new credential.
        """
        name = hostname or socket.gethostname()
        with self.state_dir.lock():
            state = self.state_dir.load()
            server_url = self.config.server_url or state.server_url
            client = self._client(server_url)
            payload = {
                "protocol": PROTOCOL_VERSION,
                "enrollment_token": token.strip(),
                "hostname": name,
                "fqdn": fully_qualified_name(name),
                "machine_id": machine_id(),
                "agent_version": AGENT_VERSION,
            }
            try:
                answer = client.enroll(payload)
            except ServerRefused as exc:
                if exc.status in (401, 403):
                    raise AuthenticationRequired(
                        f"enrollment refused: {exc.server_message}", hint=exc.hint
                    ) from None
                raise
            self.state_dir.write_credential(str(answer["credential"]))
            fresh = AgentState(
                server_url=client.base_url,
                asset_id=int(answer["asset_id"]),
                enrolled_at=utc_now().isoformat(),
                next_checkin_seconds=_server_interval(answer.get("checkin_interval")) or 0,
            )
            self.state_dir.save(fresh)
        log.info("enrolled with %s as asset %d", client.base_url, fresh.asset_id)

    # ----------------------------------------------------------------------- cycle

    def run_once(self) -> CycleResult:
        """Run one cycle (see the module docstring).

        Raises ``NotEnrolled`` without a credential and ``CredentialRevoked`` when the
        server refuses it (now or in an earlier cycle). An unreachable server is not an
        error: the result says so and what could not be sent is in the spool.
        """
        with self.state_dir.lock():
            state = self.state_dir.load()
            credential = self.state_dir.read_credential()
            if not credential:
                raise NotEnrolled(str(self.state_dir.path))
            if state.revoked:
                raise CredentialRevoked(
                    f"the server refused this agent's credential: {state.revoked}"
                )
            state.last_attempt_at = utc_now().isoformat()
            try:
                return self._cycle(state, credential)
            finally:
                self.state_dir.save(state)

    def _cycle(self, state: AgentState, credential: str) -> CycleResult:
        client = self._client(self.config.server_url or state.server_url)
        sent, failure = self._deliver(client, credential, state)
        delivered = len(sent)
        # Accepted (202) moments ago: the server may still be processing it, and then
        # asks for it again; that is no reason to send it twice.
        just_accepted = {r.content_hash for r in sent if r.kind == INVENTORY_KIND}
        inventory, document, problem = self._collect()
        content_hash = inventory.content_hash() if inventory is not None else ""
        answer: dict[str, Any] | None = None
        error = str(failure) if failure is not None else ""
        if failure is None:
            try:
                answer = client.checkin(credential, self._checkin_payload(inventory, content_hash))
            except ServerUnreachable as exc:
                failure, error = exc, str(exc)
            except ServerRefused as exc:
                if exc.status in (401, 404):
                    raise self._revoked(state, exc) from None
                error = str(exc)
        uploaded = False
        if answer is not None:
            state.last_checkin_at = utc_now().isoformat()
            state.failures = 0
            if document is not None and not answer["upload_inventory"]:
                state.acknowledged_hash = content_hash
            elif content_hash in just_accepted:
                log.info(
                    "inventory %s was accepted in this cycle; not sent again", content_hash[:12]
                )
            elif document is not None:
                uploaded, sent_now, upload_failure = self._upload(
                    client, credential, state, document, content_hash
                )
                delivered += sent_now
                error = str(upload_failure) if upload_failure is not None else error
        elif failure is not None:
            state.failures += 1
            # Keep a changed inventory for the next contact (once; a newer one replaces it).
            known = (state.acknowledged_hash, state.rejected_hash)
            if (
                document is not None
                and content_hash not in known
                and not self.spool.holds(INVENTORY_KIND, content_hash)
            ):
                self._spool_inventory(state, document, content_hash)
        state.last_error = "; ".join(text for text in (problem, error) if text)
        result = CycleResult(
            checked_in=answer is not None,
            uploaded=uploaded,
            spooled=len(self.spool.pending()),
            next_interval=jittered(self._next_base(state, answer, failure), self.config.jitter),
            delivered=delivered,
            inventory_hash=content_hash,
            error=error,
        )
        self._log_result(result)
        return result

    def _upload(
        self,
        client: ServerClient,
        credential: str,
        state: AgentState,
        document: bytes,
        content_hash: str,
    ) -> tuple[bool, int, ServerUnreachable | None]:
        """Send the inventory the server asked for, through the spool. Returns whether it
        arrived, how many reports were delivered, and why delivery stopped, if it did."""
        if content_hash == state.rejected_hash:
            log.warning(
                "the server asks for inventory %s, which it rejected before; not sent again "
                "until it changes (see %s)",
                content_hash[:12],
                self.spool.rejected_path,
            )
            return False, 0, None
        report = self._spool_inventory(state, document, content_hash)
        if report is None:
            return False, 0, None
        sent, failure = self._deliver(client, credential, state)
        return report.name in {r.name for r in sent}, len(sent), failure

    def _checkin_payload(self, inventory: Inventory | None, content_hash: str) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "inventory_hash": content_hash,
            "reboot_required": inventory.reboot_required if inventory is not None else None,
            "uptime_seconds": uptime_seconds(),
            "agent_version": AGENT_VERSION,
            "spooled": len(self.spool.pending()),
        }

    def _collect(self) -> tuple[Inventory | None, bytes | None, str]:
        """The inventory, its gzip JSON document and ``""``; or ``(None, None, problem)``
        when collection failed (the check-in still goes out: liveness does not depend on
        the package database)."""
        try:
            inventory = collect_inventory(self.config)
            return inventory, gzip_document(inventory_document(inventory)), ""
        except InventoryError as exc:
            log.error("inventory collection failed: %s", exc)
            return None, None, f"inventory: {exc}"

    def _spool_inventory(
        self, state: AgentState, document: bytes, content_hash: str
    ) -> Report | None:
        """Put an inventory in the spool, unless it is over the upload limit (then it
        is kept in rejected/ and remembered as rejected)."""
        if len(document) > self.config.max_upload_bytes:
            log.error(
                "inventory %s is %d bytes compressed, over max_upload_bytes %d; not sent",
                content_hash[:12],
                len(document),
                self.config.max_upload_bytes,
            )
            report = self.spool.add(
                INVENTORY_KIND,
                "PUT",
                INVENTORY_PATH,
                document,
                content_hash=content_hash,
                content_encoding="gzip",
            )
            self.spool.reject(
                report.name,
                {
                    "status": None,
                    "error": f"{len(document)} bytes compressed exceed max_upload_bytes "
                    f"({self.config.max_upload_bytes})",
                    "type": "LocalLimit",
                },
            )
            state.rejected_hash = content_hash
            return None
        return self.spool.add(
            INVENTORY_KIND,
            "PUT",
            INVENTORY_PATH,
            document,
            content_encoding="gzip",
            content_hash=content_hash,
            supersede=True,
        )

    def _deliver(
        self, client: ServerClient, credential: str, state: AgentState
    ) -> tuple[list[Report], ServerUnreachable | None]:
        """Send spooled reports oldest first until done or the server is unreachable;
        returns the reports delivered and the failure that stopped the delivery."""
        delivered: list[Report] = []
        for name in self.spool.pending():
            try:
                report = self.spool.read(name)
            except (SpoolCorrupt, OSError) as exc:
                log.error("spool: %s", exc)
                self.spool.reject(name, {"status": None, "error": str(exc), "type": "SpoolCorrupt"})
                continue
            try:
                client.request(
                    report.method,
                    report.path,
                    report.body,
                    credential=credential,
                    content_type=report.content_type,
                    content_encoding=report.content_encoding,
                )
            except ServerUnreachable as exc:
                return delivered, exc
            except ServerRefused as exc:
                if exc.status == 401:
                    raise self._revoked(state, exc) from None
                where = self.spool.reject(
                    name,
                    {
                        "status": exc.status,
                        "error": exc.server_message,
                        "hint": exc.hint,
                        "type": exc.error_type,
                    },
                )
                log.error(
                    "the server rejected %s report %s: %s (kept in %s)",
                    report.kind,
                    name,
                    exc,
                    where,
                )
                if report.kind == INVENTORY_KIND:
                    state.rejected_hash = report.content_hash
                continue
            self.spool.remove(name)
            delivered.append(report)
            if report.kind == INVENTORY_KIND:
                state.acknowledged_hash = report.content_hash
                state.last_upload_at = utc_now().isoformat()
            log.info("delivered %s report %s", report.kind, name)
        return delivered, None

    def _revoked(self, state: AgentState, exc: ServerRefused) -> CredentialRevoked:
        state.revoked = exc.server_message
        state.last_error = str(exc)
        log.error(
            "the server refused this agent's credential (%s); %s", exc.server_message, REENROLL_HINT
        )
        return CredentialRevoked(
            f"the server refused this agent's credential: {exc.server_message}"
        )

    def _next_base(
        self,
        state: AgentState,
        answer: dict[str, Any] | None,
        failure: ServerUnreachable | None,
    ) -> float:
        if answer is not None:
            state.next_checkin_seconds = _server_interval(answer["next_checkin_seconds"]) or 0
        if failure is not None and answer is None:
            if failure.retry_after is not None:
                return min(max(failure.retry_after, MIN_INTERVAL), MAX_INTERVAL)
            backoff = RETRY_BASE * 2 ** min(max(state.failures - 1, 0), 16)
            return float(min(self.config.interval, backoff))
        return float(state.next_checkin_seconds or self.config.interval)

    def _log_result(self, result: CycleResult) -> None:
        if result.checked_in:
            log.info(
                "checked in; %s; %d report(s) delivered, %d waiting; next in %.0f s",
                "inventory uploaded" if result.uploaded else "no upload needed",
                result.delivered,
                result.spooled,
                result.next_interval,
            )
        else:
            log.warning(
                "no check-in (%s); %d report(s) waiting in the spool; retry in %.0f s",
                result.error,
                result.spooled,
                result.next_interval,
            )

    def _client(self, server_url: str) -> ServerClient:
        if not server_url:
            raise ConfigError(
                "no server URL: set server_url in the agent configuration or enroll with --server"
            )
        return ServerClient(
            server_url,
            timeout=self.config.timeout,
            ca_file=self.config.ca_file,
            allow_insecure_http=self.config.allow_insecure_http,
        )

    # ------------------------------------------------------------------- run, status

    def run_forever(self, stop: threading.Event) -> None:
        """Run cycles until ``stop`` is set.

        Returns early — with the reason logged and kept in ``halted`` — when the agent
        cannot go on without an administrator: not enrolled, credential refused, or an
        unusable configuration. Other failures are logged and retried next interval.
        """
        while not stop.is_set():
            try:
                wait = self.run_once().next_interval
            except (NotEnrolled, CredentialRevoked, ConfigError) as exc:
                self.halted = exc
                log.error("agent stopped: %s", exc)
                return
            except (PatchwardenError, OSError) as exc:
                log.error("agent cycle failed: %s", exc)
                wait = jittered(self.config.interval, self.config.jitter)
            stop.wait(wait)

    def inventory(self) -> Inventory:
        """What the agent would report now (collected fresh)."""
        return collect_inventory(self.config)

    def status(self) -> dict[str, Any]:
        """What the agent knows about itself (never the credential)."""
        state = self.state_dir.load()
        has_credential = bool(self.state_dir.read_credential())
        return {
            "agent_version": AGENT_VERSION,
            "protocol": PROTOCOL_VERSION,
            "state_dir": str(self.state_dir.path),
            "server_url": self.config.server_url or state.server_url,
            "enrolled": has_credential and not state.revoked,
            "asset_id": state.asset_id or None,
            "enrolled_at": state.enrolled_at or None,
            "revoked": state.revoked or None,
            "last_attempt_at": state.last_attempt_at or None,
            "last_checkin_at": state.last_checkin_at or None,
            "last_upload_at": state.last_upload_at or None,
            "last_error": state.last_error or None,
            "consecutive_failures": state.failures,
            "next_checkin_seconds": state.next_checkin_seconds or self.config.interval,
            "inventory_hash": state.acknowledged_hash or None,
            "spool": {
                "reports": len(self.spool.pending()),
                "bytes": self.spool.size(),
                "rejected": len(self.spool.rejected()),
            },
        }


def jittered(seconds: float, jitter: float, rng: random.Random | None = None) -> float:
    """``seconds`` spread uniformly by ``± jitter`` (a fraction), never below the minimum."""
    spread = (rng or _RANDOM).uniform(-jitter, jitter)
    return max(float(MIN_INTERVAL), seconds * (1.0 + spread))


def _server_interval(value: object) -> int | None:
    """A server-given interval clamped to sane bounds (``None`` when absent)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return min(max(value, MIN_INTERVAL), MAX_INTERVAL)


_RANDOM = random.SystemRandom()
