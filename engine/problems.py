"""Problems are data: every error names the node, the input, a code and how to fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ConfigDict


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow. ``node``/``input`` are ``None`` for whole-file problems."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # HTTP bodies embed problems as they are
    node: str | None
    input: str | None
    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """The problem as a JSON-ready dict."""
        return asdict(self)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class NodeError:
    """A node that failed at run time.

    ``input`` names the input the failure is about when the node said so (an :class:`InputError`),
    so every surface (CLI, HTTP, editor) can point at it as it does for a validation ``Problem``.
    """

    node: str
    type: str
    message: str
    traceback: str
    input: str | None = None
    code: str = "node_failed"

    def to_json(self) -> dict[str, Any]:
        """The error as a JSON-ready dict."""
        return asdict(self)

    def __str__(self) -> str:
        where = f" input {self.input!r}" if self.input else ""
        return f"node {self.node!r} ({self.type}){where} failed: {self.message}"


class InputError(ValueError):
    """Raised by ``Node.run`` when one input's value cannot be used; the run fails naming that input.

    ``message`` says what is wrong and how to fix it, without repeating the input's name (every
    surface shows the name beside it). ``code`` is a short machine-readable reason.
    """

    def __init__(self, input: str, message: str, code: str = "invalid_input") -> None:
        self.input = input
        self.message = message
        self.code = code
        super().__init__(f"{input}: {message}")


class WorkflowInvalid(ValueError):
    """A workflow that cannot run; ``problems`` lists every problem found at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(problem.message for problem in problems))
