"""Problems are data: every error names the node, the input, a code and how to fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow. ``node``/``input`` are ``None`` for whole-file problems."""

    node: str | None
    input: str | None
    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """The problem as a JSON-ready dict."""
        return asdict(self)

    def __str__(self) -> str:
        return self.message


class WorkflowInvalid(ValueError):
    """A workflow that cannot run; ``problems`` lists every problem found at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(problem.message for problem in problems))
