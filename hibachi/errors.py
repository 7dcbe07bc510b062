"""Domain errors carry their HTTP status; one handler renders them as JSON."""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """Base for errors a user (or the agent) can act on."""

    status_code: ClassVar[int] = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def name(self) -> str:
        return type(self).__name__


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class RuleViolation(DomainError):
    """A business rule rejects otherwise well-formed input."""

    status_code = 422


class Unauthorized(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403
