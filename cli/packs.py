"""``gouache packs`` (alias ``plugins``): list and inspect node packs (``pack_install`` installs and removes them)."""

from __future__ import annotations

import argparse
import json
import sys

from gouache.engine.api import Engine
from gouache.engine.packs import PackReport


def _reports(args: argparse.Namespace) -> tuple[Engine, list[PackReport]]:
    engine = Engine(home=args.home)
    return engine, engine.packs


def cmd_list(args: argparse.Namespace) -> int:
    """Print every pack with its version, status (loaded, error, blocked) and node types."""
    _, reports = _reports(args)
    if args.json:
        print(json.dumps([report.to_json() for report in reports], indent=2))
        return 0
    for report in reports:
        version = f" {report.version}" if report.version else ""
        where = f" ({report.distribution}{version})" if report.distribution else ""
        print(f"{report.name}{where}: {report.status}, {len(report.node_types)} node types")
        if report.node_types:
            print(f"  nodes: {', '.join(report.node_types)}")
        if report.error:
            print(f"  error: {report.error}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print one pack in detail: status, error, web extensions, each node type with its category."""
    engine, reports = _reports(args)
    report = next((r for r in reports if args.name in (r.name, r.distribution)), None)
    if report is None:
        known = ", ".join(r.name for r in reports) or "none"
        print(f"error: no pack named {args.name!r}; installed packs: {known}", file=sys.stderr)
        return 2
    if args.json:
        nodes = [engine.registry.get(name).info(report.name).model_dump(mode="json") for name in report.node_types]
        print(json.dumps({**report.to_json(), "nodes": nodes}, indent=2))
        return 0
    print(f"name: {report.name}\ndistribution: {report.distribution}\nversion: {report.version}\n"
          f"status: {report.status}")
    if report.error:
        print(f"error: {report.error}")
    for name in report.web_extensions:
        extension = engine.web_extensions[name]
        files = ", ".join([*extension.scripts, *extension.styles])
        print(f"web extension {name}: {extension.directory} ({files})")
    for type_name in report.node_types:
        node_class = engine.registry.get(type_name)
        print(f"  {node_class.category}/{type_name} v{node_class.version}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Dispatch ``gouache packs SUBCOMMAND``."""
    handlers = {"list": cmd_list, "info": cmd_info}
    if args.packs_command in ("install", "remove"):
        from gouache.cli import pack_install

        return pack_install.main(args)
    return handlers[args.packs_command](args)
