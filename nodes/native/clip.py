"""CLIP's text encoder and tokenizer as Stable Diffusion 1.x uses them, without importing transformers.

``NativeCLIPTextModel`` computes what transformers' ``CLIPTextModel`` (5.x, default ``sdpa`` attention) computes,
with the same flat state-dict keys (``embeddings.*``, ``encoder.layers.N.*``, ``final_layer_norm.*``), the same
module paths (LoRA patches by them, ``get_input_embeddings()`` hooks replace token vectors) and the same output
fields. ``NativeCLIPTokenizer`` builds the same ``tokenizers`` pipeline transformers' ``CLIPTokenizer`` builds,
so it gives the same ids for every text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModuleConfig, Weights, require

__all__ = ["CLIPTextOutput", "NativeCLIPTextModel", "NativeCLIPTokenizer", "TokenizerOutput"]

# transformers' CLIPTextConfig defaults, for keys a stored config leaves out.
TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "projection_dim": 512,
    "num_hidden_layers": 12, "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "initializer_range": 0.02, "initializer_factor": 1.0,
    "pad_token_id": 1, "bos_token_id": 49406, "eos_token_id": 49407,
}

_ACTIVATIONS = ("quick_gelu", "gelu")  # SD 1.x and CLIP-L use quick_gelu; OpenCLIP ViT-H/bigG (SD 2.x, SDXL) gelu
_LEGACY_EOS = 2
"""Configs saved before transformers#24773 say eos_token_id=2; transformers then pools at the highest id."""


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _check(config: ModuleConfig) -> None:
    require(config, "CLIP text model", {
        "hidden_act": _ACTIVATIONS,
        "num_attention_heads": lambda v: isinstance(v, int) and v > 0 and config.hidden_size % v == 0,
        "eos_token_id": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "is_causal": (None, True),  # False would make transformers attend both ways
        "output_attentions": (None, False),
        "architectures": lambda v: v is None or list(v) == ["CLIPTextModel"],
    })


@dataclass
class CLIPTextOutput:
    """What ``NativeCLIPTextModel`` returns: transformers' ``BaseModelOutputWithPooling`` fields.

    Indexing goes over the fields that are set, in order, as transformers' ``ModelOutput`` does
    (``result[0]`` is ``last_hidden_state``).
    """

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        """The fields that are set, in order."""
        return tuple(v for v in (self.last_hidden_state, self.pooler_output, self.hidden_states) if v is not None)

    def __getitem__(self, index: int | slice) -> Any:
        return self.to_tuple()[index]


def _embedding(count: int, width: int) -> nn.Embedding:
    """An embedding table, initialised only when it has memory: on the meta device (the loader builds there)
    ``normal_`` runs through torch's Python reference and imports ``torch._dynamo`` (about 2.8 s here)."""
    weight = torch.empty(count, width)
    if not weight.is_meta:
        nn.init.normal_(weight)
    return nn.Embedding(count, width, _weight=weight)


class CLIPTextEmbeddings(nn.Module):
    """Token plus position embeddings.

    Positions are counted in ``forward`` rather than kept in a ``position_ids`` buffer: transformers' buffer is
    not persistent (not in the state dict), and a buffer would stay empty in a model built on the meta device.
    """

    def __init__(self, config: ModuleConfig) -> None:
        super().__init__()
        self.token_embedding = _embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = _embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        length = input_ids.shape[-1]
        if length > self.position_embedding.num_embeddings:
            raise ValueError(f"{length} tokens are more than the model's {self.position_embedding.num_embeddings} "
                             "positions")
        if position_ids is None:
            position_ids = torch.arange(length, device=input_ids.device).unsqueeze(0)
        # The token embedding is called as a module: prompt embeddings hook its output to put vectors in.
        return self.token_embedding(input_ids) + self.position_embedding(position_ids)


class CLIPAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``, as transformers' sdpa path."""

    def __init__(self, config: ModuleConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.heads, self.head_dim = config.num_attention_heads, width // config.num_attention_heads
        self.scale = self.head_dim ** -0.5
        self.dropout = float(config.attention_dropout or 0.0)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length = hidden.shape[:2]
        shape = (batch, length, -1, self.head_dim)
        q, k, v = (proj(hidden).view(shape).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, scale=self.scale,
            is_causal=mask is None and length > 1)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1).contiguous())


class CLIPMLP(nn.Module):
    """fc1, activation, fc2."""

    def __init__(self, config: ModuleConfig) -> None:
        super().__init__()
        self.act = _quick_gelu if config.hidden_act == "quick_gelu" else F.gelu
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden)))


