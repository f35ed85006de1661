"""The agent's cycle: deliver the spool, collect, check in, upload when asked, run jobs.

One cycle (``Agent.run_once``), under the state directory's lock:

1. send the spooled reports, oldest first (each was written to disk before any attempt,
   so a crash at any point leaves it there to be sent next time);
2. collect the inventory and its content hash;
3. check in (liveness, hash, reboot-required, uptime, spool size) — skipped when step 1
   already found the server unreachable;
4. when the server asks for the inventory, spool it and send it (unless step 1 has just
   delivered that same inventory: the server may still be processing it); when the
   server could not be reached and the inventory differs from what the server last
   acknowledged, spool it for the next contact;
5. after a check-in, claim the host's released jobs (``GET /jobs``) and run them one
   after the other with ``jobs.execute_job``, renewing their leases from a background
   thread; each result is spooled, then sent (``POST /jobs/{id}/result``);
6. when a job ran and the inventory changed, collect and check in again, so the
   server sees the new versions now rather than an interval later.

The next cycle comes after the server's ``next_checkin_seconds`` (the configured
``interval`` until the server has answered; an exponential back-off capped at the
interval while it is unreachable), spread by ``± jitter``.

A 401 (or a 404 on check-in) means the server no longer knows this credential: the
agent remembers that, stops contacting the server and asks to be re-enrolled.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from patchwarden.agent import AGENT_VERSION, PROTOCOL_VERSION
from patchwarden.agent.backends.script import Downloader
from patchwarden.agent.client import (
    INVENTORY_HASH_HEADER,
    INVENTORY_PATH,
    ServerClient,
    job_path,
    job_payload,
    json_body,
)
from patchwarden.agent.config import AgentConfig
from patchwarden.agent.errors import (
    REENROLL_HINT,
    CredentialRevoked,
    NotEnrolled,
    ServerRefused,
    ServerUnreachable,
)
from patchwarden.agent.host import (
    MACHINE_ID_PATHS,
    collect_inventory,
    fully_qualified_name,
    gzip_document,
    inventory_document,
    machine_id,
    uptime_seconds,
)
from patchwarden.agent.jobs import ExecutionSettings, execute_job
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
JOB_RESULT_KIND = "job-result"
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
    ``jobs`` lists the jobs run in the cycle: ``job_id``, ``attempt``, ``kind``,
    ``status`` and ``error`` of each.
    """

    checked_in: bool
    uploaded: bool
    spooled: int
    next_interval: float
    delivered: int = 0
    inventory_hash: str = ""
    error: str = ""
    jobs: tuple[dict[str, Any], ...] = ()


@dataclass
class _Contact:
    """What one check-in exchange (steps 2-4 of the cycle) did."""

    answer: dict[str, Any] | None
    failure: ServerUnreachable | None
    content_hash: str
    uploaded: bool = False
    delivered: int = 0
    error: str = ""
    problem: str = ""


