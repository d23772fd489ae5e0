"""Facts about the machine: CPU, memory, disks, and a process's memory, read from /proc (Linux) without extra
packages. Blocking file reads: call from a thread."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any


def _meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return values


def memory() -> dict[str, int | None]:
    info = _meminfo()
    return {"total": info.get("MemTotal"), "available": info.get("MemAvailable")}


def cpu() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"model": model, "logical_cores": os.cpu_count()}


def disk(path: Path) -> dict[str, Any]:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return {"path": str(path), "total": usage.total, "free": usage.free}


def process_memory(pid: int | None) -> int | None:
    """Resident memory of a process in bytes (None when it is not running)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def vendor_gpus() -> list[dict[str, Any]]:
    """GPUs and their memory as the vendor's tool reports them (nvidia-smi), for builds whose binding cannot ask ggml;
    empty when there is no such tool or it fails. Runs a process: call from a thread."""
    command = ["nvidia-smi", "--query-gpu=index,name,memory.free,memory.total", "--format=csv,noheader,nounits"]
    if shutil.which(command[0]) is None:
        return []
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    devices = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not (parts[0].isdigit() and parts[2].isdigit() and parts[3].isdigit()):
            continue
        mib = 1024 * 1024
        devices.append({"name": f"CUDA{parts[0]}", "description": parts[1], "memory_free": int(parts[2]) * mib,
                        "memory_total": int(parts[3]) * mib, "source": "nvidia-smi"})  # fmt: skip
    return devices
