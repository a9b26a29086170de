"""The ``gouache`` command line: run, validate, import, nodes, models, packs, serve.

Exit codes: 0 success; 2 the workflow or the arguments are invalid (nothing ran); 1 a node failed
at run time; 130 interrupted. Progress goes to stderr; ``--json`` results to stdout.
"""

from __future__ import annotations

import argparse
from collections import Counter
import gc
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from gouache.cli.nodes import plain
from gouache.cli.progress import Progress
from gouache.engine import Engine, Problem, Registry, RunResult, WorkflowImporter, WorkflowInvalid
from gouache.engine.sweep import declared_input, typed_value
from gouache.engine.importers import import_workflow
from gouache.engine.workflow import load_source

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130

DEVICES = ("auto", "cpu", "cuda", "mps")
"""What ``--device`` accepts; ``config.json`` may also name one GPU, e.g. ``cuda:1``."""


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


SWEEP_HELP = (
    "run once per value of an input, NODE.INPUT=VALUES (repeat for more inputs: every combination is "
    "run). VALUES: A..B or A..B:STEP (numbers, inclusive), @FILE (one value per line), a JSON list, or "
    "one value, each read as --set reads it. Output files are named by their values; --json lists the runs"
)
SET_HELP = (
    "set one input, NODE.INPUT=VALUE (repeat for more). VALUE is read as JSON: 5, 2.5, true, [1, 2], "
    '"quoted text"; anything that is not JSON is text as typed, so text needs no quotes: '
    "--set positive.text='a red circle'. An input that takes text keeps the text as typed even when it "
    "looks like JSON: positive.text=5 is the text '5', not the number 5."
)


def split_assignment(text: str) -> tuple[str, str]:
    """``NODE.INPUT=VALUE`` as its target and the value's text, or :class:`UsageError`."""
    target, equals, value = text.partition("=")
    if not equals or "." not in target:
        raise UsageError(f"--set {text!r}: expected NODE.INPUT=VALUE, e.g. --set sampler.seed=5")
    return target, value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``NODE.INPUT=VALUE``: the value is JSON when it parses as JSON, else a string."""
    target, value = split_assignment(text)
    try:
        return target, json.loads(value)
    except json.JSONDecodeError:
        return target, value


def overrides_for(assignments: list[str], workflow: str, registry: Registry,
                  importers: Sequence[WorkflowImporter] = ()) -> dict[str, Any]:
    """The ``--set`` values: JSON where they parse, except that an input taking text keeps the text.

    ``--set positive.text=5`` must mean the prompt "5": the input's declared type, found through the
    workflow's node type in the registry, decides (:func:`gouache.engine.sweep.typed_value`, the
    rule ``--sweep`` and the server share). A workflow that cannot be read is left to validation.
    """
    try:
        raw, _ = import_workflow(load_source(workflow), importers)  # a ComfyUI file's node types too
    except (OSError, ValueError):
        raw = None
    overrides = {}
    for assignment in assignments:
        target, text = split_assignment(assignment)
        overrides[target] = typed_value(text, declared_input(raw, target, registry))
    return overrides


def refuse_missing_device(option: str | None) -> None:
    """Refuse ``--device cuda|mps`` on a machine without one, before anything loads or runs.

    torch is imported only when such a device is asked for, so other commands stay quick.
    """
    if option not in ("cuda", "mps"):
        return
    import torch

    if option == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: this torch build sees no CUDA GPU here; "
                         "use --device auto (the best device found) or --device cpu")
    mps = getattr(torch.backends, "mps", None)
    if option == "mps" and not (mps is not None and mps.is_available()):
        raise UsageError("--device mps: Apple's MPS is not available here; "
                         "use --device auto (the best device found) or --device cpu")


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


def _prepare_threads() -> dict[str, Any]:
    """Set this process's CPU threads before anything imports torch (``gouache.nodes.devices``)."""
    from gouache.nodes.devices import prepare_threads

    return prepare_threads().to_json()