class _Heartbeat:
    """Renews the leases of claimed jobs every ``every`` seconds from a thread.

    A claimed job waiting for its turn is renewed as well as the one running. A job the
    server no longer counts as running here (409, 404) is dropped and logged; an
    unreachable server is retried at the next beat.
    """

    def __init__(self, client: ServerClient, credential: str, every: float) -> None:
        self.client = client
        self.credential = credential
        self.every = every
        self._jobs: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-heartbeat", daemon=True)

    def hold(self, job_id: int, attempt: int) -> None:
        """Renew this job's lease until ``drop``."""
        with self._lock:
            self._jobs[job_id] = attempt

    def drop(self, job_id: int) -> None:
        """Stop renewing a job (its result is in the spool)."""
        with self._lock:
            self._jobs.pop(job_id, None)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        # A beat in flight ends within the request timeout; the thread is a daemon.
        self._thread.join(timeout=self.client.timeout + 1)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                held = list(self._jobs.items())
            for job_id, attempt in held:
                try:
                    self.client.heartbeat(self.credential, job_id, attempt)
                except ServerUnreachable as exc:
                    log.warning("job %d: lease not renewed (%s); retrying", job_id, exc)
                except ServerRefused as exc:
                    log.warning(
                        "job %d attempt %d: the server refused the heartbeat (%s); "
                        "the job finishes and reports anyway",
                        job_id,
                        attempt,
                        exc,
                    )
                    self.drop(job_id)


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
        #: How jobs run on this host (the downloader is added per cycle). Built here so a
        #: bad hook or check command name stops the agent at start (``ConfigError``).
        self.job_settings = ExecutionSettings(
            journal_dir=self.state_dir.journal_path,
            root=config.package_root,
            hooks=config.hooks,
            check_commands=config.check_commands,
            allow_script_packages=config.allow_script_packages,
            package_timeout=config.package_timeout,
            hook_timeout=config.hook_timeout,
            check_retry_delay=config.check_retry_delay,
        )
        #: Why ``run_forever`` stopped on its own (``None`` while it runs or when stopped).
        self.halted: PatchwardenError | None = None

    # ------------------------------------------------------------------ enrollment

    @property
    def enrolled(self) -> bool:
        """Whether the agent holds a credential the server has not refused."""
        return bool(self.state_dir.read_credential()) and not self.state_dir.load().revoked

    def enroll(self, token: str, hostname: str | None = None, *, replace: bool = False) -> None:
        """Exchange an enrollment token for this host's credential and store it.

        Raises ``AuthenticationRequired`` with the server's reason when the token is
        invalid, expired, revoked or used up; ``ServerUnreachable`` when the server
        cannot be reached; ``ServerRefused`` (409) when this system's agent is live on
        the server and the token is not a re-enroll token for it. Spooled reports are
        kept and go out with the new credential.

        A state directory holding a credential the server has not refused is not
        enrolled again unless ``replace`` (``ConfigError``): the credential would be
        lost and the agent using it would stop — a second agent on one host needs a
        state directory of its own.
        """
        name = hostname or socket.gethostname()
        with self.state_dir.lock():
            state = self.state_dir.load()
            if not replace and self.state_dir.read_credential() and not state.revoked:
                where = f" on {state.server_url}" if state.server_url else ""
                raise ConfigError(
                    f"the state directory {self.state_dir.path} already holds the live "
                    f"credential of asset {state.asset_id or '?'}{where}; nothing was changed",
                    hint="a second agent on this host needs a state directory of its own "
                    "(--state-dir, or state_dir in its configuration); to enroll this agent "
                    "again, pass --replace",
                )
            server_url = self.config.server_url or state.server_url
            client = self._client(server_url)
            payload = {
                "protocol": PROTOCOL_VERSION,
                "enrollment_token": token.strip(),
                "hostname": name,
                "fqdn": fully_qualified_name(name),
                # The managed system's id (collect_root: e.g. /host seen from a container).
                "machine_id": machine_id(
                    tuple(self.config.collect_root / p.relative_to("/") for p in MACHINE_ID_PATHS)
                ),
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
        # Accepted (202) moments ago: the server may still be processing it, and then
        # asks for it again; that is no reason to send it twice.
        just_accepted = {r.content_hash for r in sent if r.kind == INVENTORY_KIND}
        contact = self._contact(
            client,
            credential,
            state,
            self._collect(),
            failure=failure,
            just_accepted=just_accepted,
        )
        contacts = [contact]
        delivered = len(sent) + contact.delivered
        jobs: list[dict[str, Any]] = []
        if contact.answer is not None:
            jobs, sent_now, job_failure = self._run_jobs(client, credential, state)
            delivered += sent_now
            collected = self._collect() if jobs else None
            current = collected[0].content_hash() if collected and collected[0] else ""
            if collected is not None and current != contact.content_hash:
                # The jobs changed the host: report it now, not an interval later.
                again = self._contact(
                    client,
                    credential,
                    state,
                    collected,
                    failure=job_failure,
                    just_accepted=just_accepted,
                )
                contacts.append(again)
                delivered += again.delivered
            elif job_failure is not None:
                # Reached at first, lost during the jobs: back off like any failure.
                state.failures += 1
                lost = _Contact(None, job_failure, contact.content_hash, error=str(job_failure))
                contacts.append(lost)
        last = contacts[-1]
        errors = [text for c in contacts for text in (c.problem, c.error)]
        state.last_error = "; ".join(dict.fromkeys(text for text in errors if text))
        result = CycleResult(
            checked_in=contact.answer is not None,
            uploaded=any(c.uploaded for c in contacts),
            spooled=len(self.spool.pending()),
            next_interval=jittered(
                self._next_base(state, last.answer, last.failure), self.config.jitter
            ),
            delivered=delivered,
            inventory_hash=last.content_hash,
            error="; ".join(dict.fromkeys(c.error for c in contacts if c.error)),
            jobs=tuple(jobs),
        )
        self._log_result(result)
        return result

    def _contact(
        self,
        client: ServerClient,
        credential: str,
        state: AgentState,
        collected: tuple[Inventory | None, bytes | None, str],
        *,
        failure: ServerUnreachable | None,
        just_accepted: set[str],
    ) -> _Contact:
        """Check in with a collected inventory and upload it when the server asks
        (steps 3-4); with ``failure`` (the server is known to be unreachable) only spool
        a changed inventory for the next contact."""
        inventory, document, problem = collected
        content_hash = inventory.content_hash() if inventory is not None else ""
        contact = _Contact(None, failure, content_hash, problem=problem)
        contact.error = str(failure) if failure is not None else ""
        if failure is None:
            try:
                payload = self._checkin_payload(inventory, content_hash)
                contact.answer = client.checkin(credential, payload)
            except ServerUnreachable as exc:
                contact.failure, contact.error = exc, str(exc)
            except ServerRefused as exc:
                if exc.status in (401, 404):
                    raise self._revoked(state, exc) from None
                contact.error = str(exc)
        answer = contact.answer
        if answer is not None:
            state.last_checkin_at = utc_now().isoformat()
            state.failures = 0
            refused = answer.get("inventory_error")
            if document is not None and isinstance(refused, str) and refused:
                # The server stored this inventory and could not process it: sending it
                # again would fail the same way.
                state.rejected_hash = content_hash
                contact.error = f"the server could not process inventory {content_hash[:12]}"
                log.error("%s: %s", contact.error, refused)
            elif document is not None and not answer["upload_inventory"]:
                state.acknowledged_hash = content_hash
            elif content_hash in just_accepted:
                log.info(
                    "inventory %s was accepted in this cycle; not sent again", content_hash[:12]
                )
            elif document is not None:
                contact.uploaded, contact.delivered, upload_failure = self._upload(
                    client, credential, state, document, content_hash
                )
                if upload_failure is not None:
                    contact.error = str(upload_failure)
        elif contact.failure is not None:
            state.failures += 1
            # Keep a changed inventory for the next contact (once; a newer one replaces it).
            known = (state.acknowledged_hash, state.rejected_hash)
            if (
                document is not None
                and content_hash not in known
                and not self.spool.holds(INVENTORY_KIND, content_hash)
            ):
                self._spool_inventory(state, document, content_hash)
        return contact

    # ------------------------------------------------------------------------ jobs

    def _run_jobs(
        self, client: ServerClient, credential: str, state: AgentState
    ) -> tuple[list[dict[str, Any]], int, ServerUnreachable | None]:
        """Claim the released jobs and run them one at a time (step 5).

        Returns what ran, how many reports were delivered, and the failure that kept
        a result in the spool, if one did. Jobs run even when the server goes away
        meanwhile: they were claimed, and their results wait in the spool.
        """
        try:
            claimed = client.claim_jobs(credential)
        except ServerUnreachable as exc:
            log.warning("could not ask for jobs: %s", exc)
            return [], 0, exc
        except ServerRefused as exc:
            if exc.status == 401:
                raise self._revoked(state, exc) from None
            log.error("the server refused to hand out jobs: %s", exc)
            return [], 0, None
        runnable = []
        for wire in claimed:
            identity = _job_identity(wire)
            if identity is None:
                log.error("ignoring a job without a positive integer job_id and attempt")
            elif self.spool.holds(JOB_RESULT_KIND, _result_key(*identity)):
                log.info("job %d attempt %d ran already; its result waits in the spool", *identity)
            else:
                runnable.append((identity, wire))
        ran: list[dict[str, Any]] = []
        delivered = 0
        failure: ServerUnreachable | None = None
        if not runnable:
            return ran, delivered, failure
        # Its own client: the beats go out from another thread while the job runs.
        beats = self._client(client.base_url)
        with _Heartbeat(beats, credential, self.config.job_lease / 3) as heartbeat:
            for (job_id, attempt), _wire in runnable:
                heartbeat.hold(job_id, attempt)
            for (job_id, attempt), wire in runnable:
                summary = self._run_job(
                    client, credential, state, wire, job_id=job_id, attempt=attempt
                )
                ran.append(summary)
                heartbeat.drop(job_id)
                sent, failure = self._deliver(client, credential, state)
                delivered += len(sent)
                if failure is not None:
                    log.warning(
                        "job %d attempt %d: result kept in the spool until the server is back (%s)",
                        job_id,
                        attempt,
                        failure,
                    )
        return ran, delivered, failure

    def _run_job(
        self,
        client: ServerClient,
        credential: str,
        state: AgentState,
        wire: dict[str, Any],
        *,
        job_id: int,
        attempt: int,
    ) -> dict[str, Any]:
        """Execute one job and put its result in the spool; returns its summary."""
        kind = str(wire.get("kind", ""))
        log.info("job %d attempt %d (%s, %s): starting", job_id, attempt, kind, wire.get("backend"))
        settings = dataclasses.replace(
            self.job_settings, downloader=self._downloader(client, credential)
        )
        try:
            result = execute_job(job_payload(wire, client.base_url), settings)
        except Exception as exc:  # the server must hear about it, whatever went wrong
            log.exception("job %d attempt %d: the agent failed", job_id, attempt)
            result = {
                "job_id": job_id,
                "attempt": attempt,
                "status": "failed",
                "steps": [],
                "error": f"agent error: {type(exc).__name__}: {exc}",
            }
        status = str(result["status"])
        body = {"protocol": PROTOCOL_VERSION, "attempt": attempt, "status": status}
        self.spool.add(
            JOB_RESULT_KIND,
            "POST",
            job_path(job_id, "result"),
            json_body({**body, "result": result}),
            content_hash=_result_key(job_id, attempt),
        )
        state.last_job = f"job {job_id} attempt {attempt} ({kind}): {status}"
        state.last_job_at = utc_now().isoformat()
        error = result.get("error")
        if status == "succeeded":
            log.info("job %d attempt %d: succeeded", job_id, attempt)
        else:
            log.warning("job %d attempt %d: %s (%s)", job_id, attempt, status, error)
        return {
            "job_id": job_id,
            "attempt": attempt,
            "kind": kind,
            "status": status,
            "error": error,
        }

    def _downloader(self, client: ServerClient, credential: str) -> Downloader:
        """Script artifacts through this agent's authenticated client."""
        limit = self.job_settings.max_artifact_bytes

        def download(url: str) -> bytes:
            return client.download_artifact(url, credential, max_bytes=limit)

        return download

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
                    extra_headers=(
                        {INVENTORY_HASH_HEADER: report.content_hash}
                        if report.kind == INVENTORY_KIND and report.content_hash
                        else None
                    ),
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
        if result.jobs:
            summary = ", ".join(f"{j['job_id']}: {j['status']}" for j in result.jobs)
            log.info("ran %d job(s): %s", len(result.jobs), summary)
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
            "last_job": state.last_job or None,
            "last_job_at": state.last_job_at or None,
            "job_results_waiting": len(self.spool.pending(JOB_RESULT_KIND)),
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


def _job_identity(wire: dict[str, Any]) -> tuple[int, int] | None:
    """``(job_id, attempt)`` of a job as sent, or ``None`` when it has no usable ones."""
    job_id, attempt = wire.get("job_id"), wire.get("attempt")
    if type(job_id) is int and type(attempt) is int and job_id > 0 and attempt > 0:
        return job_id, attempt
    return None


def _result_key(job_id: int, attempt: int) -> str:
    """What a spooled job result is known by: the server's idempotency key."""
    return f"{job_id}:{attempt}"


def _server_interval(value: object) -> int | None:
    """A server-given interval clamped to sane bounds (``None`` when absent)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return min(max(value, MIN_INTERVAL), MAX_INTERVAL)


_RANDOM = random.SystemRandom()
