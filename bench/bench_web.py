"""Web server benchmarks; prints a Markdown table.

    python bench/bench_web.py [--diffusion]

- event latency: from a progress event emitted in the worker thread to its arrival in the
  editor's websocket handler in Chromium (both stamped with the same wall clock);
- editor load: navigation to a ready editor showing a 400-node workflow (floor: under 2 s);
- GET /api/runs while a run samples (floor: under 50 ms). By default the run is a toy node that
  spins in pure Python and so holds the GIL (worse for the server than torch, which releases it);
  ``--diffusion`` samples text-to-image with the built-in pack and gouache-tiny instead;
- a fully cached re-run over HTTP: ``POST /api/runs`` -> queue -> worker -> every node from the
  cache -> ``finished`` on the websocket -> ``GET /api/runs/{id}``, timed by a client in another
  process (as ComfyUI's figure was: a script posting a prompt and waiting on its websocket).
  ``--only cached`` measures this alone (no browser needed).

Needs Debian's Chromium at /usr/bin/chromium (or GOUACHE_CHROMIUM) and the Playwright package.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "web"), str(ROOT / "tests" / "engine")]

from web_browser import ARGS, CHROMIUM  # noqa: E402
from web_support import Client, big_workflow, chain, toy_engine  # noqa: E402

from gouache.web.background import BackgroundServer  # noqa: E402
from gouache.web.server import favour_responsiveness  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def event_latency(server: BackgroundServer, browser) -> list[float]:
    """Milliseconds from ``progress`` emitted in the worker to its arrival in the editor."""
    emitted: dict[int, float] = {}
    lock = threading.Lock()

    def stamp(event) -> None:
        if event.type == "progress" and event.data["node"] == "steps":
            with lock:
                emitted[event.data["value"]] = time.time() * 1000

    unsubscribe = server.engine.subscribe(stamp)
    page = browser.new_page()
    page.goto(server.url + "/?new=1")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("#connection[data-state=open]")
    page.evaluate("""() => { window.arrivals = [];
        window.gouache.on('progress', (d) => window.arrivals.push([d.value, performance.timeOrigin + performance.now()])); }""")
    steps = 40
    workflow = chain(("steps", {"type": "Steps", "inputs": {"steps": steps, "delay": 0.15}}))
    client = Client(server.url)
    client.wait_run(client.post("/api/runs", {"workflow": workflow}).json["run_id"], timeout=120)
    # (page.wait_for_function evaluates strings, which the editor's CSP forbids: poll instead)
    deadline = time.monotonic() + 30
    while page.evaluate("window.arrivals.length ? window.arrivals.at(-1)[0] : 0") != steps:
        assert time.monotonic() < deadline, "the last progress event never arrived"
        time.sleep(0.05)
    arrivals = page.evaluate("window.arrivals")
    page.close()
    unsubscribe()
    return [arrived - emitted[value] for value, arrived in arrivals if value in emitted]


def editor_load(server: BackgroundServer, browser, repeats: int = 5) -> list[float]:
    """Seconds from navigation to a ready editor showing the 400-node workflow."""
    Client(server.url).put("/api/workflows/bench-400", big_workflow())
    seconds = []
    for _ in range(repeats):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        started = time.perf_counter()
        page.goto(server.url + "/?workflow=bench-400")
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        seconds.append(time.perf_counter() - started)
        assert page.evaluate("window.gouache.nodeIds().length") == 400
        page.close()
    return seconds


PROBE = """
import json, sys, time, urllib.request
url, samples = sys.argv[1], int(sys.argv[2])
timings = []
for _ in range(samples):
    started = time.perf_counter()
    with urllib.request.urlopen(url + "/api/runs", timeout=30) as reply:
        reply.read()
    timings.append((time.perf_counter() - started) * 1000)
    time.sleep(0.02)
print(json.dumps(timings))
"""


def runs_latency(server: BackgroundServer, workflow: dict, samples: int = 100) -> list[float]:
    """Milliseconds per GET /api/runs while ``workflow`` runs, asked by another process (as a browser is)."""
    client = Client(server.url)
    run_id = client.post("/api/runs", {"workflow": workflow}).json["run_id"]
    deadline = time.monotonic() + 600
    while client.get(f"/api/runs/{run_id}").json["status"] == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    probe = subprocess.run([sys.executable, "-c", PROBE, server.url, str(samples)],
                           capture_output=True, text=True, check=True)
    still_running = client.get(f"/api/runs/{run_id}").json["status"] == "running"
    client.delete(f"/api/runs/{run_id}")
    client.wait_run(run_id, timeout=600)
    if not still_running:
        print("warning: the run ended before the probe did; measure with a longer run", file=sys.stderr)
    return json.loads(probe.stdout)


RERUN_PROBE = """
import asyncio, json, sys, time
import aiohttp

