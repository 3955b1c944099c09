"""The app's Prometheus metrics, correct with several granian workers.

With several workers, each process counts on its own; prometheus_client's multi-process mode
has every process write its values to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics`` (in whichever worker answers) adds them up. ``monolith serve`` wipes that
directory and sets the variable before granian forks its workers (:func:`enable_multiprocess`);
without it (tests, CLI commands) a process counts in its own registry.

Metric objects belong to a :class:`Metrics` instance (one per app, its own registry), never to
module globals, so building the app twice in one process does not register names twice.
Label values are bounded: route templates (never raw paths), a fixed set of methods, job
names, queue names. This module must never put a user-supplied string in a label.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from monolith.files import private_dir
from monolith.observability.values import multiprocess_value_class

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Request latency buckets: fine below 100 ms where the app lives, and around the 1 s alert.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_dir() -> str | None:
    """The directory this process writes its metric files to, when in multi-process mode."""
    return os.environ.get(MULTIPROC_ENV) or None


def enable_multiprocess(directory: Path, *, wipe: bool = True) -> None:
    """Before anything counts: this process and those it forks write their metrics there.

    ``serve`` wipes the directory before granian forks (files left by a previous run would be
    added to this run's numbers, and a pid reused by a new worker would continue an old
    worker's counters). ``monolith worker`` may run twice on one box, so it does not wipe;
    it retires the live gauges of processes that are gone instead.
    """
    if wipe and directory.exists():
        shutil.rmtree(directory)
    private_dir(directory)
    if not wipe:
        for path in directory.glob("gauge_live*_*.db"):
            pid = int(path.stem.rsplit("_", 1)[1])
            if not _alive(pid):
                mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus_client picks its value class when first imported; it was imported before
    # the directory was known, so pick again (metrics built from now on use files), ours:
    # the same files without a getpid() per increment (monolith.observability.values).
    values.ValueClass = multiprocess_value_class()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_process(pid: int) -> None:
    """A worker has exited: drop its live gauges (its counters stay in the totals)."""
    directory = multiprocess_dir()
    if directory:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def method_label(method: object) -> str:
    """A client picks the method: anything unusual shares one label."""
    return method if isinstance(method, str) and method in _METHODS else "other"


class Metrics:
    """Every metric the app exports. Built once per app; cheap to build."""

    def __init__(self, peers: Iterable[Path] = ()) -> None:
        #: Other process trees' metric directories on this box (``monolith worker``'s),
        #: added into this one's answer.
        self.peers = tuple(peers)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # -- HTTP ------------------------------------------------------------------------
        self.http_requests = Counter(
            "monolith_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "monolith_http_request_duration_seconds",
            "Time from request to the end of the response, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # -- jobs ------------------------------------------------------------------------
        self.jobs_enqueued = Counter(
            "monolith_jobs_enqueued", "Jobs added to the queue", ["job"], registry=r
        )
        self.jobs_succeeded = Counter(
            "monolith_jobs_succeeded", "Job runs that succeeded", ["job"], registry=r
        )
        self.jobs_failed = Counter(
            "monolith_jobs_failed",
            "Jobs that failed for good (no attempts left)",
            ["job"],
            registry=r,
        )
        self.jobs_retried = Counter(
            "monolith_jobs_retried",
            "Job runs that failed and were scheduled again",
            ["job"],
            registry=r,
        )
        self.job_duration = Histogram(
            "monolith_job_duration_seconds",
            "Time a job run took, by job name",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        # -- cache -----------------------------------------------------------------------
        self.cache_hits = Counter(
            "monolith_cache_hits", "Cache reads that found a value", ["prefix"], registry=r
        )
        self.cache_misses = Counter(
            "monolith_cache_misses",
            "Cache reads that had to compute the value",
            ["prefix"],
            registry=r,
        )
        # -- database --------------------------------------------------------------------
        self.db_statements = Counter(
            "monolith_db_statements", "SQL statements run, by verb", ["verb"], registry=r
        )
        self.db_seconds = Counter(
            "monolith_db_statement_seconds",
            "Time spent in SQL statements, by verb",
            ["verb"],
            registry=r,
        )
        self.db_slow = Counter(
            "monolith_db_slow_statements",
            "Statements slower than MONOLITH_SLOW_STATEMENT_MS",
            ["verb"],
            registry=r,
        )
        self.ratelimit_fallbacks = Counter(
            "monolith_ratelimit_fallbacks",
            "Rate-limit decisions counted per process because the store was unavailable",
            ["limit"],
            registry=r,
        )
        # -- the process -----------------------------------------------------------------
        self.loop_lag = Gauge(
            "monolith_event_loop_lag_seconds",
            "Largest event-loop delay over the last few seconds, per worker",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.loop_blocks = Counter(
            "monolith_event_loop_blocks",
            "Times a handler kept the event loop busy past MONOLITH_LOOP_BLOCK_MS, by route",
            ["route"],
            registry=r,
        )
        self.memory = Gauge(
            "monolith_process_resident_memory_bytes",
            "Resident memory of each live process",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.open_fds = Gauge(
            "monolith_process_open_fds",
            "Open file descriptors of each live process",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.cpu = Counter(
            "monolith_process_cpu_seconds", "CPU time used by the app's processes", registry=r
        )
        self.worker_starts = Counter(
            "monolith_worker_starts", "Worker processes that started serving", registry=r
        )
        self.worker_restarts = Counter(
            "monolith_worker_restarts",
            "Workers that the serve process replaced after they exited",
            registry=r,
        )
        self.serve_started = Gauge(
            "monolith_serve_start_time_seconds",
            "When the serve process started (Unix time)",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        # Children cached by label values: labels() costs a lock and a dict build per call.
        self._http: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._cache: dict[tuple[str, bool], Counter] = {}
        self._declarations: list[tuple[str, str, str]] | None = None

    def observe_request(self, route: str, method: object, status: int, seconds: float) -> None:
        m = method_label(method)
        key = (route, m, status)
        pair = self._http.get(key)
        if pair is None:
            pair = (
                self.http_requests.labels(route, m, str(status)),
                self.http_duration.labels(route, m),
            )
            self._http[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def cache_lookup(self, prefix: str, hit: bool) -> None:
        """One read of a ``@cached`` function (prefixes are declared in code, so bounded)."""
        child = self._cache.get((prefix, hit))
        if child is None:
            family = self.cache_hits if hit else self.cache_misses
            child = self._cache[(prefix, hit)] = family.labels(prefix)
        child.inc()

    def job_enqueued(self, name: str, count: int = 1) -> None:
        self.jobs_enqueued.labels(name).inc(count)

    def job_finished(self, name: str, outcome: str, seconds: float) -> None:
        """``outcome``: ``succeeded``, ``retried`` (will run again) or ``failed`` (for good)."""
        counter = {
            "succeeded": self.jobs_succeeded,
            "retried": self.jobs_retried,
            "failed": self.jobs_failed,
        }[outcome]
        counter.labels(name).inc()
        self.job_duration.labels(name).observe(seconds)

    def families(self, extra: Iterable[Metric] = ()) -> list[Metric]:
        """Every metric family, added up over all processes when in multi-process mode."""
        directory = multiprocess_dir()
        found: list[Metric] = []
        if directory:
            files = glob.glob(os.path.join(directory, "*.db"))
            for peer in self.peers:
                if str(peer) != directory:
                    files += glob.glob(os.path.join(peer, "*.db"))
            found.extend(MultiProcessCollector.merge(files))  # type: ignore[no-untyped-call]
            # A metric no process has touched yet has no file entry; still say it exists
            # (HELP and TYPE, no samples), as a single-process registry would.
            seen = {m.name for m in found}
            found.extend(Metric(*d) for d in self._declared() if d[0] not in seen)
        else:
            found.extend(self.registry.collect())
        found.extend(extra)
        return found

    def _declared(self) -> list[tuple[str, str, str]]:
        if self._declarations is None:
            self._declarations = [
                (m.name, m.documentation, m.type) for m in self.registry.collect()
            ]
        return self._declarations

    def render(self, extra: Iterable[Metric] = ()) -> bytes:
        """The Prometheus text exposition of :meth:`families`."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(self.families(extra)))
        return generate_latest(registry)


class _Fixed(Collector):
    """A registry stand-in that yields families already collected."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
