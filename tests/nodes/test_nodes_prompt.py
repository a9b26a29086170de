"""Prompt weighting syntax, 75-token windows, and TextEncode against diffusers' encode_prompt."""

from __future__ import annotations

import pytest
import torch
from pack_support import PROMPT, gouache_home, shared_engine, text_to_image  # noqa: F401

from gouache.nodes.prompt import parse_weights, tokenize_windows


@pytest.mark.parametrize(("text", "expected"), [
    ("a red circle", [("a red circle", 1.0)]),
    ("a (red:1.3) circle", [("a ", 1.0), ("red", 1.3), (" circle", 1.0)]),
    ("(red)", [("red", pytest.approx(1.1))]),
    ("[red]", [("red", pytest.approx(1 / 1.1))]),
    ("((red))", [("red", pytest.approx(1.21))]),
    ("(a [b]:2)", [("a ", 2.0), ("b", pytest.approx(2 / 1.1))]),
    (r"a \(literal\) bracket", [("a (literal) bracket", 1.0)]),
    ("time: noon", [("time: noon", 1.0)]),
    ("(unclosed", [("unclosed", pytest.approx(1.1))]),
    ("", [("", 1.0)]),
])
def test_weight_syntax(text, expected):
    assert parse_weights(text) == expected


def _tokenizer(gouache_home):
    from gouache.nodes.loading import load_clip_tokenizer

    return load_clip_tokenizer(gouache_home / "models/checkpoints/tiny-sd1/tokenizer")


def test_short_prompt_tokenises_like_the_pipeline(gouache_home):
    tokenizer = _tokenizer(gouache_home)
    [window] = tokenize_windows(tokenizer, parse_weights(PROMPT))
    expected = tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids
    assert window.ids == expected
    assert window.weights == [1.0] * 77


def test_long_prompt_is_split_into_windows_not_cut(gouache_home):
    tokenizer = _tokenizer(gouache_home)
    words = " ".join(["circle"] * 100)
    ids = [window.ids for window in tokenize_windows(tokenizer, parse_weights(words))]
    assert len(ids) == 2 and all(len(window) == 77 for window in ids)
    circle = tokenizer("circle", add_special_tokens=False).input_ids[0]
    assert sum(window.count(circle) for window in ids) == 100
    assert ids[0][0] == ids[1][0] == tokenizer.bos_token_id


def _encode(engine, text, checkpoint="tiny-sd1"):
    workflow = text_to_image(checkpoint, prompt=text)
    result = engine.run(workflow, outputs=["positive"])
    assert result.ok, result.error
    return result.outputs["positive"]["conditioning"]


def test_encoding_equals_diffusers_encode_prompt(shared_engine, gouache_home):
    from diffusers import StableDiffusionPipeline

    from gouache.nodes.loading import load_checkpoint

    loaded = load_checkpoint(gouache_home / "models/checkpoints/tiny-sd1")
    pipe = StableDiffusionPipeline(**loaded.components(), scheduler=None, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    with torch.no_grad():
        expected, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
    assert torch.equal(_encode(shared_engine, PROMPT).embeds, expected)


def test_long_prompts_concatenate_windows(shared_engine):
    long_text = ", ".join(["a large red circle on a blue background"] * 12)
    conditioning = _encode(shared_engine, long_text)
    assert conditioning.embeds.shape[1] == 77 * 2
    short = _encode(shared_engine, PROMPT)
    assert short.embeds.shape[1] == 77


def test_weights_change_the_embedding_and_one_is_neutral(shared_engine):
    plain = _encode(shared_engine, PROMPT).embeds
    assert torch.equal(_encode(shared_engine, "a large red (circle:1.0) on a blue background").embeds, plain)
    weighted = _encode(shared_engine, "a large (red:1.5) circle on a blue background").embeds
    assert not torch.allclose(weighted, plain)
    assert weighted.mean().item() == pytest.approx(plain.mean().item(), rel=1e-4)


def test_sdxl_conditioning_has_pooled_output_and_both_encoders(shared_engine):
    conditioning = _encode(shared_engine, PROMPT, "tiny-sdxl")
    assert conditioning.embeds.shape == (1, 77, 8 + 16)  # the two tiny encoders' widths
    assert conditioning.pooled.shape == (1, 12)  # encoder 2's projection


def test_an_interrupt_stops_text_encoding_between_windows(shared_engine):
    from pack_support import run_interrupted_at

    workflow = text_to_image(prompt="a red circle, " * 400, seed=11)  # about 20 windows
    result = run_interrupted_at(shared_engine, workflow, "positive", ["positive"])
    assert result.status == "interrupted"
    assert "positive" not in result.executed  # stopped inside the node, not after it


def test_an_interrupt_stops_a_vae_decode_inside_the_decoder(shared_engine):
    from pack_support import run_interrupted_at

    workflow = text_to_image(seed=12, prompt="a green square, its decode interrupted")  # in no other test
    result = run_interrupted_at(shared_engine, workflow, "decode", ["decode"])
    assert result.status == "interrupted" and "decode" not in result.executed
    again = shared_engine.run(workflow, outputs=["decode"])
    assert again.ok and again.executed == ["decode"]  # everything before it came from the cache


def test_a_prompt_longer_than_the_limit_is_refused_at_validation(shared_engine):
    from gouache.nodes.text_nodes import MAX_PROMPT

    valid, problems = shared_engine.check(text_to_image(prompt="x" * (MAX_PROMPT + 1)))
    assert valid is None
    assert [(p.node, p.input, p.code) for p in problems] == [("positive", "text", "too_long")]
    assert f"the limit is {MAX_PROMPT:,}" in problems[0].message
