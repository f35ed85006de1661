"""The enrollment tokens page: list them, create one (its secret shown once), revoke.

Listing needs ``read`` and never shows a secret; creating and revoking need
``enroll:write`` and, like every form post of a session, the CSRF token. The work is
done by the same service functions as the API and ``patchwarden enroll``
(``server/services/agents.py``).

A new token's secret is shown in the answer to the form post itself, never carried
through a redirect or a cookie, and that page is not stored by the browser's cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patchwarden.core.errors import PatchwardenError, ValidationFailed
from patchwarden.server.auth import DbSession, Permission, Principal, TransactionalRoute, context
from patchwarden.server.services import agents
from patchwarden.server.web.pages import PageNumber, Pager, Reader, _perform, render
from patchwarden.store.models import AssetRow, EnrollmentTokenRow

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)

Enroller = Annotated[Principal, Depends(Permission("enroll:write"))]
PAGE = "/enrollment-tokens"
TOKENS_PER_PAGE = 50
#: What the creation form starts with.
BLANK_FORM: Mapping[str, Any] = {"note": "", "hours": 24, "uses": 1, "asset": "", "defaults": ""}


def _view(
    request: Request,
    session: Session,
    *,
    form: Mapping[str, Any] = BLANK_FORM,
    error: str = "",
    created: tuple[EnrollmentTokenRow, str] | None = None,
    page: int = 1,
) -> Response:
    """The page: the tokens, newest first, 50 a page; after a post, its outcome."""
    total = session.scalar(select(func.count()).select_from(EnrollmentTokenRow)) or 0
    pager = Pager(page, TOKENS_PER_PAGE, total, PAGE)
    tokens = list(
        session.scalars(
            select(EnrollmentTokenRow)
            .order_by(EnrollmentTokenRow.id.desc())
            .limit(TOKENS_PER_PAGE)
            .offset(pager.offset)
        )
    )
    bound = [t.asset_id for t in tokens if t.asset_id is not None]
    hosts = dict(
        session.execute(select(AssetRow.id, AssetRow.hostname).where(AssetRow.id.in_(bound or [0])))
        .tuples()
        .all()
    )
    response = render(
        request,
        "enrollment.html",
        422 if error else 200,
        tokens=tokens,
        pager=pager,
        hosts=hosts,
        form=form,
        error=error,
        created=created,
        server_url=str(request.base_url).rstrip("/"),
    )
    if created is not None:
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get(PAGE)
def enrollment_page(
    request: Request, _who: Reader, session: DbSession, page: PageNumber = 1
) -> Response:
    """Every enrollment token (never a secret), and the form to create one."""
    return _view(request, session, page=page)


def _parse_asset(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValidationFailed(
            f"asset must be an asset id (a number), not {text[:40]!r}",
            hint="the id is in the asset page's address: /assets/ID",
        )
    return int(text)


def _parse_defaults(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"defaults are not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValidationFailed('defaults must be a JSON object, e.g. {"environment": "prod"}')
    return parsed


@router.post(PAGE)
def create_enrollment_token_form(
    request: Request,
    who: Enroller,
    session: DbSession,
    hours: Annotated[int, Form(ge=1, le=24 * 90)] = 24,
    uses: Annotated[int, Form(ge=1, le=100_000)] = 1,
    note: Annotated[str, Form(max_length=200)] = "",
    asset: Annotated[str, Form(max_length=20)] = "",
    defaults: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Create a token and show its secret, once. A refusal shows the form as sent."""
    sent = {"note": note, "hours": hours, "uses": uses, "asset": asset, "defaults": defaults}
    try:
        created = agents.create_enrollment_token(
            session,
            who.actor(),
            now=context(request).now(),
            hours=hours,
            max_uses=uses,
            note=note.strip(),
            defaults=_parse_defaults(defaults),
            asset_id=_parse_asset(asset),
        )
    except PatchwardenError as exc:
        session.rollback()
        return _view(request, session, form=sent, error=str(exc))
    return _view(request, session, created=created)


@router.post(PAGE + "/{token_id}/revoke")
def revoke_enrollment_token_form(
    token_id: int, request: Request, who: Enroller, session: DbSession
) -> Response:
    """Revoke a token: no agent can enroll with it any more (enrolled ones stay)."""

    def revoke() -> str:
        agents.revoke_enrollment_token(session, who.actor(), token_id, now=context(request).now())
        return f"Enrollment token {token_id} revoked; agents enrolled with it keep working."

    return _perform(session, PAGE, revoke)
