"""Server-rendered pages: sign-in, fleet overview, asset detail, groups."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, FastAPI, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from patchwarden import __version__
from patchwarden.core.errors import AuthenticationRequired, RateLimited
from patchwarden.server.api.identity import sign_in
from patchwarden.server.auth import (
    SESSION_COOKIE,
    DbSession,
    Permission,
    Principal,
    Public,
    context,
)
from patchwarden.server.security import same_hash
from patchwarden.server.services import identity
from patchwarden.server.services.assets import AssetFilter, fleet_summary, list_assets

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals["version"] = __version__

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "pw_login_csrf"
Reader = Annotated[Principal, Depends(Permission("read"))]


def mount_static(app: FastAPI) -> None:
    """Serve the stylesheet and scripts under /static."""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")


def _safe_next(target: str) -> str:
    """Only same-site relative redirects after sign-in (no open redirect)."""
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render a template with the common values."""
    principal = getattr(request.state, "principal", None)
    return templates.TemplateResponse(
        request, name, {"who": principal, **values}, status_code=status_code
    )


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


@router.get("/")
def overview(request: Request, who: Reader, session: DbSession) -> Response:
    """Fleet overview (the dashboard)."""
    today = context(request).now().date()
    page = list_assets(session, AssetFilter(), limit=1000, offset=0, today=today)
    return render(
        request,
        "overview.html",
        summary=fleet_summary(session, today=today),
        assets=page.items,
        total=page.total,
    )
