"""The systemd service: `install.sh --system` into a scratch root, the unit checked by systemd-analyze, its
ExecStart run as the service user with the unit's environment (readiness on a NOTIFY_SOCKET the test provides), a
generation over HTTP, SIGTERM mid-job with the job queued again at the next start, then upgrade and uninstall."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures import real
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.binding,
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a system service needs root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"),
]


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Path, str]]:
    """A scratch root, world-traversable so the service user reaches it, with sdrest installed as a service."""
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="sdrest-root-"))
    base.chmod(0o755)
    user = f"sdrsvc{uuid.uuid4().hex[:6]}"
    result = subprocess.run(["bash", str(ROOT / "install.sh"), "--system", "--root", str(base), "--user", user,
                             "--no-start"], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(result.stdout.splitlines()) <= 12, result.stdout  # a few lines a person reads
    try:
        yield base, user
    finally:
        subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _unit(base: Path) -> tuple[list[str], dict[str, str]]:
    text = (base / "etc/systemd/system/sdrest.service").read_text()
    command = re.search(r"^ExecStart=(.+)$", text, re.M).group(1).split()  # type: ignore[union-attr]
    env = dict(re.findall(r"^Environment=(\w+)=(.*)$", text, re.M))
    return command, env


def test_the_installed_files_and_their_modes(installed: tuple[Path, str]) -> None:
    base, user = installed
    config = base / "etc/sdrest/config.toml"
    info = config.stat()
    assert oct(info.st_mode & 0o777) == "0o640" and info.st_uid == 0
    assert pwd.getpwnam(user).pw_shell == "/usr/sbin/nologin" and pwd.getpwnam(user).pw_dir == str(
        base / "var/lib/sdrest"
    )
    assert (base / "opt/sdrest/venv/bin/sdrest").exists()
    assert (base / "var/lib/sdrest").stat().st_uid == pwd.getpwnam(user).pw_uid


def test_systemd_analyze_verify_and_security(installed: tuple[Path, str]) -> None:
    base, _ = installed
    unit = base / "etc/systemd/system/sdrest.service"
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True,
                              text=True)  # fmt: skip
    level = float(re.search(r"Overall exposure level for sdrest.service: ([\d.]+)", security.stdout).group(1))  # type: ignore[union-attr]
    print(f"systemd-analyze security: {level}")
    assert level <= 2.5, security.stdout


class Notifications:
    """A NOTIFY_SOCKET for the service, as systemd would provide it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        path.chmod(0o777)
        self.sock.settimeout(0.5)
        self.seen: list[str] = []

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.seen += self.sock.recv(4096).decode().splitlines()
            except TimeoutError:
                continue
            if text in self.seen:
                return
        raise AssertionError(f"no {text} from the service; got {self.seen}")


def _start(base: Path, user: str, notify: Notifications, port: int) -> subprocess.Popen[bytes]:
    command, env = _unit(base)
    account = pwd.getpwnam(user)
    return subprocess.Popen(
        [*command, "--port", str(port)],
        env={**env, "PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(notify.path), "HOME": account.pw_dir},
        user=account.pw_uid, group=account.pw_gid, cwd=account.pw_dir,
    )  # fmt: skip


def test_serve_generate_stop_mid_job_and_restart(installed: tuple[Path, str], tmp_path: Path) -> None:
    base, user = installed
    models = base / "var/lib/sdrest/models/checkpoints"
    models.mkdir(parents=True, exist_ok=True)
    target = models / "sdxs.safetensors"
    if not target.exists():
        shutil.copyfile(real.build("sd1-sdxs"), target)
    shutil.chown(target, user, user)
    sockets = Path(tempfile.mkdtemp(dir="/var/tmp"))
    sockets.chmod(0o755)
    notify = Notifications(sockets / "notify")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1"
    server = _start(base, user, notify, port)
    try:
        notify.wait_for("READY=1")
        image = httpx.post(f"{url}/generate?wait=true", json={"prompt": "a cat", "width": 64, "height": 64,
                                                              "steps": 1}, timeout=120)  # fmt: skip
        assert image.json()["status"] == "completed", image.text
        slow = httpx.post(f"{url}/generate", json={"prompt": "a slow cat", "width": 256, "height": 256, "steps": 30},
                          timeout=30).json()  # fmt: skip
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/jobs/{slow['id']}").json().get("progress") is None and time.monotonic() < deadline:
            time.sleep(0.2)
        server.terminate()
        # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught: systemd counts that as a clean stop.
        assert server.wait(30) in (0, -15)
        notify.wait_for("STOPPING=1", timeout=5)
        server = _start(base, user, notify, port)
        notify.wait_for("READY=1")
        job = httpx.get(f"{url}/jobs/{slow['id']}").json()
        assert job["status"] in ("queued", "running", "completed"), job  # queued again, not failed or lost
        assert httpx.post(f"{url}/jobs/{slow['id']}/cancel").status_code in (200, 409)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(sockets, ignore_errors=True)


def test_upgrade_keeps_data_and_config_then_uninstall(installed: tuple[Path, str]) -> None:
    base, user = installed
    config = base / "etc/sdrest/config.toml"
    config.write_text(config.read_text() + '\nlog_level = "debug"\n')
    before = config.read_text()
    marker = base / "var/lib/sdrest/keep-me"
    marker.write_text("data")
    program = base / "opt/sdrest/venv/bin/sdrest"
    old = program.stat().st_ino
    result = subprocess.run(["bash", str(ROOT / "install.sh"), "--system", "--root", str(base), "--user", user,
                             "--no-start"], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert program.stat().st_ino != old and config.read_text() == before and marker.read_text() == "data"
    removed = subprocess.run(["bash", str(ROOT / "uninstall.sh"), "--system", "--root", str(base), "--user", user],
                             capture_output=True, text=True)  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    assert "kept" in removed.stdout
    assert not (base / "opt/sdrest").exists() and not (base / "etc/systemd/system/sdrest.service").exists()
    assert config.exists() and marker.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    purged = subprocess.run(["bash", str(ROOT / "uninstall.sh"), "--system", "--root", str(base), "--user", user,
                             "--purge"], capture_output=True, text=True)  # fmt: skip
    assert purged.returncode == 0 and not config.exists() and not marker.exists()
