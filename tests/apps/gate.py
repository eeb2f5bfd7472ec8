"""A streamed body for the framework apps: after the first chunk, waits (at most 10 s) for
the file named by ``gate`` to exist, so the client can prove it received the first chunk before
the last was produced."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator


def gated_chunks(gate: str) -> Iterator[bytes]:
    yield b"first\n"
    deadline = time.monotonic() + 10
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    yield b"second\n"
    yield b"third\n"
