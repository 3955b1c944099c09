"""What the event log hands out: messages with ids, and replays after an id.

Every backend we ship gives each published message an id that orders it after every message
published before it (database: the row id; Redis: the stream entry id; memory: a counter), and
keeps messages for a while, so a client that reconnects with the last id it saw
(``Last-Event-ID``) gets what it missed, or learns that it is gone.

Backends that carry messages without ids of their own (Redis pub/sub, Litestar's memory
backend) send the id in front of the payload: :func:`pack` and :func:`unpack`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Replay:
    #: The kept messages after the id asked for, oldest first (empty unless complete).
    messages: list[Message]
    #: False when some messages after that id are no longer kept: the client must start over.
    complete: bool
    #: The newest id given out so far ("" when none): where a client that starts over resumes.
    head: str


def pack(message_id: str, data: bytes) -> bytes:
    return message_id.encode() + b"\n" + data


def unpack(channel: str, wire: bytes) -> Message:
    message_id, _, data = wire.partition(b"\n")
    return Message(message_id.decode(), channel, data)
