"""HTTP layer: one module per area, each exposing ``routes(svc)``; see :mod:`monolith.app`."""
