"""Benchmark: what each stable-diffusion.cpp load/generation option costs in speed and GPU memory (bare binding).

    python bench/gpu_options.py MODEL --taesd TAESD [--size 512] [--steps 20] [--runs 3]
        [--big-size 1024] [--big-runs 3] [--big-configs baseline,offload_params_to_cpu,vae_tiling]
        [--configs baseline,flash_attn,...] [--budget 300] [--reserve 60] [--out DIR]

Each config runs in a fresh child process (this file with `--child`), so a crash or a hang in one is recorded (with
its signal) and the others still run. The child loads the model with the config's constructor options, then per size
generates once to warm up and `--runs` times timed (txt2img, euler_a, cfg 7, fixed seed, sd.cpp's automatic eta),
and reports each step as a line in a protocol file. Meanwhile the parent samples the GPU's used memory every 50 ms
(NVML, else `nvidia-smi`) and keeps the peak of each phase, minus the reading taken before the child started.

Results go to DIR/options.json and DIR/options.md after every config, so a run cut short still leaves its table;
children's output (sd.cpp's log) goes to DIR/options.log. Configs that would start with less than `--reserve` seconds
of the `--budget` left are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# name -> (constructor options, generate_image options). `max_vram` only splits graphs when the weights live on the
# CPU (sd.cpp: params backend != runtime backend), so it is measured together with `offload_params_to_cpu`.
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "baseline": ({}, {}),
    "flash_attn": ({"flash_attn": True}, {}),
    "diffusion_flash_attn": ({"diffusion_flash_attn": True}, {}),
    "offload_params_to_cpu": ({"offload_params_to_cpu": True}, {}),
    "vae_tiling": ({}, {"vae_tiling": True}),
    "keep_clip_on_cpu": ({"keep_clip_on_cpu": True}, {}),
    "taesd": ({"taesd_path": "@taesd"}, {}),
    "enable_mmap": ({"enable_mmap": True}, {}),
    "wtype_q8_0": ({"wtype": "q8_0"}, {}),
    "wtype_q4_0": ({"wtype": "q4_0"}, {}),
    "offload+max_vram_1g": ({"offload_params_to_cpu": True, "max_vram": 1.0}, {}),
    "wtype_f32": ({"wtype": "f32"}, {}),
    "diffusion_conv_direct": ({"diffusion_conv_direct": True}, {}),
    "vae_conv_direct": ({"vae_conv_direct": True}, {}),
    "keep_vae_on_cpu": ({"keep_vae_on_cpu": True}, {}),
    "offload+flash_attn+vae_tiling": ({"offload_params_to_cpu": True, "flash_attn": True}, {"vae_tiling": True}),
}
# sd.cpp log lines worth keeping per config: where the weights and compute buffers went, and what it switched on.
LOG_KEEP = re.compile(
    r"backend|memory size|buffer size|flash|graph cut|offload|tiling|conv2d direct|taesd|tae|mmap|"
    r"wtype|error|assert|fail",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------------------------------------------- child --


def child(spec: dict[str, Any]) -> None:
    """Load once with the config's options, then warm up and time each size; report through the protocol file."""
    proto = open(spec["protocol"], "a", buffering=1)

    def say(*fields: object) -> None:
        proto.write(" ".join(str(f) for f in fields) + "\n")

    import stable_diffusion_cpp as sdc
    from stable_diffusion_cpp import stable_diffusion_cpp as low

    ctor = {k: (spec["taesd"] if v == "@taesd" else v) for k, v in spec["ctor"].items()}
    threads = int(low.sd_get_num_physical_cores())
    say("@threads", threads)
    say("@phase", "load")
    start = time.perf_counter()
    sd = sdc.StableDiffusion(model_path=spec["model"], n_threads=threads, verbose=True, **ctor)
    load = time.perf_counter() - start
    if not sd._model.model:  # a NULL context: any later call would segfault
        say("@error", "load returned a NULL context")
        sys.exit(3)
    say("@load", f"{load:.3f}")
    deadline = spec["deadline"]
    last, previous = 0.0, 0
    for size, runs in spec["sizes"]:
        say("@phase", size)
        last *= (size / previous) ** 2 if previous else 0.0  # a bigger size is estimated from the last one's time
        previous = size
        for index in range(runs + 1):  # index 0 is the warm-up
            if index > 1 and last > spec["slow"]:
                break  # a slow config gets one timed run, not three
            if time.time() + last > deadline:
                say("@cut", size, index)
                return
            start = time.perf_counter()
            images = sd.generate_image(
                prompt="a lighthouse on a cliff at dusk",
                width=size,
                height=size,
                sample_steps=spec["steps"],
                cfg_scale=7.0,
                sample_method="euler_a",
                eta=float("inf"),
                seed=42,
                **spec["gen"],
            )
            last = time.perf_counter() - start
            pixels = images[0].tobytes()
            digest = hashlib.sha256(pixels).hexdigest()[:16]
            say("@gen", size, index, f"{last:.4f}", digest, f"{sum(pixels) / len(pixels):.2f}")


