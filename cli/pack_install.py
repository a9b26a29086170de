"""``gouache packs install`` and ``remove``: pip into the running environment, with guards.

An install first asks pip what it would do (``pip install --dry-run --report -``), shows every
change and refuses one that would change gouache or a core dependency unless told
``--allow-upgrades``. The real install then runs with those packages pinned to their installed
versions, so a resolution that differs from the dry run fails instead of upgrading them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from gouache.engine.packs import ENTRY_POINT_GROUP, FIRST_PARTY

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2

COMPANIONS = ("torchvision", "pydantic-core")
"""Not requirements of gouache itself, but released in lockstep with one (torch, pydantic)."""

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class Refused(Exception):
    """Nothing was changed, for the reason given (exit code 2)."""


class PipFailed(Exception):
    """pip itself failed; the message carries its error output (exit code 1)."""


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``Pydantic_Core`` -> ``pydantic-core``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def core_packages(distribution: str = FIRST_PARTY) -> set[str]:
    """gouache and what it needs to run: its installed requirements (no extras) and companions."""
    names = {canonical(distribution), *COMPANIONS}
    for requirement in metadata.requires(distribution) or []:
        _, _, marker = requirement.partition(";")
        match = _NAME.match(requirement)
        if match and not re.search(r"\bextra\s*==", marker):
            names.add(canonical(match.group(1)))
    return names


def installed_version(name: str) -> str | None:
    """The version of distribution ``name`` in this environment, or ``None``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Change:
    """One distribution pip would install: its version now (``None``: absent) and after."""

    name: str
    old: str | None
    new: str
    requested: bool

    def describe(self) -> str:
        """``name 1.0 -> 2.0``, ``name 2.0 (new)`` or ``name 2.0 (reinstall)``."""
        if self.old is None:
            return f"{self.name} {self.new} (new)"
        if self.old == self.new:
            return f"{self.name} {self.new} (reinstall)"
        return f"{self.name} {self.old} -> {self.new}"


def parse_report(report: dict[str, Any],
                 installed: Callable[[str], str | None] = installed_version) -> list[Change]:
    """The changes in a pip installation report (``pip install --report``, format version 1)."""
    if str(report.get("version", "1")).split(".")[0] != "1":
        raise PipFailed(f"unknown pip report version {report.get('version')!r}")
    changes = []
    for item in report.get("install", []):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        changes.append(Change(name, installed(name), version, bool(item.get("requested"))))
    return changes


