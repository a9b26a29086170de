"""The first minute: fresh-process `gouache run` and `gouache serve` against the imports they cannot avoid.

Each pair is measured in one run, alternating, each sample in a new process, and reported as medians
and the ratio of the medians (issue 18's floors):

* ``run``: ``gouache run workflows/text-to-image.json`` in a fresh process and a fresh home, against
  ``python -c "import torch"`` (floor: at most 2.5x);
* ``serve``: ``gouache serve`` started until its first ``GET /api/nodes`` is answered, with a home
  holding a checkpoint single file and a diffusers folder, against ``python -c "import aiohttp, pydantic"``
  (floor: at most 1.5x);
* ``threads``: the same ``gouache run`` while two CPU hogs (``while True: pass``) hold the cores, with
  gouache's thread policy against torch's defaults (``GOUACHE_THREADS=torch``), and both again without
  the hogs; the sampler's own time comes from ``--json``.

Child processes cache bytecode under a temporary ``PYTHONPYCACHEPREFIX`` (as an installed package has
its ``.pyc`` files; ``PYTHONDONTWRITEBYTECODE`` would compile gouache's sources in every process) and
a warm-up round runs first. Other work on the machine changes every figure: the load average is
printed before and after.

Usage::

    .venv/bin/python bench/bench_startup.py [--repeats 5] [--hog-repeats 3] [--parts run,serve,threads]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "workflows" / "text-to-image.json"
WEIGHTS = REPO / "nodes" / "embedded" / "weights"
PYTHON = sys.executable
GOUACHE = str(Path(sys.executable).with_name("gouache"))


def child_env(scratch: Path, **extra: str) -> dict[str, str]:
    """The environment of every measured process: bytecode cached, offline, no thread choice made."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOUACHE_THREADS")}
    env.update(PYTHONPYCACHEPREFIX=str(scratch / "pycache"), HF_HUB_OFFLINE="1", **extra)
    return env


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of one process, and its stdout; raises when it fails."""
    return timed_cpu(command, env)[0::2]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_cpu(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds and CPU seconds (user + system) of one process, and its stdout; raises when it fails."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, _children_cpu() - cpu, done.stdout


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (Linux ``/proc``; clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gouache_run(scratch: Path, env: dict[str, str]) -> tuple[float, dict]:
    """One fresh-process, fresh-home ``gouache run --json`` of the shipped text-to-image workflow."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=scratch))
    try:
        seconds, out = timed([GOUACHE, "--home", str(home), "run", str(WORKFLOW), "--output-dir", str(home / "out"),
                              "--quiet", "--json"], env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result = json.loads(out)
    if result["status"] != "succeeded":
        raise SystemExit(f"gouache run did not succeed: {result.get('error')}")
    return seconds, result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_ready(home: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from starting ``gouache serve`` to its first answered ``GET /api/nodes``, and the
    CPU seconds the server had used by then."""
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen([GOUACHE, "--home", str(home), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/nodes", timeout=30) as response:
                    response.read()
                return time.perf_counter() - started, process_cpu(server.pid)
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"gouache serve exited: {server.stderr.read()[-2000:]}") from None
                time.sleep(0.005)
    finally:
        server.terminate()
        server.wait(30)


def home_with_checkpoints(scratch: Path) -> Path:
    """A home whose checkpoints folder holds the embedded model as a single file and as a diffusers folder."""
    home = scratch / "serve-home"
    checkpoints = home / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(WEIGHTS / "gouache-tiny.safetensors", checkpoints / "tiny.safetensors")
    shutil.copytree(WEIGHTS / "gouache-tiny", checkpoints / "tiny-diffusers")
    return home


@contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """``count`` processes spinning on a core each, for as long as the block runs."""
    hogs = [subprocess.Popen([PYTHON, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(1.0)
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def alternate(samples: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Take ``repeats`` samples of each, interleaved so slow spells of the machine hit every side."""
    found: dict[str, list[Any]] = {name: [] for name in samples}
    for _ in range(repeats):
        for name, sample in samples.items():
            found[name].append(sample())
    return found


def row(label: str, values: list[float], base: float | None = None) -> str:
    median = statistics.median(values)
    ratio = f"{median / base:.2f}x" if base else ""
    return f"| {label} | {median:.2f} | {min(values):.2f} | {max(values):.2f} | {ratio} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="samples of each side for run and serve")
    parser.add_argument("--hog-repeats", type=int, default=3, help="samples of each side for threads")
    parser.add_argument("--parts", default="run,serve,threads")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    header = "| measure | median s | best s | worst s | ratio |\n|---|---:|---:|---:|---:|"
    import torch  # only for the machine line

    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable), "
          f"torch {torch.__version__}; load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="gouache-startup-") as scratch_name:
        scratch = Path(scratch_name)
        env = child_env(scratch)
        timed([PYTHON, "-c", "import torch, aiohttp, pydantic"], env)  # warm-up: bytecode, page cache
        if parts & {"run", "threads"}:
            gouache_run(scratch, env)
        if "run" in parts:
            found = alternate({
                "torch": lambda: timed([PYTHON, "-c", "import torch"], env)[0],
                "run": lambda: gouache_run(scratch, env)[0],
            }, args.repeats)
            base = statistics.median(found["torch"])
            print(f"\n### run ({args.repeats} alternating samples each)\n\n{header}")
            print(row('`python -c "import torch"`', found["torch"]))
            print(row("`gouache run workflows/text-to-image.json` (fresh process and home)", found["run"], base))
        if "serve" in parts:
            home = home_with_checkpoints(scratch)
            serve_ready(home, env)
            found = alternate({
                "import": lambda: timed_cpu([PYTHON, "-c", "import aiohttp, pydantic"], env)[:2],
                "serve": lambda: serve_ready(home, env),
            }, args.repeats)
            wall = {name: [sample[0] for sample in samples] for name, samples in found.items()}
            cpu = {name: [sample[1] for sample in samples] for name, samples in found.items()}
            print(f"\n### serve ({args.repeats} alternating samples each)\n\n{header}")
            print(row('`python -c "import aiohttp, pydantic"`', wall["import"]))
            print(row("`gouache serve` until the first `GET /api/nodes` is answered (2 checkpoints)",
                      wall["serve"], statistics.median(wall["import"])))
            # CPU time moves far less than wall time with other jobs on the cores (10 ms ticks for the server)
            print(row('CPU s of `python -c "import aiohttp, pydantic"`', cpu["import"]))
            print(row("CPU s of `gouache serve` by its first answer", cpu["serve"], statistics.median(cpu["import"])))
        if "threads" in parts:
            default_env = child_env(scratch, GOUACHE_THREADS="torch")
            print(f"\n### threads ({args.hog_repeats} alternating samples each)\n")
            print("| load | threads | process median s | sampler median s | sampler samples s | threads used |")
            print("|---|---|---:|---:|---|---|")
            for hogs in (2, 0):
                with cpu_hogs(hogs):
                    results: dict[str, list[tuple[float, dict]]] = {"policy": [], "torch": []}
                    for _ in range(args.hog_repeats):
                        results["policy"].append(gouache_run(scratch, env))
                        results["torch"].append(gouache_run(scratch, default_env))
                for name, samples in results.items():
                    sampler = [result["timings"]["sampler"] for _, result in samples]
                    used = sorted({str(result["threads"]["threads"] or "torch default") for _, result in samples})
                    label = "gouache policy" if name == "policy" else "torch defaults (`GOUACHE_THREADS=torch`)"
                    print(f"| {'2 CPU hogs' if hogs else 'no hogs'} | {label} | "
                          f"{statistics.median(s for s, _ in samples):.2f} | {statistics.median(sampler):.2f} | "
                          f"{', '.join(f'{s:.2f}' for s in sampler)} | {', '.join(used)} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
