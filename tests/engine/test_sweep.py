"""Sweeps, as a specification: the value syntax, the --set value rule, product and zip, output names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gouache.engine import Engine, Input, Node, Output, hookimpl
from gouache.engine.sweep import (
    MAX_RUNS, SweepError, axis, label, number_range, parse_axis, points, run_overrides, slug, typed_value,
)


class Prompt(Node):
    """A seed and a prompt, as a sampler and a text encoder take them."""

    type_name = "Prompt"
    category = "sweep"
    inputs = [Input("seed", "INT", default=0, min=0, max=2**32), Input("text", "STRING", default=""),
              Input("cfg", "FLOAT", default=1.0)]
    outputs = [Output("text", "STRING")]

    def run(self, ctx, seed, text, cfg):
        return {"text": f"{seed} {text} {cfg}"}


class Save(Node):
    """Stands for SaveImage: it names its files after ``filename_prefix``."""

    type_name = "Save"
    category = "sweep"
    output_node = True
    inputs = [Input("text", "STRING", link="wire"), Input("filename_prefix", "STRING", default="gouache")]
    outputs = []

    def run(self, ctx, text, filename_prefix):
        return {}


PACK = SimpleNamespace(gouache_register_nodes=hookimpl(lambda: [Prompt, Save]))
WORKFLOW = {"format": "gouache/1", "nodes": {
    "prompt": {"type": "Prompt", "inputs": {"seed": 1, "text": "a cat"}},
    "save": {"type": "Save", "inputs": {"text": {"node": "prompt", "output": "text"}, "filename_prefix": "cats"}},
}}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return Engine(packs={"sweep": PACK}, entry_points=False, home=tmp_path_factory.mktemp("home")).registry


def test_a_range_is_inclusive_and_may_have_a_step_or_go_down():
    assert number_range("1..4") == [1, 2, 3, 4]
    assert number_range("5..3") == [5, 4, 3]
    assert number_range("0..10:5") == [0, 5, 10]
    assert number_range("0.5..2:0.5") == [0.5, 1.0, 1.5, 2.0]
    assert number_range("-2..0") == [-2, -1, 0]
    assert number_range("a cat") is None and number_range("1...3") is None


def test_a_range_past_the_limit_or_with_a_zero_step_is_refused():
    with pytest.raises(SweepError, match="at most"):
        number_range(f"1..{MAX_RUNS + 1}")
    with pytest.raises(SweepError, match="above 0"):
        number_range("1..3:0")


def test_values_come_from_a_range_a_json_list_a_file_or_stand_alone():
    assert parse_axis("sampler.seed=1..3").values == (1, 2, 3)
    assert parse_axis('positive.text=["a cat", "a dog"]').values == ("a cat", "a dog")
    files = {"prompts.txt": "a cat\n\n  a dog  \n"}
    assert parse_axis("positive.text=@prompts.txt", read=files.__getitem__).values == ("a cat", "a dog")
    assert parse_axis("positive.text=a cat").values == ("a cat",)
    assert axis("sampler.seed", [1, 2]).values == (1, 2)


def test_files_are_read_only_when_a_reader_is_given_and_an_unreadable_file_is_named():
    with pytest.raises(SweepError, match="JSON list"):
        parse_axis("positive.text=@prompts.txt")

    def missing(path):
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(SweepError, match="cannot read 'nope.txt'"):
        parse_axis("positive.text=@nope.txt", read=missing)


@pytest.mark.parametrize("text", ["seed=1..3", "sampler=1", ".seed=1", "sampler.=1"])
def test_an_axis_must_name_node_and_input(text):
    with pytest.raises(SweepError, match="NODE.INPUT=VALUES"):
        parse_axis(text)


def test_bad_json_lists_and_empty_sweeps_are_refused():
    with pytest.raises(SweepError, match="not one"):
        parse_axis("sampler.seed=[1, 2")
    with pytest.raises(SweepError, match="no values"):
        parse_axis("sampler.seed=[]")


def test_the_set_rule_reads_json_but_text_inputs_keep_their_text(registry):
    text, seed = Prompt.inputs[1], Prompt.inputs[0]
    assert typed_value("5", seed) == 5 and typed_value("5", text) == "5"
    assert typed_value("true", text) == "true" and typed_value("a cat", seed) == "a cat"
    assert typed_value('["a", 1]', text) == ["a", 1]  # a list stays as parsed
    assert typed_value("2.5", None) == 2.5


def test_the_product_varies_the_first_axis_slowest_and_types_each_value(registry):
    axes = [parse_axis("prompt.seed=1..2"), parse_axis("prompt.text=@p", read=lambda _: "7\na dog")]
    assert points(axes, WORKFLOW, registry) == [
        {"prompt.seed": 1, "prompt.text": "7"}, {"prompt.seed": 1, "prompt.text": "a dog"},
        {"prompt.seed": 2, "prompt.text": "7"}, {"prompt.seed": 2, "prompt.text": "a dog"},
    ]
    # Numbers swept over a text input become texts; texts read from a file over a number become numbers.
    assert points([parse_axis("prompt.text=1..2")], WORKFLOW, registry) == [{"prompt.text": "1"}, {"prompt.text": "2"}]
    assert points([parse_axis("prompt.seed=@s", read=lambda _: "3\n4")], WORKFLOW, registry) == \
        [{"prompt.seed": 3}, {"prompt.seed": 4}]


def test_zip_pairs_values_and_needs_axes_of_one_length(registry):
    axes = [parse_axis("prompt.seed=1..2"), parse_axis('prompt.text=["a", "b"]')]
    assert points(axes, WORKFLOW, registry, zipped=True) == [
        {"prompt.seed": 1, "prompt.text": "a"}, {"prompt.seed": 2, "prompt.text": "b"}]
    with pytest.raises(SweepError, match="prompt.seed has 3, prompt.text has 2"):
        points([parse_axis("prompt.seed=1..3"), axes[1]], WORKFLOW, registry, zipped=True)


def test_a_product_past_the_limit_and_an_input_swept_twice_are_refused(registry):
    with pytest.raises(SweepError, match="at most"):
        points([parse_axis("prompt.seed=1..1000"), parse_axis("prompt.cfg=1..1000")], WORKFLOW, registry)
    with pytest.raises(SweepError, match="swept twice"):
        points([parse_axis("prompt.seed=1..2"), parse_axis("prompt.seed=3..4")], WORKFLOW, registry)
    assert points([], WORKFLOW, registry) == []


def test_output_files_are_named_by_the_values(registry):
    point = {"prompt.seed": 5, "prompt.text": "a red circle, on blue!"}
    assert label(point) == "seed-5_text-a-red-circle-on-blue"
    assert run_overrides(WORKFLOW, registry, point) == {
        **point, "save.filename_prefix": "cats_seed-5_text-a-red-circle-on-blue"}
    # A sweep of the prefix itself is left as swept.
    assert run_overrides(WORKFLOW, registry, {"save.filename_prefix": "x"}) == {"save.filename_prefix": "x"}


def test_labels_stay_short_and_safe_and_name_nodes_when_inputs_share_a_name():
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("") == "empty" and slug(0.5) == "0.5" and len(slug("x" * 500)) == 40
    assert label({"a.seed": 1, "b.seed": 2}) == "a-seed-1_b-seed-2"