def forbidden(changes: Iterable[Change], core: set[str]) -> list[Change]:
    """The changes that touch gouache or a core dependency (a same-version reinstall included)."""
    return [change for change in changes if canonical(change.name) in core]


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def dry_run(spec: str) -> dict[str, Any]:
    """Resolve ``spec`` as pip would install it, without installing; pip's JSON report."""
    done = _pip("install", "--dry-run", "--report", "-", "--quiet", spec)
    if done.returncode != 0:
        raise PipFailed(f"pip cannot resolve {spec!r}:\n{_pip_errors(done.stderr)}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise PipFailed(f"pip's report is not JSON ({error}); pip said:\n{done.stderr}") from None


def _pip_errors(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    return "\n".join(lines[-20:])


def confirm(question: str, assume_yes: bool) -> None:
    """Go on if ``assume_yes`` or the person at the terminal says yes; raise :class:`Refused` else.

    Without a terminal on stdin (CI, scripts) nobody can answer, so ``--yes`` is required: a
    script changes an environment only when it says so.
    """
    if assume_yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise Refused(f"cannot ask {question!r}: stdin is not a terminal; pass --yes to go ahead "
                      "(nothing was changed)")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise Refused("nothing changed")


def pack_entry_points(distribution: str) -> list[metadata.EntryPoint]:
    """The ``gouache`` entry points that ``distribution`` declares."""
    try:
        points = metadata.distribution(distribution).entry_points
    except metadata.PackageNotFoundError:
        return []
    return [point for point in points if point.group == ENTRY_POINT_GROUP]


def install(args: argparse.Namespace) -> int:
    """Dry-run, show, guard, confirm, install, then check what the new pack registers."""
    core = core_packages()
    changes = parse_report(dry_run(args.spec))
    requested = [change for change in changes if change.requested]
    if not changes:
        print(f"{args.spec}: already installed, nothing to change")
        return EXIT_OK
    print(f"installing {args.spec} would change this environment ({sys.prefix}):")
    for change in changes:
        print(f"  {change.describe()}")
    blocked = forbidden(changes, core)
    if blocked and not args.allow_upgrades:
        names = ", ".join(change.describe() for change in blocked)
        raise Refused(f"refusing to change gouache or its core dependencies: {names}. Nothing was installed. "
                      "Ask the pack's author for a release that accepts the installed versions, or pass "
                      "--allow-upgrades if you really mean to change them")
    confirm("Install?", args.yes)
    pins = [] if args.allow_upgrades else _pins(core)
    with tempfile.TemporaryDirectory(prefix="gouache-pins-") as folder:
        extra: list[str] = []
        if pins:
            constraints = Path(folder) / "constraints.txt"
            constraints.write_text("".join(f"{pin}\n" for pin in pins))
            extra = ["--constraint", str(constraints)]
        done = _pip("install", "--quiet", *extra, args.spec)
    if done.returncode != 0:
        raise PipFailed(f"pip install {args.spec} failed:\n{_pip_errors(done.stderr)}")
    importlib.invalidate_caches()
    print("installed: " + ", ".join(change.describe() for change in changes))
    return _check_installed([change.name for change in requested], args)


def _pins(core: set[str]) -> list[str]:
    pins = []
    for name in sorted(core):
        version = installed_version(name)
        if version is not None:
            pins.append(f"{name}=={version}")
    return pins


def _check_installed(distributions: list[str], args: argparse.Namespace) -> int:
    """Say which packs the new distributions bring and whether they load; warn about none."""
    pack_names = {point.name for name in distributions for point in pack_entry_points(name)}
    for name in distributions:
        if not pack_entry_points(name):
            print(f"warning: {name} declares no entry point in group {ENTRY_POINT_GROUP!r}, so gouache "
                  f"will not load it. A pack declares one in its pyproject.toml:\n"
                  f'  [project.entry-points.{ENTRY_POINT_GROUP}]\n  my_pack = "my_pack"', file=sys.stderr)
    if not pack_names:
        return EXIT_OK
    from gouache.engine.api import Engine

    engine = Engine(home=args.home)
    status = EXIT_OK
    for report in engine.packs:
        if report.name not in pack_names:
            continue
        if report.status == "loaded":
            types = ", ".join(report.node_types) or "none"
            print(f"pack {report.name!r} loaded; node types: {types}")
        elif report.status == "blocked":
            print(f"pack {report.name!r} is installed but blocked (GOUACHE_PACKS_BLOCK/ALLOW)")
        else:
            print(f"error: pack {report.name!r} is installed but failed to load: {report.error}", file=sys.stderr)
            status = EXIT_FAILED
    print("the new nodes are available to `gouache run` now; a running `gouache serve` picks them up "
          "when it is restarted")
    return status


def find_pack_distribution(name: str) -> tuple[str, list[str]]:
    """The distribution that provides pack (or distribution) ``name``, and all its pack names."""
    wanted = canonical(name)
    points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    for point in points:
        dist = getattr(point, "dist", None)
        if dist is not None and wanted in (point.name, canonical(point.name), canonical(dist.name)):
            packs = sorted({p.name for p in points if getattr(p, "dist", None) and
                            canonical(p.dist.name) == canonical(dist.name)})
            return dist.name, packs
    known = sorted({f"{p.name} ({p.dist.name})" for p in points if getattr(p, "dist", None)})
    raise Refused(f"no installed pack or pack distribution named {name!r}; installed: {', '.join(known) or 'none'}")


def remove(args: argparse.Namespace) -> int:
    """Uninstall the distribution of one pack, and only it (never gouache or a core dependency)."""
    distribution, packs = find_pack_distribution(args.name)
    if canonical(distribution) in core_packages():
        raise Refused(f"{distribution} is gouache or one of its core dependencies; it cannot be removed "
                      "as a pack (its packs can be disabled with GOUACHE_PACKS_BLOCK)")
    version = installed_version(distribution)
    print(f"removing {distribution} {version} (packs: {', '.join(packs)}) from {sys.prefix}; "
          "its dependencies stay installed")
    confirm("Remove?", args.yes)
    done = _pip("uninstall", "--yes", "--quiet", distribution)
    importlib.invalidate_caches()
    if done.returncode != 0 or installed_version(distribution) == version:
        raise PipFailed(f"pip uninstall {distribution} failed:\n{_pip_errors(done.stderr + done.stdout)}")
    print(f"removed {distribution}; a running `gouache serve` drops its nodes when it is restarted")
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    """``gouache packs install SPEC`` or ``gouache packs remove NAME``."""
    handler = install if args.packs_command == "install" else remove
    try:
        return handler(args)
    except Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except PipFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
