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


class RequestError(DispatcherError):
    """The request cannot be served as sent: the caller gets the reason, nothing changed.

    Each kind below is answered with its own Twirp code (``api/twirp.py`` maps them).
    """


class InvalidArgument(RequestError):
    """Invalid argument."""


class NotFound(RequestError):
    """Not found."""


class FailedPrecondition(RequestError):
    """The request is well formed but the stored state does not allow it."""


class PermissionDenied(RequestError):
    """Permission denied."""


class ResourceExhausted(RequestError):
    """A limit was reached."""


class Aborted(RequestError):
    """Changed concurrently: retry the call."""


class StoreUnavailable(DispatcherError):
    """Redis is unreachable or not serving (restarting, loading, failing over): try again."""


class BatchFailed(DispatcherError):
    """One or more calls of a Redis batch failed; ``failures`` holds them, the first is
    the cause."""

    def __init__(self, failures: list[Exception], calls: int) -> None:
        super().__init__(f"{len(failures)} of {calls} Redis calls failed: {describe(failures[0])}")
        self.failures = failures


def describe(exc: BaseException) -> str:
    """``Type: message`` for a log line (redis-py's own repr hides the message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
