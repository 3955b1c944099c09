"""The one exception tree of monolith.

Every error monolith raises on purpose is a :class:`MonolithError`. Each layer translates
foreign exceptions at its edge (a backend turns ``sqlite3``, ``asyncpg``, ``redis`` and
``OSError`` errors into these with ``raise ... from exc``), so callers never import a driver to
catch its errors. The kinds below the root say what the caller did or what failed, and the
HTTP layer maps each kind to a status in one table (``monolith.web.errors.STATUS``):

    MonolithError
    ├── InvalidInput            400  the request is malformed (a cursor this server never made)
    │   └── InvalidField        422  one field is wrong; the message starts with its name
    ├── NotFound                404
    ├── Conflict                409  the change conflicts with the data (IntegrityViolation)
    ├── PayloadTooLarge         413
    ├── UnsupportedType         415  content of a type that is not accepted
    ├── StateUnavailable        503  a dependency is down or too busy (+ Retry-After)
    ├── ConfigError, NotStarted, UnknownJob, MigrationError, BackupError: not about a request

Feature errors subclass a kind (``InsufficientStock(Conflict)``) and, where useful, their
area's root too (``MediaUnavailable(MediaError, StateUnavailable)``). This module must never
import a driver.
"""

from __future__ import annotations


class MonolithError(Exception):
    """Root of every error monolith raises on purpose."""


class ConfigError(MonolithError):
    """The configuration is invalid; the message says which setting and why."""


class NotStarted(MonolithError):
    """A backend was used before its ``start()`` ran (the app's lifespan starts them)."""


class InvalidInput(MonolithError):
    """The request is malformed in a way no field names: HTTP 400."""


class InvalidField(InvalidInput):
    """One field of the request is wrong: HTTP 422; the message starts with the field."""


class NotFound(MonolithError, LookupError):
    """What the request names does not exist: HTTP 404."""


class Conflict(MonolithError):
    """The change conflicts with the data as it is: HTTP 409."""


class PayloadTooLarge(MonolithError):
    """The request's content is larger than allowed: HTTP 413."""


class UnsupportedType(MonolithError):
    """The request's content is of a type that is not accepted: HTTP 415."""


class StateUnavailable(MonolithError):
    """A dependency (database, cache, broker) is down or too busy: HTTP 503, retry later.

    The message is for logs and operators (it may name a host, a path, a driver's words);
    a client is told :attr:`public`, which names the kind of dependency and nothing more.
    """

    retry_after: int = 1
    #: What a client may read.
    public: str = "a dependency is unavailable"

    def __init__(
        self, message: str, *, retry_after: int | None = None, public: str | None = None
    ) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after
        if public is not None:
            self.public = public


class DatabaseUnavailable(StateUnavailable):
    """The database cannot be reached."""

    public = "the database is unavailable"


class DatabaseBusy(StateUnavailable):
    """The database stayed locked past its busy timeout."""

    public = "the database is busy"


class CacheUnavailable(StateUnavailable):
    """The cache/store backend cannot be reached."""

    public = "the shared store is unavailable"


class IntegrityViolation(Conflict):
    """A constraint (unique, foreign key, check) refused a write."""


class UnknownJob(NotFound):
    """No job of that name is registered (``@job``) in this process."""


class MigrationError(MonolithError):
    """A migration failed or an applied migration was changed after it ran."""


class BackupError(MonolithError):
    """A backup or restore cannot be done or did not verify; the message says why."""


class WritesFenced(StateUnavailable):
    """The database takes no writes: it is being moved, or was moved, elsewhere (HTTP 503).

    Raised on every write to a SQLite database that ``monolith migrate-data`` fenced; reads
    keep working. The message says why and what to do.
    """

    retry_after = 5
    #: What clients read (the message itself names the target database, for the log only).
    public = "writes are closed while the data is moved, or after it moved to another database"
