"""The shop: the catalog and orders, one folder per feature.

Each feature folder has the same shape, so a new one can copy it:

- ``model.py``: its types (msgspec structs), queries and writes, on the :mod:`monolith.db`
  interface; no HTTP, no cache, no events;
- ``cache.py``: its cached reads (``@cached``), each key declared once;
- ``effects.py``: what follows a committed change (cache keys to drop, events to publish);
- ``routes.py``: ``routes(svc)``, its HTTP handlers;
- ``jobs.py``: its background jobs and schedules.

:mod:`monolith.features` lists the features the app serves.
"""