def cmd_run(args: argparse.Namespace) -> int:
    threads = _prepare_threads()
    refuse_missing_device(args.device)
    outputs = args.outputs.split(",") if args.outputs else None
    engine = _engine(args, device=args.device, output_dir=Path(args.output_dir).resolve() if args.output_dir else None,
                     disk_cache=True)  # a later `gouache run` reuses what this one computed
    overrides = overrides_for(args.set or [], args.workflow, engine.registry, engine.importers)
    if args.sweep:
        return _run_sweep(args, engine, overrides)
    if args.ray or args.zip:
        raise UsageError("--ray and --zip go with --sweep: gouache run WORKFLOW --sweep sampler.seed=1..16 --ray auto")
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
    _report(engine, result, args, threads)
    return {"succeeded": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(result.status, EXIT_FAILED)


def _run_sweep(args: argparse.Namespace, engine: Engine, overrides: dict[str, Any]) -> int:
    from gouache.cli import sweep

    try:
        return sweep.main(args, engine, overrides)
    except sweep.SweepInvalid as invalid:
        if args.json:
            print(json.dumps({"status": "invalid", "problems": [p.to_json() for p in invalid.problems]}, indent=2))
        _print_problems(invalid.problems)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _report(engine: Engine, result: RunResult, args: argparse.Namespace, threads: dict[str, Any]) -> None:
    images = {node: [{**image, "file": str(engine.settings.folder(image["kind"]) / image["path"])}
                     for image in found] for node, found in result.images.items()}
    if args.json:
        print(json.dumps({
            "status": result.status, "run_id": result.run_id, "executed": result.executed,
            "cached": result.cached, "from_disk": result.from_disk, "timings": result.timings,
            "seconds": result.seconds, "threads": threads, "images": images,
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
    overrides = overrides_for(args.set or [], args.workflow, engine.registry, engine.importers)
    valid, problems = engine.check(args.workflow, overrides)
    if args.json:
        print(json.dumps({"valid": valid is not None, "problems": [p.to_json() for p in problems]}, indent=2))
    if valid is None:
        _print_problems(problems)
        return EXIT_INVALID
    if not args.json:
        silent = Counter(valid.silent.values())
        told = "; " + ", ".join(f"{count} {why}" for why, count in sorted(silent.items())) if silent else ""
        print(f"{args.workflow}: valid ({len(valid.nodes)} nodes{told})")
    return EXIT_OK


def cmd_nodes(args: argparse.Namespace) -> int:
    from gouache.cli import nodes

    return nodes.main(args, _engine(args))


def _shown(value: object) -> str:
    """A model's detail as a person reads it: lists joined with commas, mappings as ``key:value`` pairs,
    not Python's repr."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{key}:{item}" for key, item in value.items()) or "-"
    return str(value)


def cmd_models(args: argparse.Namespace) -> int:
    engine = _engine(args)
    found = engine.models.as_json()
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    for kind, entries in found.items():
        print(f"{kind}: searched {', '.join(str(p) for p in engine.models.directories(kind))}")
        for entry in entries:
            extra = " ".join(f"{key}={_shown(value)}" for key, value in entry.items() if key not in ("name", "path"))
            print(f"  {entry['name']}  {extra}  ({entry['path']})")
    return EXIT_OK


def cmd_packs(args: argparse.Namespace) -> int:
    from gouache.cli import packs

    return packs.main(args)


def cmd_serve(args: argparse.Namespace) -> int:
    _prepare_threads()
    refuse_missing_device(args.device)
    # The server's modules and start make objects that live as long as it: the cyclic collector waits until
    # the server has started (serve() resumes it then; issue 18), and runs again however this ends.
    gc.disable()
    try:
        try:
            from gouache.web.server import serve
        except ImportError as error:
            raise UsageError(f"the web server is not available in this installation: {error}") from None
        if not args.ray:
            given = [flag for flag, value in (("--workers", args.workers), ("--worker-threads", args.worker_threads),
                                              ("--worker-gpus", args.worker_gpus), ("--worker-home", args.worker_home),
                                              ("--retries", args.retries != 2)) if value]
            if given:
                raise UsageError(f"{', '.join(given)} go with --ray: gouache serve --ray local {given[0]} ...")
            return serve(args)
        return _serve_on_ray(args, serve)
    finally:
        gc.enable()


def _serve_on_ray(args: argparse.Namespace, serve: Any) -> int:
    """``gouache serve --ray ADDRESS``: the queue's runs go to worker actors on a Ray cluster (docs/scaling.md)."""
    if args.workers is not None and args.workers < 1 or args.retries < 0:
        raise UsageError("--workers must be at least 1 and --retries at least 0")
    try:
        from gouache.cluster import dispatch, ray_workers
    except ImportError as error:
        raise UsageError(f"--ray needs the optional extra: pip install 'gouache[ray]' ({error})") from None
    try:
        ray_workers.connect(args.ray)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise UsageError(f"cannot reach the Ray cluster at {args.ray!r}: {error}") from None
    try:
        spec = ray_workers.spec(args.workers, args.worker_threads, args.worker_gpus, args.worker_home)
        print(f"gouache: {spec.count} Ray worker(s), each {spec.threads} CPU thread(s)"
              + (f" and {spec.gpus:g} GPU" if spec.gpus else ""), file=sys.stderr)
        return serve(args, worker_factory=dispatch.worker_factory(spec, retries=args.retries))
    finally:
        ray_workers.disconnect()


EPILOG = """\
exit codes: 0 success; 2 the workflow or the arguments are invalid (nothing ran);
1 a node failed at run time; 130 interrupted.

examples:
  gouache run workflows/text-to-image.json --output-dir output --set sampler.seed=5
  gouache nodes Sampler          every input of one node type: type, default, range, choices
  gouache COMMAND --help         the options of one command
"""

JSON_HELP = "print a machine-readable result on stdout instead of text"
SAFE_MODE_HELP = "load only the built-in node pack, no third-party pack"
DEVICE_HELP = ("where models run: auto (CUDA, then MPS, then the CPU), cpu, cuda or mps; a device that "
               "is not there is refused before anything runs (default: config.json's device, else auto)")


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """--home and --debug, accepted before the command and after it (``gouache run X --home H``).

    Only the top-level parser has defaults: a subcommand's copy (``defaults=False``) leaves the
    value given before the command alone when it is not repeated after it.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=None if defaults else argparse.SUPPRESS,
                        help="base directory holding models/, input/, output/ and config.json "
                             "(default: $GOUACHE_HOME, else the user data folder)")
    common.add_argument("--debug", action="store_true", default=False if defaults else argparse.SUPPRESS,
                        help="show Python tracebacks and debug logging")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``gouache`` argument parser; every option carries help text (a test checks)."""
    common = _common_options(defaults=False)
    parser = argparse.ArgumentParser(prog="gouache", description=plain(__doc__.splitlines()[0]), epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[_common_options(defaults=True)])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="one of the commands below; gouache COMMAND --help says more")

    def command(name: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common], **kwargs)

    run = command("run", "run a workflow file (JSON, or a PNG saved by gouache)")
    run.add_argument("workflow", help="a workflow .json file, or a PNG gouache saved (it carries its workflow)")
    run.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE", help=SET_HELP)
    run.add_argument("--output-dir", metavar="DIR",
                     help="where to save images (default: HOME/output, under the base directory; "
                          "the path of every saved file is printed)")
    run.add_argument("--device", choices=DEVICES, default=None, help=DEVICE_HELP)
    run.add_argument("--outputs", metavar="NODE,NODE",
                     help="comma-separated node ids to compute, with what they need (default: every output node)")
    run.add_argument("--json", action="store_true",
                     help="print a machine-readable result (status, files, timings per node, cached nodes)")
    run.add_argument("--sweep", action="append", metavar="NODE.INPUT=VALUES", help=SWEEP_HELP)
    run.add_argument("--zip", action="store_true",
                     help="with several --sweep, pair their values by position instead of running every combination")
    run.add_argument("--ray", metavar="ADDRESS",
                     help="run the sweep's runs on a Ray cluster: local (start one here), auto, or ray://HOST:PORT "
                          "(needs gouache[ray]; docs/scaling.md)")
    run.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    run.add_argument("--safe-mode", action="store_true", help=SAFE_MODE_HELP)
    run.set_defaults(handler=cmd_run)

    validate = command("validate", "check a workflow without running it, listing every problem at once")
    validate.add_argument("workflow", help="a workflow .json file, or a PNG gouache saved")
    validate.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE",
                          help="check with this input set, as gouache run --set would")
    validate.add_argument("--json", action="store_true", help="print {valid, problems} as JSON")
    validate.add_argument("--safe-mode", action="store_true", help=SAFE_MODE_HELP)
    validate.set_defaults(handler=cmd_validate)

    from gouache.cli.importing import add_parser as add_import_parser

    add_import_parser(command)

    nodes = command("nodes", "list the node types, or describe one with every input's default, range and choices")
    nodes.add_argument("name", nargs="?", metavar="NAME",
                       help="a node type to describe in full, e.g. Sampler (default: list them all)")
    nodes.add_argument("--json", action="store_true",
                       help="print the node types (or the one named) as the registry publishes them")
    nodes.add_argument("--safe-mode", action="store_true", help=SAFE_MODE_HELP)
    nodes.set_defaults(handler=cmd_nodes)

    models = command("models", "list the checkpoints, LoRAs and upscalers found, and the folders searched")
    models.add_argument("--json", action="store_true", help="print every model kind and its models as JSON")
    models.set_defaults(handler=cmd_models)

    packs = command("packs", "list, inspect, install or remove node packs", aliases=["plugins"])
    pack_commands = packs.add_subparsers(dest="packs_command", required=True, metavar="PACKS_COMMAND",
                                         help="list, info, install or remove")
    listing = pack_commands.add_parser("list", help="every pack and its status", parents=[common])
    listing.add_argument("--json", action="store_true", help="print every pack's report as JSON")
    info = pack_commands.add_parser("info", help="one pack in detail", parents=[common])
    info.add_argument("name", help="the pack's name or its distribution's name")
    info.add_argument("--json", action="store_true", help="print the pack and its node types as JSON")
    install = pack_commands.add_parser("install", help="install a pack with pip (after a dry run)", parents=[common])
    install.add_argument("spec", help="a package name, a local path or a wheel")
    install.add_argument("--allow-upgrades", action="store_true",
                         help="allow changing gouache or its core dependencies")
    install.add_argument("--yes", "-y", action="store_true", help="do not ask before installing")
    remove = pack_commands.add_parser("remove", help="uninstall a pack", parents=[common])
    remove.add_argument("name", help="the pack's name or its distribution's name")
    remove.add_argument("--yes", "-y", action="store_true", help="do not ask before uninstalling")
    packs.set_defaults(handler=cmd_packs)

    serve = command("serve", "start the web editor and its HTTP/websocket API")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1; any other needs --token)")
    serve.add_argument("--port", type=int, default=8188, help="port to listen on (default: 8188)")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                       help="another origin allowed to call the API, e.g. http://localhost:3000 (repeatable)")
    serve.add_argument("--token", help="require this token (header or cookie) on every request")
    serve.add_argument("--device", choices=DEVICES, default=None, help=DEVICE_HELP)
    serve.add_argument("--safe-mode", action="store_true", help=SAFE_MODE_HELP)
    serve.add_argument("--ray", metavar="ADDRESS",
                       help="run the queue on worker actors of a Ray cluster: local (start one here), auto, or "
                            "ray://HOST:PORT (needs gouache[ray]; docs/scaling.md)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="with --ray: how many workers (default: as many as the cluster's CPUs, or GPUs, allow)")
    serve.add_argument("--worker-threads", type=int, metavar="N",
                       help="with --ray: CPU threads per worker, its num_cpus on Ray (default 1)")
    serve.add_argument("--worker-gpus", type=float, default=0, metavar="N",
                       help="with --ray: GPUs per worker, its num_gpus on Ray (default 0: CPU workers)")
    serve.add_argument("--worker-home", metavar="DIR",
                       help="with --ray: the GOUACHE_HOME workers read on their machines (default: this server's)")
    serve.add_argument("--retries", type=int, default=2, metavar="N",
                       help="with --ray: how many times a run whose worker died is queued again (default 2)")
    serve.set_defaults(handler=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gouache`` console script."""
    if argv is None:
        # This process is the command. What its imports made so far (the engine, pydantic's machinery)
        # lives as long as the process: keep the cyclic collector from walking it again. Its first full
        # collection came while the command was starting: 20-30 ms of `gouache serve`'s start
        # (docs/benchmarks.md). A program that calls main(argv) keeps its collector as it was.
        gc.freeze()
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
    except BrokenPipeError:  # `gouache nodes | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: {type(error).__name__}: {error} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
