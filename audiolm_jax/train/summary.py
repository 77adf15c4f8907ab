"""Metric output: a progress line in the log and TensorBoard event files, without TensorFlow.

TensorBoard reads TFRecord files of `Event` protos. We write them with tensorboard's own protos
and a CRC32C of our own, because tensorboard's writer imports TensorFlow when it is installed,
and the trainer must stay usable without importing TF.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from tensorboard.compat.proto import event_pb2, summary_pb2


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as the TFRecord format requires."""
    c = 0xFFFFFFFF
    for byte in data:
        c = _TABLE[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class EventWriter:
    """Appends scalar summaries to `logdir/events.out.tfevents.*`; TensorBoard reads them."""

    def __init__(self, logdir: str):
        from audiolm_jax.train import files

        files.makedirs(logdir)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self._f = files.open_file(f"{logdir}/{name}", "ab")
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: event_pb2.Event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._f.write(header + struct.pack("<I", _masked_crc(header)))
        self._f.write(data + struct.pack("<I", _masked_crc(data)))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()
            ]
        )
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class NullWriter:
    """What processes other than the first write: nothing."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def read_scalars(path: str) -> list[tuple[int, str, float]]:
    """Reads back (step, tag, value) from one event file; used by tests and reports."""
    out = []
    with open(path, "rb") as f:
        while header := f.read(12):
            (n,) = struct.unpack("<Q", header[:8])
            data = f.read(n)
            f.read(4)
            event = event_pb2.Event.FromString(data)
            for v in event.summary.value:
                out.append((event.step, v.tag, v.simple_value))
    return out


def progress_bar(step: int, total: int, width: int = 20) -> str:
    """`[#####-----]  25%` for the log line."""
    frac = min(max(step / max(total, 1), 0.0), 1.0)
    filled = int(round(frac * width))
    return f"[{'#' * filled}{'-' * (width - filled)}] {100 * frac:3.0f}%"


def format_duration(seconds: float) -> str:
    """Compact h:mm:ss for ETAs."""
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
