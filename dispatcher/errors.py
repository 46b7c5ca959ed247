"""One rooted exception hierarchy; branches follow how callers react."""

from __future__ import annotations


class DispatcherError(Exception):
    """Dispatcher error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(DispatcherError):
    """Invalid configuration: the process refuses to start."""


class OwnershipLost(DispatcherError):
    """This node no longer holds the partition's lease: stop processing it."""


class AuthError(DispatcherError):
    """Invalid authorization token."""