class CLIPEncoderLayer(nn.Module):
    """A pre-norm transformer block."""

    def __init__(self, config: ModuleConfig) -> None:
        super().__init__()
        self.self_attn = CLIPAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        hidden = hidden + self.self_attn(self.layer_norm1(hidden), mask)
        return hidden + self.mlp(self.layer_norm2(hidden))


class CLIPEncoder(nn.Module):
    """The stack of blocks (a level of its own so the state-dict keys read ``encoder.layers.N``)."""

    def __init__(self, config: ModuleConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers))


def _attention_mask(padding: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor | None:
    """Causal and padding masks as one boolean [B, 1, L, L] mask, or None where causal alone does.

    As transformers' ``create_causal_mask`` for sdpa: without padding the mask stays None so attention runs
    with ``is_causal``; a 4-D mask is taken as it is.
    """
    if padding is None or padding.ndim == 4:
        return padding
    batch, length = hidden.shape[:2]
    if padding.shape != (batch, length):
        raise ValueError(f"attention_mask has shape {tuple(padding.shape)}; the input ids need ({batch}, {length})")
    keep = padding.to(device=hidden.device, dtype=torch.bool)
    if bool(keep.all()):
        return None
    positions = torch.arange(length, device=hidden.device)
    causal = positions[:, None] >= positions[None, :]
    return (causal[None, None] & keep[:, None, None, :]).expand(batch, 1, length, length)


class NativeCLIPTextModel(Weights, nn.Module):
    """transformers' ``CLIPTextModel`` (5.x layout) for the configs SD 1.x-2.x use.

    Other configs raise ``UnsupportedConfig`` naming the key and value.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = ModuleConfig.of(config, TEXT_DEFAULTS)
        _check(self.config)
        self.embeddings = CLIPTextEmbeddings(self.config)
        self.encoder = CLIPEncoder(self.config)
        self.final_layer_norm = nn.LayerNorm(self.config.hidden_size, eps=self.config.layer_norm_eps)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding module (hook its output to replace token vectors)."""
        return self.embeddings.token_embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None) -> CLIPTextOutput | tuple[Any, ...]:
        """Hidden states after the final layer norm, the end-of-text token's (pooled), and optionally every layer's.

        ``hidden_states`` holds the embeddings and each block's output (before the final norm), as transformers.
        """
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.get("output_hidden_states", False))
        if return_dict is None:
            return_dict = bool(self.config.get("return_dict", True))
        input_ids = input_ids.view(-1, input_ids.shape[-1])
        hidden = self.embeddings(input_ids, position_ids)
        mask = _attention_mask(attention_mask, hidden)
        states = [hidden] if output_hidden_states else None
        for layer in self.encoder.layers:
            hidden = layer(hidden, mask)
            if states is not None:
                states.append(hidden)
        last = self.final_layer_norm(hidden)
        ids = input_ids.to(dtype=torch.int, device=last.device)
        eos = self.config.eos_token_id
        # Legacy configs pool at the highest id (CLIP's EOS is its vocabulary's last); newer ones at the first EOS.
        where = ids.argmax(dim=-1) if eos == _LEGACY_EOS else (ids == eos).int().argmax(dim=-1)
        pooled = last[torch.arange(last.shape[0], device=last.device), where]
        output = CLIPTextOutput(last, pooled, tuple(states) if states is not None else None)
        return output if return_dict else output.to_tuple()


@dataclass(frozen=True)
class TokenizerOutput:
    """The ids of one text (``input_ids``), or of each of several."""

    input_ids: list[int] | list[list[int]]


