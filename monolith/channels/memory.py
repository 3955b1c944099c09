"""Litestar's in-memory pub/sub for one process (tests, scripts), with ids and a replay log."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable

from litestar.channels.backends.memory import MemoryChannelsBackend

from monolith.channels.message import Message, Replay, pack, unpack


class MemoryChannels(MemoryChannelsBackend):
    """Litestar's in-memory backend, numbering its messages and keeping them ``keep`` seconds."""

    scope = "process"

    def __init__(self, history: int = 0, *, keep: float = 600.0) -> None:
        super().__init__(history=history)
        self.keep = keep
        self._seq = 0
        self._trimmed = 0
        self._log: deque[tuple[float, int, str, bytes]] = deque()

    def describe(self) -> str:
        return "memory:// (this process only)"

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        now = time.time()
        while self._log and self._log[0][0] < now - self.keep:
            self._trimmed = self._log.popleft()[1]
        for channel in dict.fromkeys(channels):
            self._seq += 1
            self._log.append((now, self._seq, channel, bytes(data)))
            await super().publish(pack(str(self._seq), data), [channel])

    async def stream_messages(self) -> AsyncGenerator[Message, None]:
        async for channel, wire in super().stream_events():
            yield unpack(channel, wire)

    async def stream_events(self) -> AsyncGenerator[tuple[str, bytes], None]:
        async for message in self.stream_messages():
            yield message.channel, message.data

    async def get_history(self, channel: str, limit: int | None = None) -> list[bytes]:
        return [unpack(channel, wire).data for wire in await super().get_history(channel, limit)]

    async def replay(self, channels: Iterable[str], after: str) -> Replay:
        wanted = set(channels)
        since = int(after) if after.isdigit() else -1
        complete = self._trimmed <= since <= self._seq
        messages = [
            Message(str(seq), channel, data)
            for _, seq, channel, data in self._log
            if seq > since and channel in wanted
        ]
        return Replay(messages if complete else [], complete, str(self._seq))
