"""The systemd side of the server without systemd: sd_notify datagrams, watchdog timing, journal log lines, and a
reload that applies what it can while serving."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from sdrest import service
from sdrest.settings import load_settings
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.test_api import make_client


def test_notify_sends_one_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert service.notify("READY=1", "STATUS=serving")
        assert sock.recv(100) == b"READY=1\nSTATUS=serving"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert service.notify("READY=1") is False


def test_watchdog_interval_is_half_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert service.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert service.watchdog_interval() is None


def test_journal_lines_carry_priorities_and_no_timestamps() -> None:
    formatter = service.JournalFormatter("%(name)s: %(message)s")
    record = logging.LogRecord("sdrest.jobs", logging.ERROR, __file__, 1, "it broke\nsecond line", None, None)
    assert formatter.format(record) == "<3>sdrest.jobs: it broke\n<3>second line"
    warning = logging.LogRecord("sdrest", logging.WARNING, __file__, 1, "careful", None, None)
    assert formatter.format(warning) == "<4>sdrest: careful"


def test_reload_applies_what_it_can_and_names_the_rest(
    library: Library, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    with make_client(library, data_dir, FakeEngine(), queue_size=5) as client:
        svc = client.app.state.services  # type: ignore[attr-defined]
        fresh = load_settings({"models_dir": library.root, "data_dir": data_dir, "queue_size": 9, "max_batch": 2,
                               "port": 9999}, env={})  # fmt: skip
        library.add("taesd", "taesd/taesd.safetensors")
        caplog.set_level(logging.INFO)
        svc.reload(fresh)
        assert (svc.settings.queue_size, svc.settings.max_batch, svc.queue.lane.limit) == (9, 2, 9)
        assert svc.settings.port == 7860  # needs a restart: kept, and said so
        assert "only a restart applies: port" in caplog.text
        assert any(e.name == "taesd/taesd.safetensors" for e in svc.catalog.entries)
        assert "ago" not in svc.status_line() and "queued" in svc.status_line()