class NativeCLIPTokenizer:
    """CLIP's byte-level BPE tokenizer as transformers' ``CLIPTokenizer`` builds it on the ``tokenizers`` library.

    Text is NFC-normalised, whitespace runs become one space, lowercased, split by CLIP's pattern, and BPE-encoded
    with ``</w>`` ending each word; the special tokens (BOS, EOS, UNK, PAD) are matched in the raw text first,
    as transformers does (so with SD 2.x's pad token ``!`` every ``!`` is that token).
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], *, bos_token: str = "<|startoftext|>",
                 eos_token: str = "<|endoftext|>", unk_token: str = "<|endoftext|>",
                 pad_token: str | None = "<|endoftext|>", model_max_length: int | None = None,
                 added_tokens: Sequence[Mapping[str, Any]] = ()) -> None:
        from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import BPE

        backend = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                end_of_word_suffix="</w>", fuse_unk=False, unk_token=unk_token))
        backend.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"
                                       r"|[^\s\p{L}\p{N}]+"), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ])
        # A tokenizer.json's own added tokens first, in id order, then the named special tokens not among them.
        tokens = [AddedToken(t["content"], single_word=t.get("single_word", False), lstrip=t.get("lstrip", False),
                             rstrip=t.get("rstrip", False), normalized=t.get("normalized", False),
                             special=t.get("special", True)) for t in sorted(added_tokens, key=lambda t: t["id"])]
        known = {t["content"] for t in added_tokens}
        for token in dict.fromkeys(t for t in (bos_token, eos_token, unk_token, pad_token) if t is not None):
            if token not in known:
                tokens.append(AddedToken(token, special=True, normalized=False))
        backend.add_special_tokens(tokens)
        self._backend = backend
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = bos_token, eos_token, unk_token, pad_token
        self.model_max_length = int(model_max_length) if model_max_length is not None else int(1e30)
        """Tokens one sequence may hold, BOS and EOS included (transformers' "very large" when unset)."""

    @classmethod
    def from_folder(cls, folder: Path | str) -> NativeCLIPTokenizer:
        """Load a diffusers ``tokenizer`` folder: ``tokenizer.json``, ``vocab.json`` + ``merges.txt``, or only
        ``tokenizer_config.json`` (completed with gouache's shipped CLIP BPE files, as ``load_clip_tokenizer``)."""
        folder = Path(folder)
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        added: list[dict[str, Any]] = []
        if (folder / "tokenizer.json").is_file():
            data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
            model = data.get("model", {})
            if model.get("type") != "BPE":
                raise ValueError(f"{folder / 'tokenizer.json'} holds a {model.get('type')} model, not CLIP's BPE")
            vocab = model["vocab"]
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
            added = data.get("added_tokens") or []
        else:
            if (folder / "vocab.json").is_file():
                vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
            elif config:
                from gouache.nodes.loading.shipped import clip_bpe_files

                vocab_path, merges_path = clip_bpe_files()
            else:
                raise OSError(f"{folder} holds no tokenizer: expected tokenizer.json, vocab.json + merges.txt, "
                              "or at least tokenizer_config.json")
            vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
            merges = _read_merges(merges_path)
        added += [{**token, "id": int(index)} for index, token in (config.get("added_tokens_decoder") or {}).items()
                  if token.get("content") not in {t["content"] for t in added}]
        names = {key: str(_content(config[key])) for key in ("bos_token", "eos_token", "unk_token", "pad_token")
                 if config.get(key) is not None}
        return cls(vocab, merges, **names, model_max_length=config.get("model_max_length"), added_tokens=added)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._backend.token_to_id(token)

    bos_token_id = property(lambda self: self._id(self.bos_token), doc="Id of the begin-of-text token.")
    eos_token_id = property(lambda self: self._id(self.eos_token), doc="Id of the end-of-text token.")
    unk_token_id = property(lambda self: self._id(self.unk_token), doc="Id of a piece the vocabulary lacks.")
    pad_token_id = property(lambda self: self._id(self.pad_token), doc="Id that fills a window after EOS.")

    def __len__(self) -> int:
        """Vocabulary size with the added tokens, as ``len()`` of transformers' tokenizer."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """Token -> id, added tokens included."""
        return self._backend.get_vocab(with_added_tokens=True)

    def __call__(self, text: str | list[str], add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None) -> TokenizerOutput:
        """``text``'s ids (a list per text for a list), with BOS/EOS around them when ``add_special_tokens``;
        ``truncation`` cuts the ids (specials included) to ``max_length`` or ``model_max_length``."""
        if isinstance(text, str):
            return TokenizerOutput(self._encode(text, add_special_tokens, truncation, max_length))
        return TokenizerOutput([self._encode(t, add_special_tokens, truncation, max_length) for t in text])

    def _encode(self, text: str, add_special_tokens: bool, truncation: bool, max_length: int | None) -> list[int]:
        ids = self._backend.encode(text, add_special_tokens=False).ids
        specials = 2 if add_special_tokens else 0
        if truncation:
            ids = ids[:max(0, (max_length or self.model_max_length) - specials)]
        return [self.bos_token_id, *ids, self.eos_token_id] if add_special_tokens else ids


def _content(token: Any) -> Any:
    """A special token as tokenizer_config.json stores it: a string or an AddedToken dict."""
    return token.get("content") if isinstance(token, dict) else token


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """merges.txt's pairs, without its ``#version`` line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return [tuple(line.split(" ")) for line in lines if line]  # type: ignore[misc]
