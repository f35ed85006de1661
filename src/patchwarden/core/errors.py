"""The patchwarden error tree.

Every failure patchwarden reports on purpose is a ``PatchwardenError``. Each boundary
(feeds, inventories, versions, backends, the API) has its own base class so callers can
catch exactly what they can handle, and each entry point (CLI, HTTP) turns the tree into
one clear message in one place. Adapters translate library errors with
``raise ... from exc``; a failure is never signalled by returning ``None``.

    PatchwardenError
    ├── ConfigError              bad settings or environment
    ├── ValidationFailed         a value or payload that breaks a documented rule
    │   ├── PayloadTooLarge      a request or upload over a size limit
    │   ├── InvalidVersion       a version string its ecosystem cannot parse
    │   └── UnsupportedEcosystem an ecosystem patchwarden has no ordering for
    ├── FeedError                a vulnerability feed could not be read or imported
    ├── InventoryError           an inventory could not be collected or parsed
    ├── BackendError             a package manager or host action failed
    ├── NotFound                 a named object does not exist
    ├── Conflict                 the request clashes with the current state
    ├── RateLimited              too many attempts; retry later
    └── PermissionDenied         the caller may not do this
        └── AuthenticationRequired  the caller is not (or no longer) signed in
"""

from __future__ import annotations


class PatchwardenError(Exception):
    """Root of every error patchwarden raises on purpose.

    ``hint`` says how to fix the problem when the message alone does not.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(PatchwardenError):
    """Settings or environment are unusable."""


class ValidationFailed(PatchwardenError):
    """A value breaks a documented rule."""


class PayloadTooLarge(ValidationFailed):
    """A request or upload exceeds a size limit."""


class InvalidVersion(ValidationFailed):
    """A version string cannot be parsed under its ecosystem's rules."""

    def __init__(self, ecosystem: str, version: str, reason: str) -> None:
        super().__init__(f"invalid {ecosystem} version {version!r}: {reason}")
        self.ecosystem = ecosystem
        self.version = version
        self.reason = reason


class UnsupportedEcosystem(ValidationFailed):
    """No version ordering is known for this ecosystem."""

    def __init__(self, ecosystem: str, known: tuple[str, ...] = ()) -> None:
        hint = f"known ecosystems: {', '.join(known)}" if known else None
        super().__init__(f"unsupported ecosystem {ecosystem!r}", hint=hint)
        self.ecosystem = ecosystem


class FeedError(PatchwardenError):
    """A vulnerability feed could not be fetched, parsed or imported.

    ``source`` names the file or URL, ``record`` the record id or line, ``field`` the
    offending field, so the message points at the exact spot.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        record: str | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ", ".join(
            part
            for part in (
                source,
                f"record {record}" if record else None,
                f"field {field!r}" if field else None,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.source = source
        self.record = record
        self.field = field


class InventoryError(PatchwardenError):
    """An inventory could not be collected or parsed."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = source or ""
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.source = source
        self.line = line


class BackendError(PatchwardenError):
    """A package manager or host action failed."""


class NotFound(PatchwardenError):
    """A named object does not exist."""


class Conflict(PatchwardenError):
    """The request clashes with the current state."""


class PermissionDenied(PatchwardenError):
    """The caller is not allowed to do this."""


class AuthenticationRequired(PermissionDenied):
    """No valid credentials were presented (or they were revoked or expired)."""


class RateLimited(PatchwardenError):
    """Too many attempts in a window; ``retry_after`` says when to try again (seconds)."""

    def __init__(self, message: str, *, retry_after: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after
