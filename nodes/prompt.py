"""Prompts: A1111-style attention weights, 75-token windows, ``BREAK``, embeddings and the text encoders.

Syntax: ``(words:1.3)`` weighs by 1.3, ``(words)`` by 1.1, ``[words]`` by 1/1.1; brackets nest and
multiply; ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are literal characters; a bracket left open
applies to the end of the prompt. A prompt is never cut: its tokens are split into windows of 75,
each encoded as ``BOS + 75 tokens + EOS`` (padded to 77) and the windows concatenated, so the
embeddings are [1, 77*k, D]. ``BREAK`` (uppercase, a word of its own) ends the current window
there, padding it, as in A1111. A prompt that fits one window tokenises exactly as diffusers'
pipelines do, which the parity tests rely on.

``embedding:NAME`` puts a textual-inversion embedding's vectors in place of tokens, one token place
per vector, weighted like the words around it (``(embedding:name:1.2)``); an embedding that fits in a
window is not split across two (A1111's rule). See ``gouache.nodes.embeddings``.

Weights scale each token's embedding; the result is rescaled to the unweighted mean, as A1111
does, so weights shift emphasis without changing the overall magnitude. With every weight 1 the
embeddings are untouched.

The hidden layer each encoder gives is its family's (``TextEncoder.hidden``) unless the CLIP handle
says where to stop (``ClipSetLastLayer``): ``stop_at_layer=-N`` reads the output of the N-th layer
from the end, through the final layer norm for families that read the last layer (SD 1.x/2.x), as
is for those that read the penultimate one (SDXL, SD 3) -- diffusers' ``clip_skip`` for both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gouache.nodes.embeddings import REFERENCE, Embedding

WINDOW = 75
UP = 1.1
_TOKEN = re.compile(r"\\[\\()\[\]]|\(|\[|:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)|\)|\]|[^\\()\[\]:]+|:|\\")
_SPECIAL = re.compile(rf"\bBREAK\b|{REFERENCE.pattern}")
_PLACEHOLDER = 0
"""The id written where a vector goes: any ordinary token below EOS, so CLIP's pooling (at the highest
id in old configs, at EOS in new ones) still finds the real EOS."""


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Split a prompt into ``(fragment, weight)`` pairs; adjacent fragments of equal weight merge."""
    pieces: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            scale(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            scale(round_open.pop(), UP)
        elif token == "]" and square_open:
            scale(square_open.pop(), 1 / UP)
        elif weight is not None:  # "text:1.2)" without an opening bracket: keep it literal
            pieces.append([token, 1.0])
        else:
            pieces.append([token, 1.0])
    for start in round_open:
        scale(start, UP)
    for start in square_open:
        scale(start, 1 / UP)
    merged: list[tuple[str, float]] = []
    for fragment, weight in pieces:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + fragment, weight)
        else:
            merged.append((fragment, weight))
    return [(fragment, weight) for fragment, weight in merged if fragment] or [("", 1.0)]


def plain_text(fragment: str) -> str:
    """``fragment`` without ``BREAK`` and embedding references: what an encoder that reads neither sees (T5)."""
    return " ".join(_SPECIAL.sub(" ", fragment).split())


@dataclass(frozen=True)
class Window:
    """One window of 77 token places: ids, weights, and the vectors that replace some of the tokens."""

    ids: list[int]
    weights: list[float]
    length: int
    """Places used by the prompt (BOS and EOS not counted), the rest being padding."""
    vectors: dict[int, Any] = field(default_factory=dict)
    """Place -> the embedding vector that stands there instead of the token's own embedding."""


def tokenize_windows(tokenizer: Any, pieces: list[tuple[str, float]],
                     vectors: Mapping[str, Any] | None = None) -> list[Window]:
    """The prompt's windows of 77 (BOS, up to 75 places, EOS, padding).

    ``vectors`` maps each embedding name the prompt refers to onto this encoder's [n, D] vectors;
    a reference it lacks raises ``ValueError``.
    """
    vectors = vectors or {}
    groups: list[list[tuple[int, float, Any]] | None] = []  # None: BREAK; a group stays in one window
    for fragment, weight in pieces:
        position = 0
        for match in _SPECIAL.finditer(fragment):
            groups += [[(token, weight, None)] for token in _ids(tokenizer, fragment[position:match.start()])]
            position = match.end()
            if match.group(0) == "BREAK":
                groups.append(None)
                continue
            name = match.group(1)
            if name not in vectors:
                raise ValueError(f"unknown embedding {name!r}")
            groups.append([(_PLACEHOLDER, weight, vector) for vector in vectors[name]])
        groups += [[(token, weight, None)] for token in _ids(tokenizer, fragment[position:])]

    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    windows: list[Window] = []
    current: list[tuple[int, float, Any]] = []

    def close() -> None:
        filler = WINDOW - len(current)
        ids = [bos, *(token for token, _, _ in current), eos] + [pad] * filler
        weights = [1.0, *(weight for _, weight, _ in current), 1.0] + [1.0] * filler
        places = {index + 1: vector for index, (_, _, vector) in enumerate(current) if vector is not None}
        windows.append(Window(ids, weights, len(current), places))
        current.clear()

    for group in groups:
        if group is None:
            close()
            continue
        if len(group) <= WINDOW and len(current) + len(group) > WINDOW:
            close()
        for item in group:
            if len(current) == WINDOW:
                close()
            current.append(item)
    if current or not windows:
        close()
    return windows


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, truncation=False).input_ids if text.strip() else []


def _apply_weights(embeds: Any, weights: Any) -> Any:
    if bool((weights == 1.0).all()):
        return embeds
    original_mean = embeds.mean()
    weighted = embeds * weights.unsqueeze(-1)
    return weighted * (original_mean / weighted.mean())


