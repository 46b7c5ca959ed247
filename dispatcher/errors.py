"""One rooted exception hierarchy; branches follow how callers react."""

from __future__ import annotations


class DispatcherError(Exception):
    """Dispatcher error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(DispatcherError):
    """Invalid configuration: the process refuses to start."""


class TransientError(DispatcherError):
    """A temporary failure: retry later."""


class DecodeError(DispatcherError):
    """A stream entry or record could not be decoded: dead-letter it, never retry."""


class NoCapacity(DispatcherError):
    """No agent server has a free slot: the job stays pending."""


class OwnershipLost(DispatcherError):
    """This node no longer holds the partition's lease: stop processing it."""


class AuthError(DispatcherError):
    """Invalid authorization token."""
