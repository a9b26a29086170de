"""``gouache import``: another tool's workflow (ComfyUI, A1111 PNG) written as ``gouache/1``, or a
workflow written in ComfyUI's API format (``--to comfy-api``) so work can go back."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gouache.engine import Engine, Problem
from gouache.engine.importers import import_workflow
from gouache.engine.workflow import load_source

EXIT_OK, EXIT_INVALID = 0, 2


def _refuse(problems: list[Problem], what: str) -> int:
    print(f"{what} ({len(problems)} problem{'s' * (len(problems) != 1)}):", file=sys.stderr)
    for problem in problems:
        print(f"  [{problem.code}] {problem.message}", file=sys.stderr)
    return EXIT_INVALID


def convert(engine: Engine, source: str | Path, to: str) -> tuple[dict[str, Any] | None, list[Problem], list[Problem]]:
    """The converted document, the problems that stop the conversion, and validation's warnings."""
    try:
        raw = load_source(source)
    except (OSError, ValueError) as error:
        return None, [Problem(None, None, "unreadable_workflow", f"cannot read the workflow: {error}")], []
    workflow, problems = import_workflow(raw, engine.importers)
    if problems:
        return None, problems, []
    if not isinstance(workflow, dict) or workflow.get("format") != "gouache/1":
        return None, [Problem(None, None, "unknown_format",
                              f"{source} is neither a gouache workflow nor one an installed importer recognises "
                              f"(importers: {', '.join(i.name for i in engine.importers) or 'none'})")], []
    _, warnings = engine.check(workflow)
    if to == "comfy-api":
        from gouache.nodes.interop.comfy_export import export_api

        prompt, problems = export_api(workflow, engine.registry)
        return prompt, problems, warnings
    return workflow, [], warnings


def cmd_import(args: argparse.Namespace) -> int:
    """Convert, write the file (or stdout), and list what validation would still refuse."""
    engine = Engine(home=args.home, safe_mode=getattr(args, "safe_mode", False))
    document, problems, warnings = convert(engine, args.workflow, args.to)
    if document is None:
        return _refuse(problems, f"{args.workflow} cannot be converted")
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(document.get('nodes', document))} nodes)", file=sys.stderr)
    for problem in warnings:  # e.g. a checkpoint not installed here: the file is written, to be fixed by hand
        print(f"  warning: [{problem.code}] {problem.message}", file=sys.stderr)
    return EXIT_OK


def add_parser(command: Any) -> None:
    """``gouache import`` on the CLI's subcommand factory."""
    parser = command("import", "convert a ComfyUI workflow (UI or API JSON, or a PNG carrying one) or an A1111 PNG "
                               "to a gouache workflow, or a gouache workflow to ComfyUI's API format")
    parser.add_argument("workflow", help="a ComfyUI .json (UI or API format), a PNG from ComfyUI, A1111 or gouache, "
                                         "or a gouache workflow (with --to comfy-api)")
    parser.add_argument("-o", "--output", metavar="FILE", help="where to write the result (default: stdout)")
    parser.add_argument("--to", choices=("gouache", "comfy-api"), default="gouache",
                        help="gouache: a gouache/1 file keeping layout, groups and titles (default); comfy-api: "
                             "ComfyUI's API format, for workflows whose nodes all have ComfyUI equivalents")
    parser.add_argument("--safe-mode", action="store_true", help="load no third-party pack")
    parser.set_defaults(handler=cmd_import)
