"""Roles, permissions, password hashing and bearer secrets.

Passwords are hashed with argon2id (argon2-cffi). Tokens (API tokens, enrollment tokens,
agent credentials, session ids) are 256-bit random secrets; only their sha256 is
stored — a fast hash is enough for secrets of that entropy and keeps agent check-ins
cheap. A token reads ``<prefix>_<id>_<secret>`` so the server finds its row by id and
compares hashes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from patchwarden.server.types import parse_id

ROLES = ("admin", "operator", "approver", "auditor")

#: Every permission a route can require, and what it allows.
PERMISSIONS: dict[str, str] = {
    "read": "read assets, findings, groups, feeds and rollouts",
    "audit:read": "read and export the audit log",
    "assets:write": "edit, delete and collect assets; revoke agent credentials; CMDB import",
    "groups:write": "create, change and delete asset groups",
    "feeds:write": "import and sync vulnerability feeds",
    "enroll:write": "create and revoke agent enrollment tokens",
    "users:write": "create, change and disable users",
    "tokens:self": "create and revoke one's own API tokens",
    "deploy:write": "baselines, windows, rollouts and exceptions (request)",
    "approve": "approve rollouts, promotions and exceptions (four eyes)",
    "scripts:write": "register script packages (artifacts and commands agents may run)",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "auditor": frozenset({"read", "audit:read", "tokens:self"}),
    "approver": frozenset({"read", "approve", "tokens:self"}),
    "operator": frozenset(
        {"read", "assets:write", "groups:write", "feeds:write", "deploy:write", "tokens:self"}
    ),
    "admin": frozenset(PERMISSIONS),
}

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (never raises on a mismatch)."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why a new password is unacceptable, or None."""
    if len(password) < 12:
        return "passwords need at least 12 characters"
    if len(password) > 1024:
        return "passwords are limited to 1024 characters"
    return None


def hash_secret(secret: str) -> str:
    """sha256 hex digest of a high-entropy secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_secret() -> str:
    """A fresh 256-bit URL-safe secret."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class BearerToken:
    """A parsed ``<prefix>_<id>_<secret>`` token."""

    prefix: str
    row_id: int
    secret: str

    def __str__(self) -> str:
        return f"{self.prefix}_{self.row_id}_{self.secret}"


def format_token(prefix: str, row_id: int, secret: str) -> str:
    """The string handed to the user once."""
    return str(BearerToken(prefix, row_id, secret))


def parse_token(text: str, prefix: str) -> BearerToken | None:
    """Parse a token of the given prefix; None when it is not one.

    The id must be ASCII digits within the id column's range: anything else (``²``,
    2**31, a thousand digits) is simply not a token, never a database error.
    """
    head, sep, rest = text.partition("_")
    if not sep or head != prefix:
        return None
    ident, sep, secret = rest.partition("_")
    row_id = parse_id(ident)
    if not sep or row_id is None or not secret or len(secret) > _MAX_SECRET:
        return None
    if not secret.isascii():
        return None
    return BearerToken(prefix, row_id, secret)


#: Longest secret part accepted (``new_secret`` makes 43 characters).
_MAX_SECRET = 256

TOKEN_PREFIX = "pwt"  # noqa: S105 - a prefix, not a secret
AGENT_PREFIX = "pwa"  # agent credentials
ENROLL_PREFIX = "pwe"  # enrollment tokens