async def main(url, workflow, repeats):
    timings = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url.replace("http", "ws", 1) + "/ws") as ws:
        await ws.receive()  # the state message
        body = json.dumps({"workflow": workflow}).encode()
        headers = {"Content-Type": "application/json"}

        async def finished(run_id):
            while True:
                frame = await ws.receive()
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue  # a preview
                message = json.loads(frame.data)
                events = message["data"]["events"] if message["type"] == "batch" else [message]
                if any(e["type"] == "finished" and e["data"]["run_id"] == run_id for e in events):
                    return

        for index in range(repeats + 1):  # the first run fills the cache
            started = time.perf_counter()
            async with session.post(url + "/api/runs", data=body, headers=headers) as reply:
                run_id = (await reply.json())["run_id"]
            posted = time.perf_counter()
            await finished(run_id)
            arrived = time.perf_counter()
            async with session.get(url + "/api/runs/" + run_id) as reply:
                record = await reply.json()
            done = time.perf_counter()
            if index:
                assert record["status"] == "succeeded" and not record["executed"], record
                timings.append([(t - started) * 1000 for t in (posted, arrived, done)])
    print(json.dumps(timings))

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])))
"""


def rerun_workflow() -> dict:
    """Seven toy nodes shaped like text-to-image (a loader, two encodes, a latent, a sampler,
    a decode, a save): the same node count as the workflow the issue timed in ComfyUI."""
    def link(node: str, output: str = "value") -> dict:
        return {"node": node, "output": output}
    return chain(("checkpoint", {"type": "Number", "inputs": {"value": 1.0}}),
                 ("positive", {"type": "Scale", "inputs": {"x": link("checkpoint"), "factor": 2.0}}),
                 ("negative", {"type": "Scale", "inputs": {"x": link("checkpoint"), "factor": 0.5}}),
                 ("latent", {"type": "Number", "inputs": {"value": 4.0}}),
                 ("sampler", {"type": "Sum", "inputs": {"a": link("positive", "x"), "b": link("negative", "x"),
                                                        "c": link("latent")}}),
                 ("decode", {"type": "Scale", "inputs": {"x": link("sampler", "sum"), "factor": 0.5}}),
                 ("save", {"type": "Record", "inputs": {"value": link("decode", "x")}}))


def cached_rerun(server: BackgroundServer, workflow: dict, repeats: int = 200) -> list[list[float]]:
    """Per re-run, milliseconds from sending POST /api/runs to: its 202, ``finished`` on the
    websocket, the final GET /api/runs/{id}; from a client in another process."""
    probe = subprocess.run([sys.executable, "-c", RERUN_PROBE, server.url, json.dumps(workflow), str(repeats)],
                           capture_output=True, text=True)
    if probe.returncode:
        raise RuntimeError(probe.stderr)
    return json.loads(probe.stdout)


def row(name: str, values: list[float], unit: str, floor: str = "") -> str:
    return (f"| {name} | {len(values)} | {percentile(values, 0.10):.1f} {unit} | {statistics.median(values):.1f} {unit}"
            f" | {percentile(values, 0.95):.1f} {unit} | {max(values):.1f} {unit} | {floor} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffusion", action="store_true", help="also sample text-to-image with the built-in pack")
    parser.add_argument("--home", help="with --diffusion: the home folder (default: a fresh one)")
    parser.add_argument("--checkpoint", default="gouache-tiny", help="with --diffusion: the checkpoint to sample with")
    parser.add_argument("--steps", type=int, default=200, help="with --diffusion: sampler steps (long enough to measure)")
    parser.add_argument("--only", choices=("cached",), help="run one measure alone: cached = the cached re-run")
    parser.add_argument("--repeats", type=int, default=200, help="cached re-runs to time (after one that fills the cache)")
    options = parser.parse_args()
    favour_responsiveness()  # as `gouache serve` does
    home = Path(tempfile.mkdtemp(prefix="gouache-bench-web-"))
    try:
        rows = measure(options, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("| measure | n | p10 | median | p95 | max | floor |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


def measure(options: argparse.Namespace, home: Path) -> list[str]:
    """Run every measure; returns the table rows."""
    rows = []
    with BackgroundServer(toy_engine(home / "rerun")) as server:
        timings = cached_rerun(server, rerun_workflow(), options.repeats)
    for column, name in enumerate(("POST /api/runs answered (202)", "`finished` on the websocket",
                                   "then GET /api/runs/{id} answered")):
        rows.append(row(f"cached re-run, 7 toy nodes: {name}", [t[column] for t in timings], "ms",
                        "ComfyUI 3.8 ms (issue 18, not measured here)" if column == 2 else ""))
    if options.diffusion:
        from gouache.engine import Engine

        engine = Engine(home=options.home or home / "real")
        workflow, problems = engine.check(str(ROOT / "workflows" / "text-to-image.json"),
                                          {"checkpoint.name": options.checkpoint})
        if workflow is not None:
            with BackgroundServer(engine) as server:
                timings = cached_rerun(server, workflow.workflow.to_json(), options.repeats)
            rows.append(row(f"cached re-run, text-to-image ({options.checkpoint}): POST -> finished -> GET",
                            [t[2] for t in timings], "ms", "ComfyUI 3.8 ms (issue 18, not measured here)"))
    if options.only == "cached":
        return rows
    from playwright.sync_api import sync_playwright

    with BackgroundServer(toy_engine(home / "toy")) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        latency = event_latency(server, browser)
        load = [s * 1000 for s in editor_load(server, browser)]
        browser.close()
        busy = chain(("busy", {"type": "Busy", "inputs": {"steps": 1000, "seconds": 0.1}}))
        runs_toy = runs_latency(server, busy)
    rows.append(row("event: worker -> editor (progress)", latency, "ms"))
    rows.append(row("editor load, 400-node workflow", load, "ms", "< 2000 ms"))
    rows.append(row("GET /api/runs while a GIL-holding node runs", runs_toy, "ms", "< 50 ms"))
    if options.diffusion:
        from gouache.engine import Engine

        engine = Engine(home=options.home or home / "real")
        overrides = {"checkpoint.name": options.checkpoint, "sampler.steps": options.steps}
        workflow, problems = engine.check(str(ROOT / "workflows" / "text-to-image.json"), overrides)
        if workflow is None:
            print("text-to-image does not validate here:", *problems, sep="\n  ", file=sys.stderr)
        else:
            with BackgroundServer(engine) as server:
                rows.append(row(f"GET /api/runs while text-to-image samples ({options.checkpoint})",
                                runs_latency(server, workflow.workflow.to_json()), "ms", "< 50 ms"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
