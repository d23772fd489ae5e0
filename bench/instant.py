"""An sdrest server whose generation worker answers at once: what is left of a job's time is the server's own path
(admission, SQLite, the pipe from the worker, encoding, HTTP). `bench/overhead.py --instant` starts it.

    python bench/instant.py --models-dir DIR --data-dir DIR --port N

The worker is a real child process started by the real supervisor, so the raw pixels still cross the pipe; it only
skips the binding, answering each job with one mid-grey image of the asked size (the server encodes it like any).
"""

from __future__ import annotations

import argparse
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdrest.engine import messages as m  # noqa: E402

ENTRY = "bench.instant:worker"
INFO = {"binding": "instant", "sd_cpp": "instant", "backend": "CPU", "backends": ["CPU"], "devices": []}


def worker(conn: Connection) -> None:
    """The worker's entry point: Ready, then one Done per Generate, at once."""
    m.send(conn, m.Ready(INFO))
    while True:
        try:
            job = m.receive_in_child(conn)
        except (EOFError, OSError):
            return
        spec: Any = job.spec  # type: ignore[attr-defined]
        width, height = getattr(spec, "width", 64), getattr(spec, "height", 64)
        pixels = bytes([128]) * (3 * width * height)
        m.send(conn, m.Done([m.RawImage(width, height, "RGB", pixels)], {"load": 0.0, "generate": 0.0}))


def main() -> None:
    import uvicorn

    from sdrest.app import create_app
    from sdrest.engine.supervisor import Supervisor
    from sdrest.settings import load_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    class Instant(Supervisor):
        def probe(self) -> dict[str, Any]:
            return dict(INFO)

    settings = load_settings({"models_dir": args.models_dir, "data_dir": args.data_dir, "port": args.port})
    app = create_app(settings, engine=Instant({}, entry=ENTRY))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
