"""How a node type is declared: typed, named inputs and outputs, widgets, version, cache policy.

A node type is a subclass of :class:`Node`::

    class Blur(Node):
        \"\"\"Blur an image with a Gaussian kernel.\"\"\"

        type_name = "Blur"
        category = "image/filters"
        inputs = [Input("image", "IMAGE"), Input("radius", "FLOAT", default=2.0, min=0, max=64)]
        outputs = [Output("image", "IMAGE")]

        def run(self, ctx, image, radius):
            return {"image": blur(image, radius)}

Its docstring is its description. ``run`` receives every declared input as a keyword argument and
returns a dict with exactly the declared outputs; its parameters must name exactly the declared
inputs (or take ``**inputs``), which the registry checks. Rules across inputs go in ``check``, which
validation calls on the typed-in values, so a workflow that breaks them fails before anything runs.
A value that turns out unusable at run time is reported with ``raise InputError(input, message)``.
Nodes never mutate their inputs.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from gouache.engine.sockets import LITERAL_TYPES

if TYPE_CHECKING:
    from gouache.engine.context import RunContext
    from gouache.engine.problems import InputError


class CachePolicy(str, enum.Enum):
    """How the executor may reuse a node's outputs between runs."""

    DETERMINISTIC = "deterministic"
    """Same inputs, same outputs: reuse whenever the inputs' keys match."""
    NEVER = "never"
    """Not deterministic (e.g. reads a clock or a random source): run it every time."""
    FINGERPRINT = "fingerprint"
    """Depends on external state (a file): ``fingerprint()`` is part of the cache key."""


class Input(BaseModel):
    """One named input of a node type, with the widget the editor shows for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: str
    default: Any = None
    optional: bool = False
    """May be left unset; ``run`` then gets ``default`` (``None`` when there is none)."""
    link: Literal["either", "wire", "widget"] = "either"
    """``wire``: only a link may feed it; ``widget``: only a typed-in value; ``either``: both."""
    min: int | float | None = None
    max: int | float | None = None
    """Bounds, inclusive; kept as given, so an INT bound such as 2**64 - 1 stays exact."""
    step: int | float | None = None
    """For an INT input, values must be ``min`` (or 0) plus a multiple of ``step``; for a FLOAT input
    it is the editor's increment only (typed-in values between steps are accepted)."""
    choices: tuple[Any, ...] | None = None
    choices_from: str | None = None
    """A model folder kind (e.g. ``checkpoints``): the choices are the models found there now."""
    max_length: int | None = None
    """For a STRING input, the most characters accepted (default ``values.MAX_TEXT``)."""
    multiline: bool = False
    seed: bool = False
    """An integer seed: the editor offers to randomise it after each run."""
    widget: str | None = None
    """A custom editor widget by name, provided by a pack's web extension."""
    upload: str | None = None
    """The editor offers an upload button for this kind of file (``image``)."""
    description: str = ""

    def __init__(self, name: str | None = None, type: str | None = None, /, **kwargs: Any) -> None:
        super().__init__(**_by_keyword(name, type, kwargs))

    @property
    def accepts_literal(self) -> bool:
        """Whether a typed-in value may be given for this input."""
        return self.link != "wire" and (self.type in LITERAL_TYPES or self.choices is not None)

    @property
    def accepts_link(self) -> bool:
        """Whether a link may feed this input."""
        return self.link != "widget"

    @property
    def has_default(self) -> bool:
        """Whether leaving the input unset is allowed."""
        return self.optional or self.default is not None


def _by_keyword(name: str | None, type: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    # Node authors write Input("seed", "INT"); pydantic reading /api/nodes JSON back passes keywords.
    if name is not None:
        kwargs["name"] = name
    if type is not None:
        kwargs["type"] = type
    return kwargs


class Output(BaseModel):
    """One named output of a node type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: str
    description: str = ""

    def __init__(self, name: str | None = None, type: str | None = None, /, **kwargs: Any) -> None:
        super().__init__(**_by_keyword(name, type, kwargs))


class NodeInfo(BaseModel):
    """A node type as the registry publishes it (CLI ``nodes --json``, HTTP ``/api/nodes``)."""

    type: str
    version: int
    category: str
    description: str
    pack: str
    inputs: list[Input]
    outputs: list[Output]
    output_node: bool
    cache: CachePolicy
    deprecated: bool = False
    """Kept so old workflows run; the editor no longer offers it for new graphs."""


class Node:
    """Base class of every node type. Subclasses set the class attributes and ``run``."""

    type_name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    category: ClassVar[str] = "misc"
    inputs: ClassVar[list[Input]] = []
    outputs: ClassVar[list[Output]] = []
    output_node: ClassVar[bool] = False
    """A node wanted for its side effect (saving a file): runs are pruned to these by default."""
    cache: ClassVar[CachePolicy] = CachePolicy.DETERMINISTIC
    deprecated: ClassVar[bool] = False
    """Kept so old workflows run, but no longer offered for new graphs (say what replaces it in the docstring)."""

    def run(self, ctx: RunContext, **inputs: Any) -> dict[str, Any]:
        """Compute the outputs from the inputs."""
        raise NotImplementedError(f"{type(self).__name__} does not define run()")

    def check(self, values: dict[str, Any]) -> list[InputError]:
        """Problems with the typed-in ``values`` taken together (linked inputs are absent).

        Validation calls it once every single value has passed its own checks; return one
        :class:`InputError` per problem (every one at once), or nothing. It must be cheap and pure.
        A ``check(self, values, choices)`` with a third parameter also gets ``choices(kind)``: the
        names of the models of a folder kind, as ``choices_from`` offers them (for values that name
        models inside text, such as a prompt's references).
        """
        return []

    def fingerprint(self, ctx: RunContext, **inputs: Any) -> str:
        """Identify the external state this node reads (``CachePolicy.FINGERPRINT`` only)."""
        raise NotImplementedError(f"{type(self).__name__} uses a fingerprint cache but defines no fingerprint()")

    @classmethod
    def info(cls, pack: str) -> NodeInfo:
        """The published description of this node type."""
        doc = (cls.__doc__ or "").strip()
        return NodeInfo(
            type=cls.type_name,
            version=cls.version,
            category=cls.category,
            description=doc,
            pack=pack,
            inputs=list(cls.inputs),
            outputs=list(cls.outputs),
            output_node=cls.output_node,
            cache=cls.cache,
            deprecated=cls.deprecated,
        )
