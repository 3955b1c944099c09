"""Observability: Prometheus metrics (multi-process), statement statistics, loop lag, history.

- :mod:`~monolith.observability.metrics`: the metrics and the multi-process wiring;
- :mod:`~monolith.observability.statements` and :mod:`~monolith.observability.statsfile`:
  the ``pg_stat_statements`` view for every backend, shared by every process of a box;
- :mod:`~monolith.observability.loopmon`: event-loop lag, and who blocked the loop;
- :mod:`~monolith.observability.history`: the last hour for the ``/admin`` plots;
- :mod:`~monolith.observability.component`: the per-process component the lifespan starts.
"""

from monolith.observability.component import Observability
from monolith.observability.metrics import Metrics

__all__ = ["Metrics", "Observability"]
