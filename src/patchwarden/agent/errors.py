"""What can go wrong between the agent and its server.

PatchwardenError
├── ConfigError
│   └── NotEnrolled          no credential in the state directory
├── AuthenticationRequired
│   └── CredentialRevoked    the server refused the credential: re-enroll
└── AgentError               one exchange with the server failed
    ├── ServerUnreachable    no answer, a timeout, TLS failure or a 5xx: retry later
    └── ServerRefused        a 3xx/4xx answer: retrying the same request will not help
"""

from __future__ import annotations

from patchwarden.core.errors import AuthenticationRequired, ConfigError, PatchwardenError

REENROLL_HINT = "re-enroll this host: patchwarden-agent enroll TOKEN --server URL"


class NotEnrolled(ConfigError):
    """The agent has no credential yet."""

    def __init__(self, state_dir: str) -> None:
        super().__init__(
            f"this agent is not enrolled (no credential in {state_dir})", hint=REENROLL_HINT
        )


class CredentialRevoked(AuthenticationRequired):
    """The server no longer accepts this host's credential (revoked, or its asset deleted)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint=REENROLL_HINT)


class AgentError(PatchwardenError):
    """An exchange with the server failed."""


class ServerUnreachable(AgentError):
    """The server did not answer usefully (refused, timeout, TLS, 5xx); try again later.

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerRefused(AgentError):
    """The server answered with a 3xx or 4xx: this request, as sent, will not succeed.

    ``status`` is the HTTP status; ``error_type`` the server's error class name
    (``ValidationFailed``, ``InventoryError``, ...) from its ``{"error", "hint", "type"}``
    body.
    """

    def __init__(
        self, status: int, message: str, *, error_type: str = "", hint: str | None = None
    ) -> None:
        super().__init__(f"server answered {status}: {message}", hint=hint)
        self.status = status
        self.error_type = error_type
        self.server_message = message
