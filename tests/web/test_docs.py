"""docs/api.md documents every route and event, with schemas generated from the pydantic models."""

from pathlib import Path

from gouache.web.schemas import EVENTS, END, START, render
from gouache.web.server import create_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_generated_schemas_are_up_to_date():
    text = DOC.read_text()
    generated = text[text.index(START): text.index(END) + len(END)]
    assert generated == render(), "run: python -m gouache.web.schemas docs/api.md"


def test_every_route_and_event_is_documented(engine):
    text = DOC.read_text()
    for resource in create_app(engine).router.resources():
        path = resource.canonical
        assert f"`{path}`" in text or f" {path}`" in text, f"route {path} is not in docs/api.md"
    for event_type in EVENTS:
        assert f"`{event_type}`" in text
