"""Server-rendered pages: sign-in, fleet, assets, groups, rollouts, approvals, exceptions.

Pages are plain HTML forms and links (no JavaScript needed). Each page route declares
its permission exactly like the API routes do; the data comes from the same service and
store functions the API uses, so a page never shows something the API would not.

Form posts that change something follow post/redirect/get: the service does the work,
and the browser is sent back (303) to the page it came from with a one-time flash
message — the outcome, or the service's refusal (four eyes, wrong state) in its words.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patchwarden import __version__
from patchwarden.core.errors import (
    AuthenticationRequired,
    NotFound,
    PatchwardenError,
    RateLimited,
)
from patchwarden.core.model import PRIORITIES
from patchwarden.core.rollout import IN_FLIGHT, RolloutStatus
from patchwarden.reports.change_record import change_record
from patchwarden.reports.scan import host_report
from patchwarden.server.api.identity import sign_in
from patchwarden.server.auth import (
    SESSION_COOKIE,
    DbSession,
    Permission,
    Principal,
    Public,
    TransactionalRoute,
    context,
)
from patchwarden.server.security import same_hash
from patchwarden.server.services import deploy, identity
from patchwarden.server.services.assets import (
    AssetFilter,
    asset_detail,
    asset_packages_page,
    environments,
    fleet_summary,
    list_assets,
)
from patchwarden.server.types import Id, Text, parse_id
from patchwarden.store.groups import get_group, groups_with_counts
from patchwarden.store.inventory import find_asset
from patchwarden.store.models import (
    AssetGroupRow,
    AssetRow,
    RiskExceptionRow,
    RolloutRingRow,
    RolloutRow,
)

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)

LOGIN_CSRF_COOKIE = "pw_login_csrf"
FLASH_COOKIE = "pw_flash"
ASSETS_PER_PAGE = 50
PACKAGES_PER_PAGE = 100
ROLLOUTS_PER_PAGE = 25
JOBS_PER_PAGE = 100
EXCEPTIONS_PER_PAGE = 50
Reader = Annotated[Principal, Depends(Permission("read"))]
Deployer = Annotated[Principal, Depends(Permission("deploy:write"))]
Approver = Annotated[Principal, Depends(Permission("approve"))]
BackTo = Annotated[Text, Form(max_length=500)]
PageNumber = Annotated[int, Query(ge=1, le=100_000)]


# ----------------------------------------------------------------- template helpers


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def age(value: str | datetime | None, now: datetime) -> str:
    """How long ago ``value`` (a datetime or ISO string) was, in words: "3 hours ago"."""
    if not value:
        return "never"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return "in the future"  # the host's clock or ours is off; say so, do not guess
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return _plural(seconds // 60, "minute") + " ago"
    if seconds < 2 * 86400:
        return _plural(seconds // 3600, "hour") + " ago"
    return _plural(seconds // 86400, "day") + " ago"


def due_in(value: date | None, today: date) -> str:
    """A due date relative to today: "in 5 days", "due today", "3 days overdue"."""
    if value is None:
        return ""
    days = (value - today).days
    if days < 0:
        return _plural(-days, "day") + " overdue"
    if days == 0:
        return "due today"
    return "in " + _plural(days, "day")


def expiry(value: datetime, now: datetime) -> str:
    """When something lapses, in words: "in 30 days", "in 5 hours", "expired 2 days ago"."""
    if value <= now:
        return "expired " + age(value, now)
    left = value - now
    if left.days >= 1:
        return "in " + _plural(left.days, "day")
    return "in " + _plural(max(1, left.seconds // 3600), "hour")


def describe_filter(group_filter: dict[str, Any]) -> list[tuple[str, str]]:
    """A dynamic group's filter as (key, readable value) pairs."""
    pairs = []
    for key, value in sorted(group_filter.items()):
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        pairs.append((key, shown))
    return pairs


