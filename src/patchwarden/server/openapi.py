"""The OpenAPI document, with every refusal a route can answer declared.

FastAPI documents the success response and its own validation error; this adds the
error responses of the app (``{"error", "hint", "type"}``, ``ErrorBody``) from what
each route is: 401 and 403 for routes behind a permission or an agent credential,
404 for routes addressing something by id, 413 (body limit) and 422 (validation) for
every route, plus what a route declares itself with ``errors(…)`` (409 on conflicts,
429 on sign-in, 404 where a body names other objects). The fuzz test
(tests/server/test_fuzz.py) holds every answer to this document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from patchwarden.server.auth import AgentAccess, Permission
from patchwarden.server.types import ErrorBody

REASONS: dict[int, str] = {
    401: "Not signed in, or the credential is invalid, expired or revoked.",
    403: "The caller lacks the permission (or the CSRF token), or four eyes refuse it.",
    404: "Something the request names does not exist.",
    409: "The request clashes with the current state.",
    413: "The request body exceeds the route's size limit.",
    422: "The request is malformed or breaks a documented rule.",
    429: "Too many failed attempts; retry after the Retry-After header's seconds.",
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Error responses a route declares beyond the ones its kind implies."""
    return {code: {"model": ErrorBody, "description": REASONS[code]} for code in codes}


def api_routes(routes: Iterable[Any]) -> list[APIRoute]:
    """Every APIRoute, descending into included routers (FastAPI keeps them nested)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found.extend(api_routes(route.original_router.routes))
    return found


def implied_errors(route: APIRoute) -> set[int]:
    """The error statuses a route can answer because of what it is."""
    codes = {413, 422}
    for dependency in route.dependant.dependencies:
        if isinstance(dependency.call, Permission | AgentAccess):
            codes |= {401, 403}
    if route.dependant.path_params:
        codes.add(404)
    return codes


def document(app: FastAPI, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` (FastAPI's document of ``app``) with the error responses declared."""
    paths = base.get("paths", {})
    for route in api_routes(app.routes):
        if not route.include_in_schema or route.path_format not in paths:
            continue
        for method in route.methods or ():
            operation = paths[route.path_format].get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for code in implied_errors(route):
                responses.setdefault(str(code), {"description": REASONS[code]})
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    # Every refusal has the one error body (FastAPI's own 422 schema
                    # describes a body this app never sends).
                    response["content"] = {"application/json": {"schema": _ERROR_REF}}
    schemas = base.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return base
