"""prometheus_client's multi-process values, without a ``getpid()`` per increment.

prometheus_client's ``MultiProcessValue`` notices a fork by calling ``os.getpid()`` on every
``inc``; a request makes four (its count, its latency's sum and bucket, a cache hit). Profiled
on a server worker under load on a cached read (``py-spy --gil``), that check was ~5% of the
request's time and the values ~13% altogether. Here a fork is noticed once, by
``os.register_at_fork`` (the child reopens its files when it first counts), and the rest is
prometheus_client's own: the same files (``<type>_<pid>.db`` in ``PROMETHEUS_MULTIPROC_DIR``),
written by its ``MmapedDict`` under its keys (``mmap_key``), so ``MultiProcessCollector`` and
``mark_process_dead`` read them as before. Adapted from prometheus_client's
``values.MultiProcessValue`` (Apache-2.0).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from prometheus_client.mmap_dict import MmapedDict, mmap_key


class _State:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.forked = False  # set in a forked child until it reopens its files


def multiprocess_value_class() -> type:
    """A value class for ``prometheus_client.values.ValueClass`` (multi-process mode)."""
    files: dict[str, MmapedDict] = {}
    made: list[Any] = []
    state = _State()

    def after_fork_in_child() -> None:
        # The child writes files of its own, opened when it first counts (a child that never
        # counts opens none); a lock another thread held at the fork is not its.
        state.pid, state.lock, state.forked = os.getpid(), threading.Lock(), True

    def reopen() -> None:  # under the lock, in a forked child
        state.forked = False
        for mapped in files.values():
            mapped.close()  # type: ignore[no-untyped-call]
        files.clear()
        for value in made:
            value.reset()

    os.register_at_fork(after_in_child=after_fork_in_child)

    class MultiProcessValue:
        """A float in this process's memory-mapped file (prometheus_client's format)."""

        _multiprocess = True

        def __init__(
            self,
            typ: str,
            metric_name: str,
            name: str,
            labelnames: list[str],
            labelvalues: list[str],
            help_text: str,
            multiprocess_mode: str = "",
            **kwargs: Any,
        ) -> None:
            self._params = (typ, metric_name, name, labelnames, labelvalues, help_text)
            self._mode = multiprocess_mode
            with state.lock:
                if state.forked:
                    reopen()
                self.reset()
                made.append(self)

        def reset(self) -> None:
            typ, metric_name, name, labelnames, labelvalues, help_text = self._params
            prefix = f"{typ}_{self._mode}" if typ == "gauge" else typ
            mapped = files.get(prefix)
            if mapped is None:
                directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
                path = os.path.join(directory, f"{prefix}_{state.pid}.db")
                mapped = files[prefix] = MmapedDict(path)  # type: ignore[no-untyped-call]
            self._file = mapped
            self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
            self._value, self._timestamp = mapped.read_value(self._key)  # type: ignore[no-untyped-call]

        def inc(self, amount: float) -> None:
            with state.lock:
                if state.forked:
                    reopen()
                self._value += amount
                self._timestamp = 0.0
                self._file.write_value(self._key, self._value, 0.0)  # type: ignore[no-untyped-call]

        def set(self, value: float, timestamp: float | None = None) -> None:
            with state.lock:
                if state.forked:
                    reopen()
                self._value = value
                self._timestamp = timestamp or 0.0
                self._file.write_value(self._key, self._value, self._timestamp)  # type: ignore[no-untyped-call]

        def set_exemplar(self, exemplar: Any) -> None:
            return  # prometheus_client keeps no exemplars in multi-process mode either

        def get(self) -> float:
            with state.lock:
                if state.forked:
                    reopen()
                return float(self._value)

        def get_exemplar(self) -> None:
            return None

        @staticmethod
        def close_all() -> None:
            """Close this process's files (its values are not to be used after)."""
            with state.lock:
                for mapped in files.values():
                    mapped.close()  # type: ignore[no-untyped-call]
                files.clear()
                made.clear()

    return MultiProcessValue
