"""gouache's native CLIP text model and tokenizer equal transformers' ``CLIPTextModel`` and ``CLIPTokenizer``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel

from gouache.nodes.loading.shipped import load_clip_tokenizer
from gouache.nodes.native import UnsupportedConfig
from gouache.nodes.native.clip import NativeCLIPTextModel, NativeCLIPTokenizer
from gouache.nodes.native.config import ModuleConfig

NODES = Path(__file__).resolve().parents[2] / "nodes"
TINY = NODES / "embedded" / "weights" / "gouache-tiny"
SD1_TOKENIZER = NODES / "configs" / "sd1" / "tokenizer"
SD2_TOKENIZER = NODES / "configs" / "sd2" / "tokenizer"
TOLERANCE = 1e-5

RANDOM_CONFIG = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "vocab_size": 100, "max_position_embeddings": 77, "bos_token_id": 98, "eos_token_id": 99,
                 "pad_token_id": 99}


def _pair(config: dict, weights: dict | None = None) -> tuple[CLIPTextModel, NativeCLIPTextModel]:
    torch.manual_seed(0)
    reference = CLIPTextModel(CLIPTextConfig(**config)).eval()
    if weights is not None:
        reference.load_state_dict({key: value.float() for key, value in weights.items()}, strict=True)
    native = NativeCLIPTextModel(config).eval()
    native.load_state_dict(reference.state_dict(), strict=True)
    return reference, native


def _tiny_pair() -> tuple[CLIPTextModel, NativeCLIPTextModel]:
    config = json.loads((TINY / "text_encoder" / "config.json").read_text())
    return _pair(config, load_file(TINY / "text_encoder" / "model.safetensors"))


def _batch(config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Two windows: a short prompt padded after its EOS, and one that fills all 77 places."""
    eos, bos = config["eos_token_id"], config["bos_token_id"]
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, min(bos, eos), (2, 77), generator=generator)
    ids[:, 0] = bos
    ids[0, 9], ids[0, 10:] = eos, config.get("pad_token_id", eos)
    ids[1, 76] = eos
    mask = torch.ones(2, 77, dtype=torch.long)
    mask[0, 10:] = 0
    return ids, mask


def _largest_difference(reference: CLIPTextModel, native: NativeCLIPTextModel, ids: torch.Tensor,
                        mask: torch.Tensor | None) -> float:
    with torch.no_grad():
        want = reference(ids, attention_mask=mask, output_hidden_states=True)
        got = native(ids, attention_mask=mask, output_hidden_states=True)
    assert len(got.hidden_states) == len(want.hidden_states) == reference.config.num_hidden_layers + 1
    pairs = [(got.last_hidden_state, want.last_hidden_state), (got.pooler_output, want.pooler_output),
             (got[0], want[0]), *zip(got.hidden_states, want.hidden_states)]
    for mine, theirs in pairs:
        assert mine.shape == theirs.shape
    return max(float((mine - theirs).abs().max()) for mine, theirs in pairs)


@pytest.mark.parametrize("which", ["random", "gouache-tiny", "gelu", "legacy-eos"])
@pytest.mark.parametrize("padded", [False, True], ids=["no-mask", "padding-mask"])
def test_outputs_match_transformers(which: str, padded: bool) -> None:
    if which == "gouache-tiny":
        reference, native = _tiny_pair()
        config = dict(reference.config.to_dict())
    else:
        config = dict(RANDOM_CONFIG, hidden_act="gelu") if which == "gelu" else dict(RANDOM_CONFIG)
        if which == "legacy-eos":  # eos_token_id=2: pooled at the highest id, as old SD configs say
            config.update(bos_token_id=98, eos_token_id=2)
        reference, native = _pair(config)
    ids, mask = _batch({**config, "eos_token_id": 99} if which == "legacy-eos" else config)
    assert _largest_difference(reference, native, ids, mask if padded else None) <= TOLERANCE


def test_pooled_output_is_the_end_of_text_tokens_state() -> None:
    reference, native = _pair(RANDOM_CONFIG)
    ids, _ = _batch(RANDOM_CONFIG)
    with torch.no_grad():
        result = native(ids)
    assert torch.equal(result.pooler_output[0], result.last_hidden_state[0, 9])
    assert torch.equal(result.pooler_output[1], result.last_hidden_state[1, 76])
    assert result.hidden_states is None
    assert native(ids, return_dict=False)[0].shape == (2, 77, 32)


def test_a_hook_on_the_input_embeddings_changes_both_alike() -> None:
    reference, native = _tiny_pair()
    ids, _ = _batch(dict(reference.config.to_dict()))
    vector = torch.linspace(-1, 1, reference.config.hidden_size)

    def replace(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, 3] = vector
        return output

    with torch.no_grad():
        plain = native(ids).last_hidden_state
    handles = [model.get_input_embeddings().register_forward_hook(replace) for model in (reference, native)]
    try:
        with torch.no_grad():
            want, got = reference(ids).last_hidden_state, native(ids).last_hidden_state
    finally:
        for handle in handles:
            handle.remove()
    assert float((got - plain).abs().max()) > 1e-3  # the hook took effect
    assert float((got - want).abs().max()) <= TOLERANCE


