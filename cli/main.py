"""The ``gouache`` command line: run, validate, nodes, models, packs, serve.

Exit codes: 0 success; 2 the workflow or the arguments are invalid (nothing ran); 1 a node failed
at run time; 130 interrupted. Progress goes to stderr; ``--json`` results to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from gouache.cli.progress import Progress
from gouache.engine.api import Engine
from gouache.engine.executor import RunResult
from gouache.engine.problems import Problem, WorkflowInvalid

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130

DEVICES = ("auto", "cpu", "cuda", "mps")
"""What ``--device`` accepts; ``config.json`` may also name one GPU, e.g. ``cuda:1``."""


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


def parse_assignment(text: str) -> tuple[str, Any]:
    """``NODE.INPUT=VALUE``: the value is JSON when it parses as JSON, else a string."""
    target, equals, value = text.partition("=")
    if not equals or "." not in target:
        raise UsageError(f"--set {text!r}: expected NODE.INPUT=VALUE, e.g. --set sampler.seed=5")
    try:
        return target, json.loads(value)
    except json.JSONDecodeError:
        return target, value


def _engine(args: argparse.Namespace, **options: Any) -> Engine:
    return Engine(home=args.home, safe_mode=getattr(args, "safe_mode", False), **options)


def _print_problems(problems: list[Problem]) -> None:
    print(f"the workflow is invalid ({len(problems)} problem{'s' * (len(problems) != 1)}):", file=sys.stderr)
    for problem in problems:
        print(f"  [{problem.code}] {problem.message}", file=sys.stderr)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return list(value)
    shape = getattr(value, "shape", None)
    described = {"kind": type(value).__name__}
    if shape is not None:
        described["shape"] = list(shape)
    return described


def cmd_run(args: argparse.Namespace) -> int:
    overrides = dict(parse_assignment(item) for item in args.set or [])
    outputs = args.outputs.split(",") if args.outputs else None
    engine = _engine(args, device=args.device, output_dir=Path(args.output_dir).resolve() if args.output_dir else None)
    valid, problems = engine.check(args.workflow, overrides, outputs)
    if valid is None:
        if args.json:
            print(json.dumps({"status": "invalid", "problems": [p.to_json() for p in problems]}, indent=2))
        _print_problems(problems)
        return EXIT_INVALID
    engine.subscribe(Progress(enabled=not args.quiet))
    try:
        result = engine.run(valid, outputs=outputs)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    _report(engine, result, args)
    return {"succeeded": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(result.status, EXIT_FAILED)


def _report(engine: Engine, result: RunResult, args: argparse.Namespace) -> None:
    images = {node: [{**image, "file": str(engine.settings.folder(image["kind"]) / image["path"])}
                     for image in found] for node, found in result.images.items()}
    if args.json:
        print(json.dumps({
            "status": result.status, "run_id": result.run_id, "executed": result.executed,
            "cached": result.cached, "timings": result.timings, "seconds": result.seconds,
            "images": images,
            "outputs": {node: {name: _jsonable(value) for name, value in values.items()}
                        for node, values in result.outputs.items()},
            "error": result.error.to_json() if result.error else None,
        }, indent=2))
    if result.error is not None:
        print(f"error: {result.error}", file=sys.stderr)
        if args.debug:
            print(result.error.traceback, file=sys.stderr)
    elif not args.json:
        for found in images.values():
            for image in found:
                print(image["file"])
        print(f"{result.status} in {result.seconds:.2f}s: {len(result.executed)} ran, "
              f"{len(result.cached)} cached", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    engine = _engine(args)
    overrides = dict(parse_assignment(item) for item in args.set or [])
    valid, problems = engine.check(args.workflow, overrides)
    if args.json:
        print(json.dumps({"valid": valid is not None, "problems": [p.to_json() for p in problems]}, indent=2))
    if valid is None:
        _print_problems(problems)
        return EXIT_INVALID
    if not args.json:
        print(f"{args.workflow}: valid ({len(valid.nodes)} nodes)")
    return EXIT_OK


def cmd_nodes(args: argparse.Namespace) -> int:
    engine = _engine(args)
    infos = engine.registry.infos()
    if args.json:
        print(json.dumps([info.model_dump(mode="json") for info in infos], indent=2))
        return EXIT_OK
    for info in infos:
        ins = ", ".join(f"{spec.name}: {spec.type}" for spec in info.inputs)
        outs = ", ".join(f"{out.name}: {out.type}" for out in info.outputs)
        summary = info.description.splitlines()[0] if info.description else ""
        print(f"{info.category}/{info.type} v{info.version} [{info.pack}]\n  ({ins}) -> ({outs})\n  {summary}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    engine = _engine(args)
    found = engine.models.as_json()
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    for kind, entries in found.items():
        print(f"{kind}: searched {', '.join(str(p) for p in engine.models.directories(kind))}")
        for entry in entries:
            extra = " ".join(f"{key}={value}" for key, value in entry.items() if key not in ("name", "path"))
            print(f"  {entry['name']}  {extra}  ({entry['path']})")
    return EXIT_OK


def cmd_packs(args: argparse.Namespace) -> int:
    from gouache.cli import packs

    return packs.main(args)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from gouache.web.server import serve
    except ImportError as error:
        raise UsageError(f"the web server is not available in this installation: {error}") from None
    return serve(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gouache", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="base directory (default: $GOUACHE_HOME or the user data folder)")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a workflow file (JSON, or a PNG saved by gouache)")
    run.add_argument("workflow")
    run.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE", help="override an input")
    run.add_argument("--output-dir", help="where to save images (default: HOME/output)")
    run.add_argument("--device", choices=DEVICES, default=None)
    run.add_argument("--outputs", help="comma-separated node ids to compute (default: every output node)")
    run.add_argument("--json", action="store_true", help="print a machine-readable result")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--safe-mode", action="store_true", help="load no third-party node pack")
    run.set_defaults(handler=cmd_run)

    validate = commands.add_parser("validate", help="check a workflow without running it")
    validate.add_argument("workflow")
    validate.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE")
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(handler=cmd_validate)

    nodes = commands.add_parser("nodes", help="list every node type with its inputs and outputs")
    nodes.add_argument("--json", action="store_true")
    nodes.add_argument("--safe-mode", action="store_true")
    nodes.set_defaults(handler=cmd_nodes)

    models = commands.add_parser("models", help="list the checkpoints, LoRAs and upscalers found")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=cmd_models)

    packs = commands.add_parser("packs", aliases=["plugins"], help="list, inspect, install or remove node packs")
    pack_commands = packs.add_subparsers(dest="packs_command", required=True)
    listing = pack_commands.add_parser("list", help="every pack and its status")
    listing.add_argument("--json", action="store_true")
    info = pack_commands.add_parser("info", help="one pack in detail")
    info.add_argument("name")
    info.add_argument("--json", action="store_true")
    install = pack_commands.add_parser("install", help="install a pack with pip (after a dry run)")
    install.add_argument("spec", help="a package name, a local path or a wheel")
    install.add_argument("--allow-upgrades", action="store_true",
                         help="allow changing gouache or its core dependencies")
    install.add_argument("--yes", "-y", action="store_true", help="do not ask before installing")
    remove = pack_commands.add_parser("remove", help="uninstall a pack")
    remove.add_argument("name")
    remove.add_argument("--yes", "-y", action="store_true")
    packs.set_defaults(handler=cmd_packs)

    serve = commands.add_parser("serve", help="start the web editor and API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8188)
    serve.add_argument("--allow-origin", action="append", default=[], help="another origin allowed to call the API")
    serve.add_argument("--token", help="require this token (header or cookie) on every request")
    serve.add_argument("--device", choices=DEVICES, default=None)
    serve.add_argument("--safe-mode", action="store_true")
    serve.set_defaults(handler=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gouache`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except WorkflowInvalid as error:
        _print_problems(error.problems)
        return EXIT_INVALID
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: {type(error).__name__}: {error} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
