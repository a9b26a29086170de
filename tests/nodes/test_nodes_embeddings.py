"""Textual inversion, BREAK and CLIP skip: the prompt's windows, parity with diffusers, and workflows."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from pack_support import PROMPT, gouache_home, shared_engine, text_to_image  # noqa: F401

from gouache.nodes.embeddings import describe_embedding, read_embedding, references
from gouache.nodes.prompt import WINDOW, encode, parse_weights, tokenize_windows

TOLERANCE = 1e-4
EMBEDDINGS = "models/embeddings"


def _loaded(gouache_home, name):
    from gouache.nodes.loading import load_checkpoint

    return load_checkpoint(gouache_home / "models/checkpoints" / name)


def _sd_pipeline(loaded):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**loaded.components(), scheduler=None, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def _sdxl_pipeline(loaded):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(**loaded.components(), scheduler=None)


def _encode(loaded, text, **kwargs):
    with torch.no_grad():
        return encode(loaded, text, "cpu", **kwargs)


# -- the windows -----------------------------------------------------------------------------------


def test_references_are_found_with_or_without_brackets_and_weights():
    assert references("a (embedding:style:1.2), embedding:sub/other.pt and embedding:style") == [
        "style", "sub/other.pt"]


def test_break_starts_a_new_window_and_each_vector_takes_one_place(gouache_home):
    tokenizer = _loaded(gouache_home, "tiny-sd1").encoders[0].tokenizer
    vectors = {"e": torch.ones(3, 8)}
    windows = tokenize_windows(tokenizer, parse_weights("red BREAK (embedding:e:1.5) circle"), vectors)
    assert [window.length for window in windows] == [1, 4]
    assert all(len(window.ids) == WINDOW + 2 for window in windows)
    assert sorted(windows[1].vectors) == [1, 2, 3]
    assert windows[1].weights[1:5] == [1.5, 1.5, 1.5, 1.0]
    # A lower-case or glued BREAK is a word like any other.
    assert len(tokenize_windows(tokenizer, parse_weights("red break circle BREAKS"))) == 1


def test_an_embedding_that_fits_a_window_is_not_split_across_two(gouache_home):
    tokenizer = _loaded(gouache_home, "tiny-sd1").encoders[0].tokenizer
    windows = tokenize_windows(tokenizer, parse_weights("red " * 74 + "embedding:e"), {"e": torch.ones(3, 8)})
    assert [window.length for window in windows] == [74, 3]
    assert sorted(windows[1].vectors) == [1, 2, 3]


def test_break_equals_encoding_the_parts_apart(gouache_home):
    loaded = _loaded(gouache_home, "tiny-sd1")
    together, _ = _encode(loaded, "a red circle BREAK on a blue background")
    first, _ = _encode(loaded, "a red circle")
    second, _ = _encode(loaded, "on a blue background")
    assert torch.equal(together, torch.cat([first, second], dim=1))


# -- embeddings against diffusers' load_textual_inversion ------------------------------------------


@pytest.mark.parametrize("file", ["tiny-a1111.pt", "tiny-emb.safetensors"])
def test_sd1_embedding_equals_diffusers_load_textual_inversion(gouache_home, file):
    path = gouache_home / EMBEDDINGS / file
    loaded = _loaded(gouache_home, "tiny-sd1")
    pipe = _sd_pipeline(_loaded(gouache_home, "tiny-sd1"))  # diffusers changes its tokenizer and encoder
    pipe.load_textual_inversion(str(path), token="tinytoken", local_files_only=True)
    with torch.no_grad():
        expected, _ = pipe.encode_prompt("a red tinytoken circle on a blue background", "cpu", 1, False)
    embedding = read_embedding(path, "style")
    actual, _ = _encode(loaded, "a red embedding:style circle on a blue background", embeddings={"style": embedding})
    torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)
    plain, _ = _encode(loaded, "a red circle on a blue background")
    assert actual.shape == plain.shape and not torch.allclose(actual, plain)


def test_sdxl_pair_equals_diffusers_load_textual_inversion_per_encoder(gouache_home):
    from safetensors.torch import load_file

    path = gouache_home / EMBEDDINGS / "tiny-sdxl-pair.safetensors"
    tensors = load_file(str(path))
    loaded = _loaded(gouache_home, "tiny-sdxl")
    pipe = _sdxl_pipeline(_loaded(gouache_home, "tiny-sdxl"))
    pipe.load_textual_inversion(tensors["clip_l"], token="tinytoken", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(tensors["clip_g"], token="tinytoken", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    with torch.no_grad():
        expected, *_ = pipe.encode_prompt("a red tinytoken circle", device="cpu", do_classifier_free_guidance=False)
    actual, pooled = _encode(loaded, "a red embedding:tiny-sdxl-pair circle",
                             embeddings={"tiny-sdxl-pair": read_embedding(path, "tiny-sdxl-pair")})
    torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)
    # The pooled embedding is read at the real end-of-text token (diffusers' old CLIP configs read it at the
    # highest token id, which its added tokens then are).
    _, plain_pooled = _encode(loaded, "a red circle")
    assert pooled.shape == plain_pooled.shape


def test_an_embedding_of_a_width_no_encoder_has_is_an_error_naming_it(gouache_home):
    loaded = _loaded(gouache_home, "tiny-sd1")
    odd = read_embedding(gouache_home / EMBEDDINGS / "odd-width.safetensors", "odd-width")
    with pytest.raises(ValueError, match=r"embedding 'odd-width' holds vectors of width 5, which fits none"):
        _encode(loaded, "a embedding:odd-width circle", embeddings={"odd-width": odd})


def test_an_encoder_an_embedding_was_not_made_for_reads_padding_in_its_places(gouache_home):
    loaded = _loaded(gouache_home, "tiny-sdxl")
    sd1 = read_embedding(gouache_home / EMBEDDINGS / "tiny-emb.safetensors", "e")  # CLIP-L only
    embeds, _ = _encode(loaded, "a red embedding:e circle", embeddings={"e": sd1})
    assert embeds.shape == (1, 77, 8 + 16)


# -- CLIP skip against diffusers' clip_skip --------------------------------------------------------


def test_stop_at_layer_equals_diffusers_clip_skip_sd1(gouache_home):
    loaded = _loaded(gouache_home, "tiny-sd1")
    pipe = _sd_pipeline(copy.deepcopy(loaded))
    # diffusers reaches the final norm as text_encoder.text_model, which transformers 5's CLIPTextModel no
    # longer has; point it at the model itself (outside the module tree) so diffusers' own code runs.
    object.__setattr__(pipe.text_encoder, "text_model", pipe.text_encoder)
    with torch.no_grad():
        expected, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False, clip_skip=1)
        default, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
    torch.testing.assert_close(_encode(loaded, PROMPT, stop_at_layer=-2)[0], expected, atol=TOLERANCE, rtol=0)
    assert torch.equal(_encode(loaded, PROMPT, stop_at_layer=-1)[0], default)
    assert not torch.allclose(expected, default)


def _deeper_sdxl(loaded, layers):
    """The tiny SDXL with both text encoders rebuilt at ``layers`` layers (the tiny ones have 2)."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(5)
    encoders = []
    for encoder, cls in zip(loaded.encoders, (CLIPTextModel, CLIPTextModelWithProjection)):
        config = copy.deepcopy(encoder.model.config)
        config.num_hidden_layers = layers
        encoders.append(dataclasses.replace(encoder, model=cls(config).eval()))
    return dataclasses.replace(loaded, encoders=tuple(encoders))


