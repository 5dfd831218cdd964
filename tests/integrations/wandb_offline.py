"""Read a W&B offline run directory back: the records of its ``run-*.wandb`` log.

The log is LevelDB's log format with W&B's own file header (``:W&B``, magic 0xBEE1,
version 0): 32 KiB blocks of chunks, each with a 7-byte header (CRC-32C, length,
type: full, first, middle, last). The records are W&B's own protobuf messages
(``wandb.proto.wandb_internal_pb2.Record``). wandb 0.31 reads the log in its Go core
only, so the test reads it here, with W&B's message classes.
"""

from __future__ import annotations

import glob
import os
import struct
from typing import Any, Iterator

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def chunks(data: bytes) -> Iterator[bytes]:
    ident, magic, version = HEADER.unpack_from(data, 0)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    pos, pending = HEADER.size, b""
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:  # the writer pads a block's tail too short for a header
            pos += left
            continue
        _crc, length, kind = CHUNK.unpack_from(data, pos)
        body = data[pos + CHUNK.size:pos + CHUNK.size + length]
        pos += CHUNK.size + length
        if kind == FULL:
            yield body
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            yield pending + body
            pending = b""
        else:  # zero padding at the end of the file
            break


def records(run_dir: str) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    with open(path, "rb") as fh:
        data = fh.read()
    out = []
    for body in chunks(data):
        record = pb.Record()
        record.ParseFromString(body)
        out.append(record)
    return out


def offline_runs(wandb_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(wandb_dir, "wandb", "offline-run-*")))
