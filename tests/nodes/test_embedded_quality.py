"""Quality gate of the shipped embedded model: it draws what held-out and seen prompts ask for.

Loads `nodes/embedded/weights/gouache-tiny/` offline with diffusers, renders at cfg 3 with 20
Euler steps, and reads the images back with the checker. The floors are the issue's (90% of held-out
renders fully right) or, for sizes and positions, a looser one; the model card has the measured figures.
"""

from __future__ import annotations

import pytest
import torch

from gouache.nodes.devices import thread_plan

from gouache_training import evaluate

HELD_OUT_FLOOR = 0.90
SEEN_FLOOR = 0.90
SIZE_FLOOR = 0.75
POSITION_FLOOR = 0.75

# 144 renders: about 8.5 minutes alone on the 2-core reference machine. On a busy machine the thread
# policy falls back towards one passive-waiting thread, which is slower alone but never the 10-60x
# collapse of spinning threads; the limit leaves room for the render count at one thread, under load.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def figures() -> dict[str, dict[str, float]]:
    torch.set_num_threads(thread_plan().threads or 1)
    return evaluate.evaluate(
        evaluate.load_shipped(), held_out_seeds=3, seen=24, attributes=12, positions=24, held_out_placed_seeds=1
    )


def test_held_out_prompts_are_drawn_right(figures: dict[str, dict[str, float]]) -> None:
    assert figures["held_out"]["fully_right"] >= HELD_OUT_FLOOR, figures["held_out"]


def test_seen_prompts_are_drawn_right(figures: dict[str, dict[str, float]]) -> None:
    assert figures["seen"]["fully_right"] >= SEEN_FLOOR, figures["seen"]


def test_sizes_follow_the_prompt(figures: dict[str, dict[str, float]]) -> None:
    attrs = figures["attributes"]
    assert attrs["size"] >= SIZE_FLOOR, attrs


@pytest.mark.parametrize("group", ["positions", "held_out_placed"])
def test_positions_follow_the_prompt(figures: dict[str, dict[str, float]], group: str) -> None:
    placed = figures[group]
    assert placed["position"] >= POSITION_FLOOR, placed
    assert placed["fully_right"] >= HELD_OUT_FLOOR, placed
