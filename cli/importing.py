"""``gouache import``: another tool's workflow (ComfyUI, A1111 PNG) written as ``gouache/1``, or a
workflow written in ComfyUI's API format (``--to comfy-api``) so work can go back."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gouache.engine import Engine, Problem, Registry
from gouache.engine.workflow import apply_overrides

EXIT_OK, EXIT_INVALID = 0, 2


def _refuse(problems: list[Problem], what: str) -> int:
    print(f"{what} ({len(problems)} problem{'s' * (len(problems) != 1)}):", file=sys.stderr)
    for problem in problems:
        print(f"  [{problem.code}] {problem.message}", file=sys.stderr)
    return EXIT_INVALID


def convert(engine: Engine, source: str | Path, to: str, model_map: dict[str, str] | None = None,
            overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, list[Problem], list[Problem]]:
    """The converted document, the problems that stop the conversion, and validation's warnings.

    ``model_map`` renames models (``{"v1-5-pruned-emaonly.safetensors": "gouache-tiny"}``) in every input
    that chooses a model; ``overrides`` then sets inputs (``{"5.width": 128}``). Both are recorded in
    ``meta.import_changes``, so the file says how it differs from what was imported.
    """
    workflow, problems, _ = engine.convert(source)
    if workflow is None or problems:
        return None, problems, []
    if model_map or overrides:
        workflow, problems = rewrite(workflow, engine.registry, model_map or {}, overrides or {})
        if problems:
            return None, problems, []
    _, warnings = engine.check(workflow)
    if to == "comfy-api":
        from gouache.nodes.interop.comfy_export import export_api

        prompt, problems = export_api(workflow, engine.registry)
        return prompt, problems, warnings
    return workflow, [], warnings


def rewrite(workflow: dict[str, Any], registry: Registry, model_map: dict[str, str],
            overrides: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """``workflow`` with models renamed and inputs set; a name that matches no model input is a problem."""
    nodes = {node_id: {**entry, "inputs": dict(entry.get("inputs") or {})}
             for node_id, entry in workflow["nodes"].items()}
    used: set[str] = set()
    for entry in nodes.values():
        node_class = registry.get(entry["type"])
        for spec in node_class.inputs if node_class else ():
            value = entry["inputs"].get(spec.name)
            if spec.choices_from is not None and isinstance(value, str) and value in model_map:
                entry["inputs"][spec.name] = model_map[value]
                used.add(value)
    problems = [Problem(None, None, "unknown_model_name",
                        f"--model-map {old}=...: no model input of the workflow names {old!r}; "
                        f"it names: {', '.join(sorted(_model_names(nodes, registry))) or 'no model'}")
                for old in model_map if old not in used]
    rewritten, override_problems = apply_overrides({**workflow, "nodes": nodes}, overrides)
    changes = {key: value for key, value in (("model_map", model_map), ("set", overrides)) if value}
    rewritten["meta"] = {**(workflow.get("meta") or {}), "import_changes": changes}
    return rewritten, problems + override_problems


def _model_names(nodes: dict[str, Any], registry: Registry) -> set[str]:
    names = set()
    for entry in nodes.values():
        node_class = registry.get(entry["type"])
        for spec in node_class.inputs if node_class else ():
            if spec.choices_from is not None and isinstance(entry["inputs"].get(spec.name), str):
                names.add(entry["inputs"][spec.name])
    return names


def cmd_import(args: argparse.Namespace) -> int:
    """Convert, write the file (or stdout), and list what validation would still refuse."""
    from gouache.cli.main import UsageError, overrides_for, split_assignment

    engine = Engine(home=args.home, safe_mode=getattr(args, "safe_mode", False))
    model_map = {}
    for pair in args.model_map or []:
        old, equals, new = pair.partition("=")
        if not equals or not old or not new:
            raise UsageError(f"--model-map {pair!r}: expected OLD=NEW, e.g. --model-map "
                             "v1-5-pruned-emaonly.safetensors=gouache-tiny")
        model_map[old] = new
    for assignment in args.set or []:
        split_assignment(assignment)  # a malformed one is a usage error before anything is read
    overrides = overrides_for(args.set or [], args.workflow, engine.registry, engine.importers)
    document, problems, warnings = convert(engine, args.workflow, args.to, model_map, overrides)
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
    parser.add_argument("--model-map", action="append", metavar="OLD=NEW",
                        help="rename a model in every input that chooses one, e.g. "
                             "v1-5-pruned-emaonly.safetensors=gouache-tiny (repeat for more)")
    parser.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE",
                        help="set an input of the converted workflow, as gouache run --set does, e.g. 5.width=128 "
                             "(repeat for more); with --model-map, recorded in meta.import_changes")
    parser.add_argument("--safe-mode", action="store_true", help="load no third-party pack")
    parser.set_defaults(handler=cmd_import)
