"""The typed messages between the server and its child processes, sent as msgpack over a `multiprocessing` pipe.

To the generation worker: `Generate`. From it: `Ready`, then per job `Loading`/`Loaded`, `Progress`, `PreviewImage`
and `Log` lines, ending in `Done` or `Failed`. A one-off child gets a `Call` and answers `Log`/`Progress` lines, then
`Result` or `Failed`. A child that dies answers nothing: the pipe's EOF is the crash report.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Any

import msgspec

from sdrest.specs import EngineSpec


class Message(msgspec.Struct, tag=True, array_like=True):
    """Base of every message; the tag is the class name."""


class Generate(Message):
    job_id: str
    spec: EngineSpec
    options: dict[str, Any]  # binding options of the loaded context (threads, LoRA mode, ...)


class Call(Message):
    function: str  # "module:function" to call in the child
    args: list[Any]


class Ready(Message):
    info: dict[str, Any]


class Log(Message):
    level: str
    line: str


class Loading(Message):
    pass


class Loaded(Message):
    seconds: float


class Progress(Message):
    step: int
    steps: int
    seconds_per_step: float


class PreviewImage(Message):
    step: int
    jpeg: bytes


class RawImage(msgspec.Struct, array_like=True):
    """Pixels as the binding made them; the server encodes them (PNG/JPEG/WebP with infotext)."""

    width: int
    height: int
    mode: str
    pixels: bytes


class Done(Message):
    images: list[RawImage]
    timings: dict[str, float]


class Failed(Message):
    code: str
    message: str


class Result(Message):
    value: Any


ToChild = Generate | Call
FromChild = Ready | Log | Loading | Loaded | Progress | PreviewImage | Done | Failed | Result

_encode = msgspec.msgpack.Encoder().encode
_to_child = msgspec.msgpack.Decoder(ToChild)
_from_child = msgspec.msgpack.Decoder(FromChild)


def send(conn: Connection, message: Message) -> None:
    conn.send_bytes(_encode(message))


def receive_in_child(conn: Connection) -> ToChild:
    return _to_child.decode(conn.recv_bytes())


def receive_from_child(conn: Connection) -> FromChild:
    return _from_child.decode(conn.recv_bytes())