def test_stop_at_layer_equals_diffusers_clip_skip_sdxl(gouache_home):
    loaded = _deeper_sdxl(_loaded(gouache_home, "tiny-sdxl"), 4)
    pipe = _sdxl_pipeline(loaded)
    for clip_skip in (1, 2):
        with torch.no_grad():
            expected, *_ = pipe.encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=False,
                                              clip_skip=clip_skip)
        actual, _ = _encode(loaded, PROMPT, stop_at_layer=-(clip_skip + 2))
        torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)
    with torch.no_grad():
        default, *_ = pipe.encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=False)
    assert torch.equal(_encode(loaded, PROMPT, stop_at_layer=-2)[0], default)


# -- what gouache models says ----------------------------------------------------------------------


def test_embeddings_are_described_from_names_and_shapes_only(gouache_home):
    folder = gouache_home / EMBEDDINGS
    assert describe_embedding(folder / "tiny-a1111.pt") == {
        "format": "pt", "kind": "embedding", "vectors": 2, "widths": [8], "encoders": ["width 8"]}
    from gouache.nodes.folders import safetensors_header

    pair = folder / "tiny-sdxl-pair.safetensors"
    assert describe_embedding(pair, safetensors_header(pair))["vectors"] == 2
    assert describe_embedding(pair, safetensors_header(pair))["widths"] == [8, 16]


