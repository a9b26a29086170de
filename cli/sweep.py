"""``gouache run WORKFLOW --sweep NODE.INPUT=VALUES ...``: one run per combination of values.

In this process, one run after another on one engine (what runs share, a loaded checkpoint or an
encoded prompt, is computed once), or with ``--ray ADDRESS`` spread over a Ray cluster's workers.
The value syntax and the output names are :mod:`gouache.engine.sweep`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gouache.engine import Engine, Problem, RunResult, sweep
from gouache.engine.importers import import_workflow
from gouache.engine.workflow import apply_overrides, load_source

class SweepInvalid(Exception):
    """The sweep cannot be expanded, or one of its runs is invalid: nothing ran."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = problems


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def plan(engine: Engine, workflow: str, assignments: dict[str, Any], texts: list[str], zipped: bool,
         outputs: list[str] | None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(values, workflow with them set)`` for every run, each validated; :class:`SweepInvalid` otherwise."""
    try:
        raw = load_source(workflow)
    except (OSError, ValueError) as error:
        raise SweepInvalid([Problem(None, None, "unreadable_workflow", f"cannot read the workflow: {error}")]) from None
    raw, problems = import_workflow(raw, engine.importers)  # a ComfyUI or A1111 file sweeps like ours
    if problems:
        raise SweepInvalid(problems)
    raw, problems = apply_overrides(raw, assignments)
    if problems:
        raise SweepInvalid(problems)
    try:
        points = sweep.points([sweep.parse_axis(text, read=_read) for text in texts], raw, engine.registry,
                             zipped=zipped)
    except sweep.SweepError as error:
        raise SweepInvalid([Problem(None, None, "invalid_sweep", str(error))]) from None
    runs = []
    for point in points:
        overrides = sweep.run_overrides(raw, engine.registry, point)
        valid, problems = engine.check(raw, overrides, outputs)
        if valid is None:
            shown = ", ".join(f"{target}={value!r}" for target, value in point.items())
            raise SweepInvalid([Problem(p.node, p.input, p.code, f"with {shown}: {p.message}") for p in problems])
        runs.append((point, apply_overrides(raw, overrides)[0]))
    return runs


def run_here(engine: Engine, runs: list[tuple[dict[str, Any], dict[str, Any]]],
             outputs: list[str] | None, quiet: bool) -> list[dict[str, Any]]:
    """Every run in this process, in order; what each did, as ``--json`` lists it."""
    done = []
    for index, (point, workflow) in enumerate(runs, 1):
        result = engine.run(workflow, outputs=outputs)
        done.append(summary(engine, point, result))
        if not quiet:
            print(f"[{index}/{len(runs)}] {result.status} in {result.seconds:.2f}s: {sweep.label(point)}",
                  file=sys.stderr)
    return done


def summary(engine: Engine, point: dict[str, Any], result: RunResult) -> dict[str, Any]:
    """One run of a sweep as ``--json`` lists it: its values, status, files and error."""
    files = [str(engine.settings.folder(image["kind"]) / image["path"])
             for found in result.images.values() for image in found]
    return {"values": point, "run_id": result.run_id, "status": result.status, "seconds": result.seconds,
            "files": files, "error": result.error.to_json() if result.error else None}


def report(done: list[dict[str, Any]], as_json: bool) -> int:
    """Print the runs (files, or JSON); the exit code: 0 when every run succeeded, else 1."""
    if as_json:
        print(json.dumps({"status": "succeeded" if all(r["status"] == "succeeded" for r in done) else "failed",
                          "runs": done}, indent=2))
    else:
        for run in done:
            for file in run["files"]:
                print(file)
    failed = [run for run in done if run["status"] != "succeeded"]
    for run in failed:
        message = (run["error"] or {}).get("message", run["status"])
        print(f"error: {sweep.label(run['values'])}: {message}", file=sys.stderr)
    print(f"{len(done) - len(failed)} of {len(done)} runs succeeded", file=sys.stderr)
    return 0 if not failed else 1


def main(args: argparse.Namespace, engine: Engine, assignments: dict[str, Any]) -> int:
    """``gouache run --sweep``: plan, run here or on the cluster, report; returns the exit code."""
    outputs = args.outputs.split(",") if args.outputs else None
    runs = plan(engine, args.workflow, assignments, args.sweep, args.zip, outputs)
    if args.ray:
        from gouache.cluster.sweep import run_on_cluster

        done = run_on_cluster(engine, runs, outputs, args)
    else:
        done = run_here(engine, runs, outputs, args.quiet)
    return report(done, args.json)
