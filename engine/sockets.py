"""Socket types and the rule that says which output may feed which input."""

from __future__ import annotations

from dataclasses import dataclass, field

ANY = "*"
"""The wildcard type: an input of this type accepts every output, and vice versa."""

# Types whose values can be typed into a widget as well as wired in.
LITERAL_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class SocketType:
    """A named type of value that flows along links.

    ``converts_to`` lists the types an output of this type may also feed
    (a declared, lossless widening such as INT to FLOAT). ``color`` is the
    editor's colour for the slot and its links.
    """

    name: str
    color: str = "#888888"
    converts_to: tuple[str, ...] = ()
    description: str = ""


BUILTIN_TYPES = (
    SocketType("INT", "#2a9d8f", converts_to=("FLOAT",), description="A whole number."),
    SocketType("FLOAT", "#8ab17d", description="A real number."),
    SocketType("STRING", "#e9c46a", description="Text."),
    SocketType("BOOLEAN", "#f4a261", description="True or false."),
    SocketType("COMBO", "#6c757d", converts_to=("STRING",), description="One of a list of choices."),
    SocketType(ANY, "#cccccc", description="Any value."),
)


@dataclass
class SocketTypes:
    """The socket types one registry knows, and their compatibility rule."""

    _types: dict[str, SocketType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for socket_type in BUILTIN_TYPES:
            self._types[socket_type.name] = socket_type

    def add(self, socket_type: SocketType) -> None:
        """Add a type; adding an identical one again is a no-op, a different one an error."""
        existing = self._types.get(socket_type.name)
        if existing is not None and existing != socket_type:
            raise ValueError(
                f"socket type {socket_type.name!r} is already registered with a different "
                "definition; pick another name"
            )
        self._types[socket_type.name] = socket_type

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __getitem__(self, name: str) -> SocketType:
        return self._types[name]

    def all(self) -> list[SocketType]:
        """Every known type, in registration order."""
        return list(self._types.values())

    def compatible(self, output_type: str, input_type: str) -> bool:
        """Whether a value of ``output_type`` may feed an input of ``input_type``."""
        if output_type == input_type or ANY in (output_type, input_type):
            return True
        source = self._types.get(output_type)
        return source is not None and input_type in source.converts_to