# -- through workflows, as a user runs them --------------------------------------------------------


def _conditioning(engine, workflow):
    result = engine.run(workflow, outputs=["positive"])
    assert result.ok, result.error
    return result.outputs["positive"]["conditioning"]


def _with_skip(workflow, stop_at_layer):
    workflow["nodes"]["skip"] = {"type": "ClipSetLastLayer", "inputs": {
        "clip": {"node": "checkpoint", "output": "clip"}, "stop_at_layer": stop_at_layer}}
    workflow["nodes"]["positive"]["inputs"]["clip"] = {"node": "skip", "output": "clip"}
    return workflow


def test_a_prompt_uses_an_embedding_by_name_with_or_without_its_suffix(shared_engine, gouache_home):
    loaded = _loaded(gouache_home, "tiny-sd1")
    expected, _ = _encode(loaded, "a red (embedding:e:1.2) circle",
                          embeddings={"e": read_embedding(gouache_home / EMBEDDINGS / "tiny-a1111.pt", "e")})
    for name in ("tiny-a1111", "tiny-a1111.pt"):
        found = _conditioning(shared_engine, text_to_image(prompt=f"a red (embedding:{name}:1.2) circle"))
        assert torch.equal(found.embeds, expected)


def test_an_unknown_embedding_is_a_validation_problem_listing_those_found(shared_engine):
    valid, problems = shared_engine.check(text_to_image(prompt="a embedding:nope circle, embedding:tiny-emb"))
    assert valid is None
    assert [(p.node, p.input, p.code) for p in problems] == [("positive", "text", "unknown_embedding")]
    assert "'nope'" in problems[0].message and "tiny-a1111" in problems[0].message


def test_an_embedding_for_another_width_fails_naming_it(shared_engine):
    result = shared_engine.run(text_to_image(prompt="a embedding:odd-width circle"), outputs=["positive"])
    assert not result.ok
    assert (result.error.node, result.error.input, result.error.code) == ("positive", "text", "wrong_embedding")
    assert "'odd-width'" in result.error.message


def test_the_sdxl_pair_encodes_through_a_workflow(shared_engine):
    conditioning = _conditioning(shared_engine, text_to_image("tiny-sdxl", prompt="a embedding:tiny-sdxl-pair circle"))
    plain = _conditioning(shared_engine, text_to_image("tiny-sdxl", prompt="a circle"))
    assert conditioning.embeds.shape == plain.embeds.shape and not torch.allclose(conditioning.embeds, plain.embeds)


def test_break_in_a_workflow_gives_two_windows(shared_engine):
    assert _conditioning(shared_engine, text_to_image(prompt="a red circle BREAK blue")).embeds.shape[1] == 77 * 2


def test_clip_set_last_layer_in_a_workflow(shared_engine, gouache_home):
    plain = _conditioning(shared_engine, text_to_image(prompt="a red circle, skipped")).embeds
    last = _conditioning(shared_engine, _with_skip(text_to_image(prompt="a red circle, skipped"), -1)).embeds
    skipped = _conditioning(shared_engine, _with_skip(text_to_image(prompt="a red circle, skipped"), -2)).embeds
    assert torch.equal(last, plain) and not torch.allclose(skipped, plain)
    expected, _ = _encode(_loaded(gouache_home, "tiny-sd1"), "a red circle, skipped", stop_at_layer=-2)
    assert torch.equal(skipped, expected)
    result = shared_engine.run(_with_skip(text_to_image(prompt="deep"), -3), outputs=["positive"])
    assert (result.error.node, result.error.input, result.error.code) == ("skip", "stop_at_layer", "too_deep")
    assert "2 layers" in result.error.message


def test_real_widths_are_named_as_the_encoders_people_know(tmp_path):
    from safetensors.torch import save_file

    save_file({"clip_l": torch.zeros(4, 768), "clip_g": torch.zeros(4, 1280)}, str(tmp_path / "xl.safetensors"))
    torch.save({"string_to_param": {"*": torch.zeros(1, 1024)}}, str(tmp_path / "sd2.pt"))
    from gouache.nodes.folders import describe_embedding as describe

    assert describe(tmp_path / "xl.safetensors")["encoders"] == ["clip_l", "clip_g"]
    assert describe(tmp_path / "sd2.pt") == {"format": "pt", "kind": "embedding", "vectors": 1, "widths": [1024],
                                             "encoders": ["clip_h"]}
