"""The README's main command, timed as a user meets it: a fresh process and a fresh home each time.

``gouache run workflows/text-to-image.json --output-dir DIR`` is started ``--repeats`` times, each in a
new Python process with an empty ``GOUACHE_HOME`` (nothing cached, the embedded model loaded from
its shipped files), and the wall time of the whole process is reported (floor, issue 4: under 15 s).

Usage::

    .venv/bin/python bench/bench_cli.py [--repeats 5] [--workflow workflows/text-to-image.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workflow", default=str(REPO / "workflows" / "text-to-image.json"))
    args = parser.parse_args()
    gouache = Path(sys.executable).with_name("gouache")
    times = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="gouache-cli-bench-") as home:
            env = {**os.environ, "GOUACHE_HOME": home, "HF_HUB_OFFLINE": "1"}
            command = [str(gouache), "run", args.workflow, "--output-dir", str(Path(home) / "output"), "--quiet",
                       "--set", f"sampler.seed={repeat}"]
            started = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"gouache run failed ({done.returncode}): {done.stderr}")
            if not list((Path(home) / "output").glob("*.png")):
                raise SystemExit("gouache run wrote no image")
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{Path(args.workflow).name}, {args.repeats} fresh processes")
    print()
    print("| measure | median s | best s | worst s |")
    print("|---|---:|---:|---:|")
    print(f"| `gouache run` in a fresh process and home (model load included) | {statistics.median(times):.2f} "
          f"| {min(times):.2f} | {max(times):.2f} |")


if __name__ == "__main__":
    main()
