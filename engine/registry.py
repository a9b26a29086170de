"""The registry of node types and socket types, with the checks a definition must pass."""

from __future__ import annotations

import inspect
import keyword
from dataclasses import dataclass, field

from gouache.engine.declaration import CachePolicy, Node, NodeInfo
from gouache.engine.sockets import SocketType, SocketTypes
from gouache.engine.values import check_value


class DefinitionError(ValueError):
    """A node or socket type definition that cannot be registered; names the pack and the node."""

    def __init__(self, pack: str, node: str, problems: list[str]) -> None:
        self.pack = pack
        self.node = node
        self.problems = problems
        listed = "; ".join(problems)
        super().__init__(f"pack {pack!r}, node {node!r}: {listed}")


def _signature_problems(method: object, name: str, declared: list[str], *, every: bool) -> list[str]:
    """Check that ``method(self, ctx, ...)`` names declared inputs only, and (``every``) all of them."""
    try:
        signature = inspect.signature(method)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return [f"{name}(): its signature cannot be read"]
    params = list(signature.parameters.values())[1:]  # self
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        return [f"{name}() must take the run context first: def {name}(self, ctx, ...)"]
    rest = params[1:]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in rest)
    named = [p.name for p in rest if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    problems = []
    extra = [p for p in named if p not in declared]
    if extra:
        problems.append(f"{name}() takes {', '.join(extra)}, which {'is' if len(extra) == 1 else 'are'} not a declared "
                        f"input; declare {'it' if len(extra) == 1 else 'them'} in inputs or remove the parameter")
    missing = [d for d in declared if d not in named]
    if every and missing and not takes_any:
        problems.append(f"{name}() has no parameter for the declared input(s) {', '.join(missing)}; "
                        "add them, or take **inputs")
    if any(p.kind is p.VAR_POSITIONAL for p in rest):
        problems.append(f"{name}() takes *args; inputs arrive by name, so take them as named parameters")
    return problems


def _is_name(text: object) -> bool:
    return isinstance(text, str) and text.isidentifier() and not keyword.iskeyword(text)


@dataclass
class Registry:
    """Every node type and socket type one engine knows, each attributed to its pack."""

    types: SocketTypes = field(default_factory=SocketTypes)
    _nodes: dict[str, type[Node]] = field(default_factory=dict)
    _packs: dict[str, str] = field(default_factory=dict)

    def add_type(self, socket_type: SocketType, pack: str) -> None:
        """Register a socket type for ``pack``."""
        try:
            self.types.add(socket_type)
        except ValueError as error:
            raise DefinitionError(pack, socket_type.name, [str(error)]) from None

    def add_node(self, node_class: type[Node], pack: str) -> None:
        """Check a node type and register it for ``pack``; never replaces an existing type."""
        name = getattr(node_class, "type_name", "") or getattr(node_class, "__name__", repr(node_class))
        problems = self._definition_problems(node_class)
        if name in self._nodes:
            problems.append(
                f"type name {name!r} is already registered by pack {self._packs[name]!r}; "
                "choose a unique type name (e.g. prefix it with your pack's name)"
            )
        if problems:
            raise DefinitionError(pack, name, problems)
        self._nodes[name] = node_class
        self._packs[name] = pack

    def _definition_problems(self, node_class: type[Node]) -> list[str]:
        if not (isinstance(node_class, type) and issubclass(node_class, Node)):
            return [f"{node_class!r} is not a subclass of gouache.engine.Node"]
        problems: list[str] = []
        if not isinstance(node_class.type_name, str) or not node_class.type_name.strip():
            problems.append("type_name is empty; set a stable type name")
        if not isinstance(node_class.version, int) or node_class.version < 1:
            problems.append(f"version must be a positive integer, got {node_class.version!r}")
        if not (node_class.__doc__ or "").strip():
            problems.append("the class has no docstring; it is the node's description")
        declared = [spec.name for spec in node_class.inputs]
        if node_class.run is Node.run:
            problems.append("run() is not defined")
        else:
            problems += _signature_problems(node_class.run, "run", declared, every=True)
        if node_class.cache is CachePolicy.FINGERPRINT and node_class.fingerprint is Node.fingerprint:
            problems.append("cache is FINGERPRINT but fingerprint() is not defined")
        elif node_class.fingerprint is not Node.fingerprint:
            problems += _signature_problems(node_class.fingerprint, "fingerprint", declared, every=False)
        seen: set[str] = set()
        for spec in node_class.inputs:
            where = f"input {spec.name!r}"
            if not _is_name(spec.name):
                problems.append(f"{where}: name must be a Python identifier")
            if spec.name in seen:
                problems.append(f"{where} is declared twice")
            seen.add(spec.name)
            if spec.type not in self.types:
                problems.append(f"{where}: unknown socket type {spec.type!r}; register it first")
            if spec.min is not None and spec.max is not None and spec.min > spec.max:
                problems.append(f"{where}: min {spec.min:g} is above max {spec.max:g}")
            if spec.choices is not None and not spec.choices and spec.link != "wire":
                problems.append(f"{where}: choices is empty")
            if spec.seed and spec.type != "INT":
                problems.append(f"{where}: only an INT input can be a seed")
            if spec.multiline and spec.type != "STRING":
                problems.append(f"{where}: only a STRING input can be multiline")
            if spec.step is not None and (spec.step <= 0 or (spec.type == "INT" and not float(spec.step).is_integer())):
                problems.append(f"{where}: step must be above 0 (and whole for an INT input), got {spec.step!r}")
            if spec.default is not None:
                _, problem = check_value(spec, spec.default)
                if problem is not None:
                    problems.append(f"{where}: default {problem.message}")
        seen_outputs: set[str] = set()
        for output in node_class.outputs:
            where = f"output {output.name!r}"
            if not _is_name(output.name):
                problems.append(f"{where}: name must be a Python identifier")
            if output.name in seen_outputs:
                problems.append(f"{where} is declared twice")
            seen_outputs.add(output.name)
            if not output.type:
                problems.append(f"{where} has no type")
            elif output.type not in self.types:
                problems.append(f"{where}: unknown socket type {output.type!r}; register it first")
        return problems

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._nodes

    def get(self, type_name: str) -> type[Node] | None:
        """The node class registered under ``type_name``, if any."""
        return self._nodes.get(type_name)

    def pack_of(self, type_name: str) -> str:
        """The pack that registered ``type_name``."""
        return self._packs[type_name]

    def node_types(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted(self._nodes)

    def infos(self) -> list[NodeInfo]:
        """The published description of every node type, sorted by category then name."""
        infos = [self._nodes[name].info(self._packs[name]) for name in self._nodes]
        return sorted(infos, key=lambda info: (info.category, info.type))
