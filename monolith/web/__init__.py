"""HTTP routes and request helpers; each route module exposes ``routes(svc)``."""
