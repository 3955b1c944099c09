"""Database backends (one module each) and the migration runner; see :mod:`monolith.db`."""