# ------------------------------------------------------------------------------------------------------ GPU memory --


def memory_reader() -> Callable[[], int | None]:
    """A function returning the GPU's used memory in MiB (GPU 0), or None where there is no NVIDIA GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used // (1024 * 1024))
    except Exception:  # noqa: BLE001 - no NVML: fall back to nvidia-smi, or to nothing
        pass
    if shutil.which("nvidia-smi") is None:
        return lambda: None

    def smi() -> int | None:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
        )
        return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else None

    return smi


def settle(read: Callable[[], int | None], seconds: float = 3.0) -> int | None:
    """The idle reading: wait (up to `seconds`) until the last child's memory is gone, i.e. two equal readings."""
    previous = read()
    end = time.monotonic() + seconds
    while previous is not None and time.monotonic() < end:
        time.sleep(0.2)
        now = read()
        if now == previous:
            break
        previous = now
    return previous


# --------------------------------------------------------------------------------------------------------- parent --


def run_config(
    name: str, args: argparse.Namespace, deadline: float, read: Callable[[], int | None], log: Path, scratch: Path
) -> dict[str, Any]:
    """One config in a child process, sampling GPU memory per phase; the parsed result."""
    ctor, gen = CONFIGS[name]
    sizes = [[args.size, args.runs]] + ([[args.big_size, args.big_runs]] if name in args.big_configs else [])
    protocol = scratch / f"{name}.proto"
    spec = {
        "model": args.model,
        "taesd": args.taesd,
        "ctor": ctor,
        "gen": gen,
        "sizes": sizes,
        "steps": args.steps,
        "deadline": deadline - 5,
        "slow": args.slow,
        "protocol": str(protocol),
    }
    idle = settle(read)
    result: dict[str, Any] = {"config": name, "ctor": ctor, "gen": gen, "idle_mib": idle, "gens": {}, "peak_mib": {}}
    part = scratch / f"{name}.log"
    started = time.monotonic()
    with open(part, "w") as out:
        child_process = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        phase, seen, timeout = "start", 0, deadline - time.time()
        try:
            while child_process.poll() is None:
                used = read()
                if used is not None and idle is not None:
                    peak = result["peak_mib"]
                    peak[phase] = max(peak.get(phase, 0), used - idle)
                if time.monotonic() - started > timeout:
                    os.killpg(child_process.pid, signal.SIGKILL)
                    child_process.wait()
                    result["status"] = "timeout (budget)"
                    break
                if protocol.exists():
                    lines = protocol.read_text().splitlines()
                    for line in lines[seen:]:
                        if line.startswith("@phase"):
                            if phase == "load" and used is not None and idle is not None:
                                result["after_load_mib"] = used - idle
                            phase = line.split()[1]
                    seen = len(lines)
                time.sleep(0.05)
        finally:
            if child_process.poll() is None:
                os.killpg(child_process.pid, signal.SIGKILL)
                child_process.wait()
    result["wall_s"] = round(time.monotonic() - started, 1)
    code = child_process.returncode
    for line in protocol.read_text().splitlines() if protocol.exists() else []:
        fields = line.split()
        if fields[0] == "@load":
            result["load_s"] = float(fields[1])
        elif fields[0] == "@gen":
            size, index, secs, digest, mean = fields[1:]
            result["gens"].setdefault(size, []).append({"s": float(secs), "sha": digest, "mean": float(mean)})
        elif fields[0] == "@error":
            result["error"] = " ".join(fields[1:])
        elif fields[0] == "@threads":
            result["threads"] = int(fields[1])
        elif fields[0] == "@cut":
            result["cut"] = f"size {fields[1]} run {fields[2]} (budget)"
    if "status" not in result:
        if code == 0:
            result["status"] = "ok"
        elif code < 0:
            result["status"] = f"crash ({signal.Signals(-code).name})"
        else:
            result["status"] = f"exit {code}"
    text = part.read_text(errors="replace")
    part.unlink()
    with open(log, "a") as whole:
        whole.write(f"\n===== {name} ({result['status']}) =====\n{text}")
    kept = list(dict.fromkeys(line.strip() for line in text.splitlines() if LOG_KEEP.search(line)))
    result["log"] = kept[:40]
    if result["status"] != "ok":
        result["log_tail"] = text.strip().splitlines()[-15:]
    for size, gens in result["gens"].items():
        timed = [g["s"] for g in gens[1:]]
        result[f"median_{size}"] = round(statistics.median(timed), 3) if timed else None
        result[f"sha_{size}"] = gens[0]["sha"]
        result[f"deterministic_{size}"] = len({g["sha"] for g in gens}) == 1
    return result


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The markdown table of all results so far."""
    small, big = str(args.size), str(args.big_size)
    base = next((r for r in results if r["config"] == "baseline"), {})
    head = (
        f"| config | status | load s | {small}² s | vs baseline | peak VRAM {small}² MiB | VRAM after load MiB "
        f"| bytes = baseline | {big}² s | peak VRAM {big}² MiB |\n|" + " --- |" * 10
    )
    rows = [head]
    for r in results:
        median, base_median = r.get(f"median_{small}"), base.get(f"median_{small}")
        ratio = f"{median / base_median:.2f}×" if median and base_median else "–"
        same = "–"
        if r.get(f"sha_{small}") and base.get(f"sha_{small}"):
            same = "yes" if r[f"sha_{small}"] == base[f"sha_{small}"] else "no"
        status = r["status"] + (f", cut at {r['cut']}" if "cut" in r else "")
        rows.append(
            f"| {r['config']} | {status} | {fmt(r.get('load_s'))} | {fmt(median)} | {ratio} "
            f"| {fmt(r['peak_mib'].get(small))} | {fmt(r.get('after_load_mib'))} | {same} "
            f"| {fmt(r.get(f'median_{big}'))} | {fmt(r['peak_mib'].get(big))} |"
        )
    return "\n".join(rows) + "\n"


def save(out: Path, args: argparse.Namespace, results: list[dict[str, Any]], skipped: list[str]) -> str:
    """Write options.md and options.json under `out`; the markdown."""
    markdown = table(results, args) + (f"\nSkipped (budget): {', '.join(skipped)}\n" if skipped else "")
    (out / "options.md").write_text(markdown)
    settings = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}
    (out / "options.json").write_text(json.dumps({"args": settings, "results": results, "skipped": skipped}, indent=1))
    return markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--taesd", default="")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per size, after one warm-up")
    parser.add_argument("--big-size", type=int, default=1024)
    parser.add_argument("--big-runs", type=int, default=3)
    parser.add_argument("--big-configs", default="baseline,offload_params_to_cpu,vae_tiling")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the whole benchmark")
    parser.add_argument("--reserve", type=float, default=60.0, help="skip configs with fewer seconds than this left")
    parser.add_argument("--slow", type=float, default=15.0, help="a warm-up slower than this: one timed run")
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if not args.model:
        parser.error("MODEL is required")
    deadline = time.time() + args.budget
    args.big_configs = set(args.big_configs.split(","))
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {', '.join(CONFIGS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "options.log"
    log.write_text("")
    read = memory_reader()
    scratch = Path(tempfile.mkdtemp(prefix="gpu_options-"))
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name in names:
        if deadline - time.time() < args.reserve:
            skipped.append(name)
            continue
        print(f"--- {name}", flush=True)
        results.append(run_config(name, args, deadline, read, log, scratch))
        print(json.dumps({k: v for k, v in results[-1].items() if k not in ("log", "log_tail")}), flush=True)
        save(out, args, results, skipped)
    print(save(out, args, results, skipped), flush=True)


if __name__ == "__main__":
    main()
