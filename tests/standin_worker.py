"""A stand-in generation worker (no binding) for supervisor tests: `slow_start` takes a second and a half to say it is
ready, then answers each job with one black image of the asked size."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection

from sdrest.engine import messages as m


def slow_start(conn: Connection) -> None:
    time.sleep(1.5)
    m.send(conn, m.Ready({"backend": "stand-in"}))
    while True:
        try:
            job = m.receive_in_child(conn)
        except (EOFError, OSError):
            return
        assert isinstance(job, m.Generate)
        spec = job.spec
        pixels = bytes(3 * spec.width * spec.height)
        m.send(conn, m.Done([m.RawImage(spec.width, spec.height, "RGB", pixels)], {"load": 0.0, "generate": 0.0}))