def _width(model: Any) -> int:
    return int(model.get_input_embeddings().weight.shape[1])


def encoder_vectors(loaded_encoder: Any, embeddings: Mapping[str, Embedding]) -> dict[str, Any]:
    """Each embedding's vectors for this encoder: its own of this width, else padding in as many places.

    Padding keeps the encoders an SDXL CLIP joins side by side the same length when an embedding was
    made for only one of them.
    """
    model, tokenizer = loaded_encoder.model, loaded_encoder.tokenizer
    width = _width(model)
    out = {}
    for name, embedding in embeddings.items():
        vectors = embedding.vectors_for(width)
        if vectors is None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            vectors = model.get_input_embeddings().weight[pad].detach().float().expand(embedding.count, width)
        out[name] = vectors
    return out


def check_embeddings_fit(loaded: Any, embeddings: Mapping[str, Embedding]) -> None:
    """Raise ``ValueError`` naming an embedding made for none of ``loaded``'s CLIP encoders."""
    widths = [_width(e.model) for e in loaded.encoders if e.spec.layout != "t5"]
    for name, embedding in embeddings.items():
        if not set(embedding.widths) & set(widths):
            raise ValueError(
                f"embedding {name!r} holds vectors of width {', '.join(map(str, embedding.widths))}, which fits none "
                f"of this CLIP's text encoders (width {', '.join(map(str, widths))}); it was made for another model family")


@contextmanager
def _inserted(model: Any, places: dict[int, Any]) -> Iterator[None]:
    """While the encoder runs, the token embeddings at ``places`` are replaced by the given vectors."""
    if not places:
        yield
        return

    def replace(module: Any, args: Any, output: Any) -> Any:
        output = output.clone()
        for place, vector in places.items():
            output[:, place] = vector.to(device=output.device, dtype=output.dtype)
        return output

    handle = model.get_input_embeddings().register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def layer_count(model: Any) -> int:
    """How many transformer layers a text encoder has (the deepest ``stop_at_layer`` is minus this)."""
    return int(model.config.num_hidden_layers)


def run_encoder(loaded_encoder: Any, window: Window, device: Any, stop_at_layer: int | None = None,
                mask: Any = None) -> tuple[Any, Any]:
    """One window through one CLIP: the hidden states the family (or ``stop_at_layer``) picks, and the output."""
    import torch

    spec, model = loaded_encoder.spec, loaded_encoder.model
    last = spec.hidden == "last"
    layer = stop_at_layer if stop_at_layer is not None else (-1 if last else -2)
    if not 1 <= -layer <= layer_count(model):
        raise ValueError(f"stop_at_layer {layer} is past the {spec.slot}'s {layer_count(model)} layers")
    ids = torch.tensor([window.ids], device=device)
    with _inserted(model, window.vectors):
        if last and layer == -1:
            result = model(ids, attention_mask=mask)
            return result[0], result
        result = model(ids, attention_mask=mask, output_hidden_states=True)
    hidden = result.hidden_states[layer]
    if last:  # families that read the last layer read any other through the final layer norm too
        hidden = getattr(model, "text_model", model).final_layer_norm(hidden)
    return hidden, result


def encode(loaded: Any, text: str, device: Any, between_windows: Any = None, *, stop_at_layer: int | None = None,
           embeddings: Mapping[str, Embedding] | None = None) -> tuple[Any, Any]:
    """Embeddings [1, 77*k, D] and the pooled embedding [1, D2] (``None`` if unused) for ``text``.

    Each encoder of the checkpoint's family gives the hidden states its description names (``last``:
    after the final layer norm; ``penultimate``: before the last block), or those ``stop_at_layer``
    names; the family's ``join_encoders`` joins them (SDXL concatenates feature-wise), and the pooled
    embedding is the projected pooled output of the first window of the encoder marked ``pooled``.
    ``embeddings`` holds every embedding the prompt refers to, by the name it uses.
    ``between_windows`` is called before each window (``ctx.check_interrupt``: a long prompt stops
    within one window when the run is interrupted).
    """
    import torch

    embeddings = embeddings or {}
    check_embeddings_fit(loaded, embeddings)
    if loaded.family.join_encoders in ("clip_then_t5", "t5_with_pooled"):  # SD 3.x, Flux.1
        from gouache.nodes.flow_prompt import encode as encode_clip_t5

        return encode_clip_t5(loaded, text, device, between_windows, stop_at_layer=stop_at_layer,
                              embeddings=embeddings)
    pieces = parse_weights(text)
    per_encoder: list[Any] = []
    pooled = None
    for loaded_encoder in loaded.encoders:
        spec, encoder = loaded_encoder.spec, loaded_encoder.model
        windows = tokenize_windows(loaded_encoder.tokenizer, pieces, encoder_vectors(loaded_encoder, embeddings))
        outputs = []
        dtype = next(encoder.parameters()).dtype
        for index, window in enumerate(windows):
            if between_windows is not None:
                between_windows()
            mask = None
            if getattr(encoder.config, "use_attention_mask", False):  # as diffusers' pipelines do
                mask = torch.zeros(1, len(window.ids), dtype=torch.long, device=device)
                mask[:, :window.length + 2] = 1
            hidden, result = run_encoder(loaded_encoder, window, device, stop_at_layer, mask)
            if spec.pooled and index == 0:
                pooled = result.text_embeds
            weight_tensor = torch.tensor([window.weights], device=device, dtype=hidden.dtype)
            outputs.append(_apply_weights(hidden, weight_tensor).to(dtype))
        per_encoder.append(torch.cat(outputs, dim=1))
    if loaded.family.join_encoders == "concat":
        embeds = torch.cat(per_encoder, dim=-1)
    else:
        embeds = per_encoder[0]
    return embeds, pooled