def test_state_dict_and_module_paths_are_transformers() -> None:
    reference, native = _tiny_pair()
    assert list(native.state_dict()) == list(reference.state_dict())
    assert set(load_file(TINY / "text_encoder" / "model.safetensors")) == set(native.state_dict())

    def weighted(model: torch.nn.Module) -> set[str]:  # what LoRA patching resolves names against
        return {name for name, sub in model.named_modules() if getattr(sub, "weight", None) is not None}

    assert weighted(native) == weighted(reference)
    assert isinstance(native.config, ModuleConfig)
    assert native.config.num_hidden_layers == 3 and native.config.projection_dim == 128
    assert NativeCLIPTextModel({}).config.hidden_size == 512  # transformers' defaults fill what is not stored
    half = NativeCLIPTextModel(RANDOM_CONFIG).to(torch.float16)
    assert half.dtype == torch.float16 and half.device.type == "cpu"


def test_builds_on_the_meta_device_without_buffers() -> None:
    with torch.device("meta"):
        native = NativeCLIPTextModel(RANDOM_CONFIG)
    assert not list(native.buffers())  # positions are counted, so nothing is left unloaded after assign=True


@pytest.mark.parametrize(("key", "value"), [
    ("hidden_act", "relu"), ("num_attention_heads", 5), ("is_causal", False), ("eos_token_id", [2, 3]),
    ("architectures", ["CLIPTextModelWithProjection"]),
])
def test_unsupported_config_is_refused(key: str, value: object) -> None:
    with pytest.raises(UnsupportedConfig, match=re.escape(f"{key}={value!r}")):
        NativeCLIPTextModel({**RANDOM_CONFIG, key: value})


def test_shipped_configs_build() -> None:
    for family in ("sd1", "sd2"):
        config = json.loads((NODES / "configs" / family / "text_encoder" / "config.json").read_text())
        with torch.device("meta"):
            assert NativeCLIPTextModel(config).config.hidden_act in ("quick_gelu", "gelu")


# -- tokenizer ----------------------------------------------------------------------------------------

_WORDS = st.sampled_from(["a", "cat", "photo", "of", "the", "hello", "world", "don't", "it's", "we're", "BREAK",
                          "masterpiece", "jekyll", "zz", "<|endoftext|>", "<|startoftext|>", "embedding:x"])
_PIECES = st.one_of(
    _WORDS,
    st.text(alphabet=st.characters(codec="ascii"), max_size=12),
    st.sampled_from(["(red:1.2)", "[blue]", "((big))", "\\(", "!", "!!", "?!", "...", ",", ":", "1.5", "2024"]),
    st.sampled_from(["café", "Ñandú", "e\u0301", "ﬁ", "Straße", "日本語", "한국어", "Привет", "😀", "🎨🖌", "👩‍🎨", "½"]),
    st.text(max_size=6),
)
_TEXTS = st.lists(st.tuples(_PIECES, st.sampled_from([" ", "  ", "\n", "\t", "", " \n "])), max_size=12).map(
    lambda parts: "".join(piece + space for piece, space in parts))


@pytest.fixture(scope="module", params=["gouache-tiny", "sd1", "sd2"])
def tokenizers(request: pytest.FixtureRequest) -> tuple[object, NativeCLIPTokenizer]:
    folder = {"gouache-tiny": TINY / "tokenizer", "sd1": SD1_TOKENIZER, "sd2": SD2_TOKENIZER}[request.param]
    return load_clip_tokenizer(folder), NativeCLIPTokenizer.from_folder(folder)


def test_special_ids_match(tokenizers: tuple[object, NativeCLIPTokenizer]) -> None:
    reference, native = tokenizers
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "model_max_length"):
        assert getattr(native, name) == getattr(reference, name), name
    assert len(native) == len(reference)


def test_known_ids() -> None:
    sd1, sd2 = NativeCLIPTokenizer.from_folder(SD1_TOKENIZER), NativeCLIPTokenizer.from_folder(SD2_TOKENIZER)
    assert (sd1.bos_token_id, sd1.eos_token_id, sd1.pad_token_id) == (49406, 49407, 49407)
    assert sd2.pad_token_id == 0  # "!" pads SD 2.x
    assert sd1("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


@seed(20240611)
@settings(max_examples=300, deadline=None, database=None)
@given(text=_TEXTS)
def test_ids_match_transformers(tokenizers: tuple[object, NativeCLIPTokenizer], text: str) -> None:
    reference, native = tokenizers
    assert native(text, add_special_tokens=False, truncation=False).input_ids == \
        reference(text, add_special_tokens=False, truncation=False).input_ids
    assert native(text, truncation=True).input_ids == reference(text, truncation=True).input_ids


def test_vocab_and_merges_folder_matches(tmp_path: Path) -> None:
    """A folder with vocab.json + merges.txt (no tokenizer.json) loads as transformers loads it."""
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((TINY / "tokenizer" / name).read_bytes())
    reference, native = load_clip_tokenizer(tmp_path), NativeCLIPTokenizer.from_folder(tmp_path)
    for text in ("hello world!!", "jekyll (red:1.2) café 日本", "<|endoftext|> x"):
        assert native(text, add_special_tokens=False).input_ids == reference(text, add_special_tokens=False).input_ids


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="holds no tokenizer"):
        NativeCLIPTokenizer.from_folder(tmp_path)


def test_import_pulls_in_neither_transformers_nor_diffusers() -> None:
    code = ("import sys, gouache.nodes.native.clip as c; c.NativeCLIPTokenizer.from_folder(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'diffusers')))")
    out = subprocess.run([sys.executable, "-c", code, str(SD1_TOKENIZER)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