# How a ring's job statuses add up on its progress bar, in bar order.
PROGRESS_BUCKETS: tuple[tuple[str, frozenset[str]], ...] = (
    ("succeeded", frozenset({"succeeded"})),
    ("failed", frozenset({"failed"})),
    ("running", IN_FLIGHT),  # released, claimed, or waiting to retry
    ("pending", frozenset({"pending"})),
    ("other", frozenset({"offline", "cancelled", "rolled_back"})),
)
ROLLOUT_STATUSES: tuple[str, ...] = get_args(RolloutStatus)
EXCEPTION_STATUSES = ("pending", "approved", "rejected", "expired", "revoked")
FINISHED_ROLLOUT = frozenset({"completed", "cancelled", "rolled_back"})
STARTED_RING = frozenset({"running", "soaking", "completed", "halted"})


def progress(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """A ring's job counts per status folded into the progress bar's buckets."""
    return [
        (bucket, sum(counts.get(status, 0) for status in statuses))
        for bucket, statuses in PROGRESS_BUCKETS
    ]


def rollout_actions(rollout: Mapping[str, Any]) -> frozenset[str]:
    """What can be done to a rollout (``rollout_json`` form) in its current state."""
    status = rollout["status"]
    actions = set()
    if status == "pending_approval":
        actions.add("approve")
    if status == "running":
        actions.add("pause")
    if status in ("paused", "halted"):
        actions.add("resume")
    if status not in FINISHED_ROLLOUT:
        actions.add("cancel")
    started = any(ring["status"] in STARTED_RING for ring in rollout["rings"])
    if started and status not in ("cancelled", "rolled_back"):
        actions.add("rollback")
    return frozenset(actions)


def ring_actions(rollout: Mapping[str, Any], ring: Mapping[str, Any]) -> frozenset[str]:
    """What can be done to one ring: approve its gate, roll it back."""
    actions = set()
    if (
        ring["requires_approval"]
        and not ring["approved"]
        and ring["status"] in ("pending", "awaiting_approval")
        and rollout["status"] not in FINISHED_ROLLOUT
    ):
        actions.add("approve")
    if ring["status"] in STARTED_RING and rollout["status"] not in ("cancelled", "rolled_back"):
        actions.add("rollback")
    return frozenset(actions)


@dataclass(frozen=True, slots=True)
class StepOutput:
    """One step an agent ran for a job, with the tail of its output."""

    name: str
    ok: bool
    seconds: float | None
    output: str


@dataclass(frozen=True, slots=True)
class CheckOutput:
    """One post-install check and how it went."""

    check: str
    ok: bool
    detail: str
    attempts: int | None


@dataclass(frozen=True, slots=True)
class JobOutput:
    """An agent's job result made readable; every field tolerates a sparse result."""

    error: str
    steps: tuple[StepOutput, ...]
    checks: tuple[CheckOutput, ...]
    rollback: str  # one sentence; empty when no rollback was needed
    versions: tuple[tuple[str, str, str], ...]  # (package, before, after)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def _describe_check(check: Any) -> str:
    if not isinstance(check, dict):
        return str(check)
    rest = " ".join(str(v) for k, v in check.items() if k != "type")
    return f"{check.get('type', 'check')} {rest}".strip()


def _describe_rollback(rollback: Any) -> str:
    # For install jobs (the ones that fail): rollback is null when none was needed, and
    # "attempted" is false only when the rollout turned rollback_on_failure off.
    if not isinstance(rollback, dict):
        return ""
    if not rollback.get("attempted", True):
        return "not attempted (rollback on failure is off)"
    if not rollback.get("ok"):
        return "failed: the host may not be back at its journaled versions"
    restored = rollback.get("restored")
    if isinstance(restored, dict) and restored:
        return "restored " + ", ".join(
            f"{name} {version or '(removed)'}" for name, version in sorted(restored.items())
        )
    return "nothing needed restoring"


def job_output(detail: Mapping[str, Any] | None) -> JobOutput:
    """The parts of a job result (docs/agent-jobs.md, "Result") a person reads.

    The result is whatever the agent reported, so every field is checked for its type
    instead of trusted.
    """
    detail = detail or {}
    steps = tuple(
        StepOutput(
            str(step.get("name", "?")),
            bool(step.get("ok")),
            _number(step.get("seconds")),
            str(step.get("output") or ""),
        )
        for step in _dicts(detail.get("steps"))
    )
    checks = tuple(
        CheckOutput(
            _describe_check(check.get("check")),
            bool(check.get("ok")),
            str(check.get("detail") or ""),
            attempts if isinstance(attempts := check.get("attempts"), int) else None,
        )
        for check in _dicts(detail.get("checks"))
    )
    before, after = detail.get("before"), detail.get("after")
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    versions = tuple(
        (name, str(before.get(name) or "absent"), str(after.get(name) or "absent"))
        for name in sorted({*before, *after}, key=str)
    )
    return JobOutput(
        str(detail.get("error") or ""),
        steps,
        checks,
        _describe_rollback(detail.get("rollback")),
        versions,
    )


def percent(fraction: float) -> str:
    """A stored fraction as a whole percentage: 0.95 -> "95%"."""
    return f"{fraction:.0%}"


templates.env.globals["version"] = __version__
templates.env.globals["priorities"] = PRIORITIES
templates.env.globals["rollout_actions"] = rollout_actions
templates.env.globals["ring_actions"] = ring_actions
templates.env.filters["age"] = age
templates.env.filters["due_in"] = due_in
templates.env.filters["expiry"] = expiry
templates.env.filters["describe_filter"] = describe_filter
templates.env.filters["progress"] = progress
templates.env.filters["job_output"] = job_output
templates.env.filters["percent"] = percent


@dataclass(frozen=True, slots=True)
class Pager:
    """Links to the previous and next page of a listing, keeping the other query values."""

    page: int
    per_page: int
    total: int
    path: str
    query: tuple[tuple[str, str], ...] = ()
    param: str = "page"
    anchor: str = ""  # fragment to land on, e.g. the listing's own section

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        """The index of the first item on this page."""
        return (self.page - 1) * self.per_page

    def url(self, page: int) -> str:
        """The address of another page of the same listing."""
        values = [(k, v) for k, v in self.query if v and k != self.param]
        if page > 1:
            values.append((self.param, str(page)))
        url = self.path + ("?" + urlencode(values) if values else "")
        return f"{url}#{self.anchor}" if self.anchor else url

    @property
    def prev_url(self) -> str | None:
        """The previous page, if any."""
        return self.url(self.page - 1) if self.page > 1 else None

    @property
    def next_url(self) -> str | None:
        """The next page, if any."""
        return self.url(self.page + 1) if self.page < self.pages else None


def mount_static(app: FastAPI) -> None:
    """Serve the stylesheet under /static."""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")


def _safe_next(target: str) -> str:
    """Only same-site relative redirects after sign-in (no open redirect)."""
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@dataclass(frozen=True, slots=True)
class Flash:
    """A one-time message for the next page: what a form post did, or why it did not."""

    text: str
    error: bool = False

    def encode(self) -> str:
        """The cookie value (base64url of JSON, unpadded so it needs no quoting)."""
        raw = json.dumps({"text": self.text[:1000], "error": self.error}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Flash | None:
        """The message in a cookie value; None for anything malformed."""
        try:
            data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            return None
        return cls(data["text"], bool(data.get("error")))


def redirect_back(target: str, flash: Flash) -> RedirectResponse:
    """Post/redirect/get: back to ``target`` (same-site only), carrying ``flash``.

    The message travels in a short-lived cookie rather than the query string, so a link
    from elsewhere cannot make a page show words the app never said.
    """
    response = RedirectResponse(_safe_next(target), status_code=303)
    response.set_cookie(FLASH_COOKIE, flash.encode(), max_age=60, httponly=True, samesite="strict")
    return response


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render a template with the common values (the caller, the app's clock, a flash)."""
    principal = getattr(request.state, "principal", None)
    now = context(request).now()
    cookie = request.cookies.get(FLASH_COOKIE)
    response = templates.TemplateResponse(
        request,
        name,
        {
            "who": principal,
            "now": now,
            "today": now.date(),
            "flash": Flash.decode(cookie) if cookie else None,
            **values,
        },
        status_code=status_code,
    )
    if cookie:
        response.delete_cookie(FLASH_COOKIE, httponly=True, samesite="strict")
    return response


def error_page(request: Request, status_code: int, message: str, hint: str | None) -> Response:
    """An error as a page, for browsers (the app's error handler can call this)."""
    return render(
        request, "error.html", status_code, status=status_code, message=message, hint=hint
    )


# ------------------------------------------------------------------ sign-in / out


@router.get("/login", dependencies=[Depends(Public("the sign-in form"))])
def login_form(request: Request, next: str = "/", error: str = "") -> Response:
    """The sign-in form, with a double-submit CSRF token."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", next=_safe_next(next), csrf=token, error=error)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login")
    return response


@router.post("/login", dependencies=[Depends(Public("the sign-in form posts here"))])
def login_submit(
    request: Request,
    username: Annotated[Text, Form(max_length=100)],
    password: Annotated[Text, Form(max_length=1024)],
    csrf_token: Annotated[Text, Form(max_length=100)],
    next: Annotated[Text, Form(max_length=500)] = "/",
) -> Response:
    """Check the form's credentials; on success set the session cookie and redirect."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not same_hash(expected, csrf_token):
        return login_form(request, next=next, error="The form expired; please try again.")
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    try:
        sign_in(request, redirect, username, password)
    except RateLimited:
        return login_form(request, next=next, error="Too many failed attempts; try again later.")
    except AuthenticationRequired:
        return login_form(request, next=next, error="Wrong username or password.")
    redirect.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return redirect


@router.post("/logout")
def logout(request: Request, who: Reader, session: DbSession) -> Response:
    """Sign out (CSRF-checked form post) and go to the sign-in page."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        identity.end_session(session, cookie, who.actor(), now=context(request).now())
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ------------------------------------------------------------------------- fleet


@router.get("/")
def overview(
    request: Request,
    _who: Reader,
    session: DbSession,
    q: Annotated[Text, Query(max_length=200)] = "",
    group: Annotated[Text, Query(max_length=20)] = "",
    environment: Annotated[Text, Query(max_length=60)] = "",
    priority: Annotated[Text, Query(max_length=2)] = "",
    page: PageNumber = 1,
) -> Response:
    """Fleet overview: summary cards and the filtered, paged asset table."""
    today = context(request).now().date()
    # A malformed group or priority (a hand-edited URL) is ignored, not an error page.
    group_id = parse_id(group)
    chosen = AssetFilter(
        q=q.strip(),
        environment=environment,
        group=group_id,
        priority=priority if priority in PRIORITIES else "",
    )
    offset = (page - 1) * ASSETS_PER_PAGE
    listed = list_assets(session, chosen, limit=ASSETS_PER_PAGE, offset=offset, today=today)
    query = (("q", q), ("group", group), ("environment", environment), ("priority", priority))
    return render(
        request,
        "overview.html",
        summary=fleet_summary(session, today=today),
        assets=listed.items,
        pager=Pager(page, ASSETS_PER_PAGE, listed.total, "/", query),
        filters={"q": q, "group": group, "environment": environment, "priority": priority},
        filtered=any((q, group, environment, priority)),
        groups=[g for g, _ in groups_with_counts(session)],
        environments=environments(session),
    )


@router.get("/assets/{asset_id}")
def asset_page(
    asset_id: Id,
    request: Request,
    _who: Reader,
    session: DbSession,
    packages: PageNumber = 1,
) -> Response:
    """One asset: facts, findings with their reasons, remediation plan, packages."""
    now = context(request).now()
    detail = asset_detail(session, asset_id, today=now.date())
    report = host_report(session, asset_id, now=now, package_count=detail["packages"])
    pager = Pager(
        packages,
        PACKAGES_PER_PAGE,
        detail["packages"],
        f"/assets/{asset_id}",
        param="packages",
        anchor="packages",
    )
    installed = asset_packages_page(session, asset_id, limit=PACKAGES_PER_PAGE, offset=pager.offset)
    return render(
        request,
        "asset.html",
        asset=detail,
        report=report,
        installed=installed.items,
        pager=pager,
        show_packages=packages > 1,
    )


# ------------------------------------------------------------------------ groups


@router.get("/groups")
def groups_page(request: Request, _who: Reader, session: DbSession) -> Response:
    """Every asset group with its kind, filter and member count."""
    return render(request, "groups.html", groups=groups_with_counts(session))


@router.get("/groups/{group_id}")
def group_page(
    group_id: Id, request: Request, _who: Reader, session: DbSession, page: PageNumber = 1
) -> Response:
    """One group: its filter (dynamic groups) and its members."""
    group = get_group(session, group_id)
    members = list_assets(
        session,
        AssetFilter(group=group.id),
        limit=ASSETS_PER_PAGE,
        offset=(page - 1) * ASSETS_PER_PAGE,
        today=context(request).now().date(),
    )
    pager = Pager(page, ASSETS_PER_PAGE, members.total, f"/groups/{group.id}")
    return render(request, "group.html", group=group, assets=members.items, pager=pager)


# --------------------------------------------------------------------- deployment


def _perform(session: Session, back: str, action: Callable[[], str]) -> Response:
    """Run a service ``action`` for a form post and redirect back with its outcome.

    A refusal by the service (four eyes, a state that does not allow it, a bad value)
    rolls the transaction back and is shown on the page the form came from.
    """
    try:
        done = action()
    except PatchwardenError as exc:
        session.rollback()
        return redirect_back(back, Flash(str(exc), error=True))
    return redirect_back(back, Flash(done))


def _ring_name(session: Session, rollout_id: int, index: int) -> str:
    name = session.scalar(
        select(RolloutRingRow.name).where(
            RolloutRingRow.rollout_id == rollout_id, RolloutRingRow.idx == index
        )
    )
    return name or f"#{index}"


def _scope_names(
    session: Session, exceptions: list[RiskExceptionRow]
) -> tuple[dict[int, str], dict[int, str]]:
    """Hostnames and group names the exceptions' scopes refer to."""
    asset_ids = [e.asset_id for e in exceptions if e.asset_id is not None]
    group_ids = [e.group_id for e in exceptions if e.group_id is not None]
    hosts = session.execute(
        select(AssetRow.id, AssetRow.hostname).where(AssetRow.id.in_(asset_ids or [0]))
    ).tuples()
    groups = session.execute(
        select(AssetGroupRow.id, AssetGroupRow.name).where(AssetGroupRow.id.in_(group_ids or [0]))
    ).tuples()
    return dict(hosts.all()), dict(groups.all())


@router.get("/rollouts")
def rollouts_page(
    request: Request,
    _who: Reader,
    session: DbSession,
    status: Annotated[Text, Query(max_length=30)] = "",
    page: PageNumber = 1,
) -> Response:
    """Rollouts, newest first, with each ring's progress."""
    query = select(RolloutRow)
    if status in ROLLOUT_STATUSES:  # an unknown status (a hand-edited URL) shows all
        query = query.where(RolloutRow.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pager = Pager(page, ROLLOUTS_PER_PAGE, total, "/rollouts", (("status", status),))
    rows = session.scalars(
        query.order_by(RolloutRow.id.desc()).limit(ROLLOUTS_PER_PAGE).offset(pager.offset)
    )
    return render(
        request,
        "rollouts.html",
        rollouts=[deploy.rollout_json(session, r) for r in rows],
        pager=pager,
        status=status,
        statuses=ROLLOUT_STATUSES,
    )


@router.get("/rollouts/{rollout_id}")
def rollout_page(
    rollout_id: Id, request: Request, _who: Reader, session: DbSession, jobs: PageNumber = 1
) -> Response:
    """One rollout: rings with their limits and progress, failures with output, jobs."""
    row = deploy.get_rollout(session, rollout_id)
    rollout = deploy.rollout_json(session, row, with_jobs=True)
    record = change_record(session, row)
    pager = Pager(
        jobs,
        JOBS_PER_PAGE,
        len(rollout["jobs"]),
        f"/rollouts/{row.id}",
        param="jobs",
        anchor="jobs",
    )
    return render(
        request,
        "rollout.html",
        rollout=rollout,
        record=record,
        ring_names={r["index"]: r["name"] for r in rollout["rings"]},
        hosts={j["hostname"]: j["asset_id"] for j in rollout["jobs"]},
        jobs=rollout["jobs"][pager.offset : pager.offset + JOBS_PER_PAGE],
        pager=pager,
    )


@router.post("/rollouts/{rollout_id}/approve")
def approve_rollout_form(
    rollout_id: Id,
    request: Request,
    who: Approver,
    session: DbSession,
    ring: Annotated[int | None, Form(ge=0, le=10_000)] = None,
    comment: Annotated[Text, Form(max_length=2000)] = "",
    next: BackTo = "",
) -> Response:
    """Approve an emergency rollout, or a ring's gate (``ring``); never one's own."""

    def approve() -> str:
        deploy.approve_rollout(
            session,
            who.actor(),
            rollout_id,
            ring=ring,
            comment=comment.strip(),
            now=context(request).now(),
        )
        if ring is None:
            return f"Rollout {rollout_id} approved: it starts with the next orchestrator pass."
        return f"Ring {_ring_name(session, rollout_id, ring)} of rollout {rollout_id} approved."

    return _perform(session, next or f"/rollouts/{rollout_id}", approve)


@router.post("/rollouts/{rollout_id}/reject")
def reject_rollout_form(
    rollout_id: Id,
    request: Request,
    who: Approver,
    session: DbSession,
    ring: Annotated[int | None, Form(ge=0, le=10_000)] = None,
    comment: Annotated[Text, Form(max_length=2000)] = "",
    next: BackTo = "",
) -> Response:
    """Reject an emergency rollout or a ring's gate: the rollout is cancelled."""

    def reject() -> str:
        deploy.reject_rollout(
            session,
            who.actor(),
            rollout_id,
            ring=ring,
            comment=comment.strip(),
            now=context(request).now(),
        )
        return f"Rollout {rollout_id} rejected and cancelled."

    return _perform(session, next or f"/rollouts/{rollout_id}", reject)


@router.post("/rollouts/{rollout_id}/{action}")
def change_rollout_form(
    rollout_id: Id,
    action: Literal["pause", "resume", "cancel", "rollback"],
    request: Request,
    who: Deployer,
    session: DbSession,
    ring: Annotated[int | None, Form(ge=0, le=10_000)] = None,
    next: BackTo = "",
) -> Response:
    """Pause, resume, cancel, or roll back a rollout (``ring``: just that ring)."""

    def change() -> str:
        now = context(request).now()
        if action == "rollback":
            made = deploy.rollback_rollout(session, who.actor(), rollout_id, ring=ring, now=now)
            what = (
                f"ring {_ring_name(session, rollout_id, ring)}" if ring is not None else "all rings"
            )
            return f"Rolled back {what}: {made} rollback job(s) queued for patched hosts."
        deploy.set_rollout_state(session, who.actor(), rollout_id, action, now=now)
        done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
        return f"Rollout {rollout_id} {done}."

    return _perform(session, next or f"/rollouts/{rollout_id}", change)


@router.get("/approvals")
def approvals_page(request: Request, _who: Reader, session: DbSession) -> Response:
    """Everything waiting for an approver: emergency rollouts, ring gates, exceptions."""
    waiting = session.scalars(
        select(RolloutRow)
        .where(RolloutRow.status.in_(["pending_approval", "running", "paused", "halted"]))
        .order_by(RolloutRow.id)
    )
    emergencies, gates = [], []
    for row in waiting:
        rollout = deploy.rollout_json(session, row)
        if "approve" in rollout_actions(rollout):
            emergencies.append(rollout)
        gates += [(rollout, r) for r in rollout["rings"] if "approve" in ring_actions(rollout, r)]
    # Gates the orchestrator is already waiting on come before ones approvable ahead.
    gates.sort(key=lambda gate: gate[1]["status"] != "awaiting_approval")
    exceptions = list(
        session.scalars(
            select(RiskExceptionRow)
            .where(RiskExceptionRow.status == "pending")
            .order_by(RiskExceptionRow.id)
        )
    )
    hosts, groups = _scope_names(session, exceptions)
    return render(
        request,
        "approvals.html",
        emergencies=emergencies,
        gates=gates,
        exceptions=exceptions,
        hosts=hosts,
        groups=groups,
    )


def _exceptions_view(
    request: Request,
    session: Session,
    *,
    status: str = "",
    page: int = 1,
    form: Mapping[str, Any] | None = None,
    error: str = "",
) -> Response:
    """The exceptions page; after a refused request, with the form as it was sent."""
    query = select(RiskExceptionRow)
    if status in EXCEPTION_STATUSES:
        query = query.where(RiskExceptionRow.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pager = Pager(page, EXCEPTIONS_PER_PAGE, total, "/exceptions", (("status", status),))
    rows = list(
        session.scalars(
            query.order_by(RiskExceptionRow.id.desc())
            .limit(EXCEPTIONS_PER_PAGE)
            .offset(pager.offset)
        )
    )
    hosts, groups = _scope_names(session, rows)
    return render(
        request,
        "exceptions.html",
        422 if error else 200,
        exceptions=rows,
        hosts=hosts,
        groups=groups,
        pager=pager,
        status=status,
        statuses=EXCEPTION_STATUSES,
        all_groups=[g for g, _ in groups_with_counts(session)],
        form=form or {"days": 30},
        error=error,
    )


@router.get("/exceptions")
def exceptions_page(
    request: Request,
    _who: Reader,
    session: DbSession,
    status: Annotated[Text, Query(max_length=20)] = "",
    page: PageNumber = 1,
) -> Response:
    """Risk exceptions, newest first, and the form to request one."""
    return _exceptions_view(request, session, status=status, page=page)


@router.post("/exceptions")
def request_exception_form(
    request: Request,
    who: Deployer,
    session: DbSession,
    justification: Annotated[Text, Form(max_length=4000)],
    days: Annotated[int, Form(ge=1, le=366)],
    advisory: Annotated[Text, Form(max_length=200)] = "",
    package: Annotated[Text, Form(max_length=300)] = "",
    asset: Annotated[Text, Form(max_length=255)] = "",
    group: Annotated[Text, Form(max_length=20)] = "",
) -> Response:
    """Request a risk exception for an asset (by hostname) or a group.

    A refused request shows the page again with the service's reason and the form
    filled in as sent, so a long justification is not lost.
    """
    sent = {
        "advisory": advisory,
        "package": package,
        "asset": asset,
        "group": group,
        "justification": justification,
        "days": days,
    }
    now = context(request).now()
    try:
        asset_id = None
        if asset.strip():
            found = find_asset(session, hostname=asset.strip())
            if found is None:
                raise NotFound(f"no asset with the hostname {asset.strip()!r}")
            asset_id = found.id
        row = deploy.request_exception(
            session,
            who.actor(),
            advisory=advisory.strip(),
            package=package.strip(),
            asset_id=asset_id,
            group=parse_id(group),
            justification=justification,
            expires_at=now + timedelta(days=days),
            now=now,
        )
    except PatchwardenError as exc:
        session.rollback()
        return _exceptions_view(request, session, form=sent, error=str(exc))
    return redirect_back(
        "/exceptions",
        Flash(f"Exception {row.id} requested: an approver other than you must approve it."),
    )


@router.post("/exceptions/{exception_id}/{decision}")
def decide_exception_form(
    exception_id: Id,
    decision: Literal["approve", "reject", "revoke"],
    request: Request,
    who: Approver,
    session: DbSession,
    next: BackTo = "",
) -> Response:
    """Approve or reject a pending exception (not one's own), or revoke one early."""

    def decide() -> str:
        now = context(request).now()
        if decision == "revoke":
            deploy.revoke_exception(session, who.actor(), exception_id, now=now)
        else:
            deploy.decide_exception(
                session, who.actor(), exception_id, approve_it=decision == "approve", now=now
            )
        done = {"approve": "approved", "reject": "rejected", "revoke": "revoked"}[decision]
        return f"Exception {exception_id} {done}."

    return _perform(session, next or "/exceptions", decide)
