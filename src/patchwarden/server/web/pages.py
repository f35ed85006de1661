"""Server-rendered pages: sign-in, fleet overview, asset detail, groups.

Pages are plain HTML forms and links (no JavaScript needed). Each page route declares
its permission exactly like the API routes do; the data comes from the same service and
store functions the API uses, so a page never shows something the API would not.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from patchwarden import __version__
from patchwarden.core.errors import AuthenticationRequired, RateLimited
from patchwarden.core.model import PRIORITIES
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
from patchwarden.server.services import identity
from patchwarden.server.services.assets import (
    AssetFilter,
    asset_detail,
    asset_packages_page,
    environments,
    fleet_summary,
    list_assets,
)
from patchwarden.store.groups import get_group, groups_with_counts

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)

LOGIN_CSRF_COOKIE = "pw_login_csrf"
ASSETS_PER_PAGE = 50
PACKAGES_PER_PAGE = 100
Reader = Annotated[Principal, Depends(Permission("read"))]
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


def describe_filter(group_filter: dict[str, Any]) -> list[tuple[str, str]]:
    """A dynamic group's filter as (key, readable value) pairs."""
    pairs = []
    for key, value in sorted(group_filter.items()):
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        pairs.append((key, shown))
    return pairs


templates.env.globals["version"] = __version__
templates.env.globals["priorities"] = PRIORITIES
templates.env.filters["age"] = age
templates.env.filters["due_in"] = due_in
templates.env.filters["describe_filter"] = describe_filter


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


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render a template with the common values (the caller, the app's clock)."""
    principal = getattr(request.state, "principal", None)
    now = context(request).now()
    return templates.TemplateResponse(
        request,
        name,
        {"who": principal, "now": now, "today": now.date(), **values},
        status_code=status_code,
    )


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
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=500)] = "/",
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
    q: Annotated[str, Query(max_length=200)] = "",
    group: Annotated[str, Query(max_length=20)] = "",
    environment: Annotated[str, Query(max_length=60)] = "",
    priority: Annotated[str, Query(max_length=2)] = "",
    page: PageNumber = 1,
) -> Response:
    """Fleet overview: summary cards and the filtered, paged asset table."""
    today = context(request).now().date()
    # A malformed group or priority (a hand-edited URL) is ignored, not an error page.
    group_id = int(group) if group.isdigit() else None
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
    asset_id: int,
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
    group_id: int, request: Request, _who: Reader, session: DbSession, page: PageNumber = 1
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
