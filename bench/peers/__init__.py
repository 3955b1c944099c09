"""The systems the benchmark compares ``monolith serve`` with.

- :mod:`bench.peers.ceiling`: a bare ASGI callable, the most a Python ASGI server can do here.
- :mod:`bench.peers.hello`: plain Litestar answering the benchmark's routes with a constant.
- :mod:`bench.peers.seed`: the stack the seed articles recommend (FastAPI on uvicorn, Redis
  ``@cached``, SQLAlchemy async on PostgreSQL, arq on Redis for jobs).

None of this is part of the shipped package; it is imported by benchmark processes only.
"""
