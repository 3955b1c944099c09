"""The one exception tree of monolith.

Backends translate their driver's errors into these (``raise StateUnavailable(...) from exc``)
so that callers never import a driver to catch its errors, and the HTTP layer maps each to a
status code and a one-line reason. This module must never import a driver.
"""

from __future__ import annotations


class MonolithError(Exception):
    """Root of every error monolith raises on purpose."""


class ConfigError(MonolithError):
    """The configuration is invalid; the message says which setting and why."""


class NotStarted(MonolithError):
    """A backend was used before its ``start()`` ran (the app's lifespan starts them)."""


class StateUnavailable(MonolithError):
    """A dependency (database, cache, broker) is down or too busy: HTTP 503, retry later."""

    retry_after: int = 1

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after


class DatabaseUnavailable(StateUnavailable):
    """The database cannot be reached."""


class DatabaseBusy(StateUnavailable):
    """The database stayed locked past its busy timeout."""


class CacheUnavailable(StateUnavailable):
    """The cache/store backend cannot be reached."""


class IntegrityViolation(MonolithError):
    """A constraint (unique, foreign key, check) refused a write."""


class UnknownJob(MonolithError, LookupError):
    """No job of that name is registered (``@job``) in this process."""


class MigrationError(MonolithError):
    """A migration failed or an applied migration was changed after it ran."""


class BackupError(MonolithError):
    """A backup or restore cannot be done or did not verify; the message says why."""
