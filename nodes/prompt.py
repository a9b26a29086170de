"""Prompts: A1111-style attention weights, 75-token windows, and the text encoders.

Syntax: ``(words:1.3)`` weighs by 1.3, ``(words)`` by 1.1, ``[words]`` by 1/1.1; brackets nest and
multiply; ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are literal characters; a bracket left open
applies to the end of the prompt. A prompt is never cut: its tokens are split into windows of 75,
each encoded as ``BOS + 75 tokens + EOS`` (padded to 77) and the windows concatenated, so the
embeddings are [1, 77*k, D]. A prompt that fits one window tokenises exactly as diffusers'
pipelines do, which the parity tests rely on.

Weights scale each token's embedding; the result is rescaled to the unweighted mean, as A1111
does, so weights shift emphasis without changing the overall magnitude. With every weight 1 the
embeddings are untouched.
"""

from __future__ import annotations

import re
from typing import Any

WINDOW = 75
UP = 1.1
_TOKEN = re.compile(r"\\[\\()\[\]]|\(|\[|:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)|\)|\]|[^\\()\[\]:]+|:|\\")


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


def tokenize_windows(tokenizer: Any, pieces: list[tuple[str, float]]) -> tuple[list[list[int]], list[list[float]]]:
    """Token ids and per-token weights, as windows of 77 (BOS, up to 75 tokens, EOS, padding)."""
    ids: list[int] = []
    weights: list[float] = []
    for fragment, weight in pieces:
        tokens = tokenizer(fragment, add_special_tokens=False, truncation=False).input_ids
        ids += tokens
        weights += [weight] * len(tokens)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    window_ids: list[list[int]] = []
    window_weights: list[list[float]] = []
    for start in range(0, max(len(ids), 1), WINDOW):
        chunk, chunk_weights = ids[start:start + WINDOW], weights[start:start + WINDOW]
        filler = WINDOW - len(chunk)
        window_ids.append([bos, *chunk, eos] + [pad] * filler)
        window_weights.append([1.0, *chunk_weights, 1.0] + [1.0] * filler)
    return window_ids, window_weights


def _apply_weights(embeds: Any, weights: Any) -> Any:
    if bool((weights == 1.0).all()):
        return embeds
    original_mean = embeds.mean()
    weighted = embeds * weights.unsqueeze(-1)
    return weighted * (original_mean / weighted.mean())


def encode(loaded: Any, text: str, device: Any, between_windows: Any = None) -> tuple[Any, Any]:
    """Embeddings [1, 77*k, D] and the pooled embedding [1, D2] (``None`` if unused) for ``text``.

    Each encoder of the checkpoint's family gives the hidden states its description names (``last``:
    after the final layer norm; ``penultimate``: before the last block); the family's
    ``join_encoders`` joins them (SDXL concatenates feature-wise), and the pooled embedding is the
    projected pooled output of the first window of the encoder marked ``pooled``.
    ``between_windows`` is called before each window (``ctx.check_interrupt``: a long prompt stops
    within one window when the run is interrupted).
    """
    import torch

    if loaded.family.join_encoders in ("clip_then_t5", "t5_with_pooled"):  # SD 3.x, Flux.1
        from gouache.nodes.flow_prompt import encode as encode_clip_t5

        return encode_clip_t5(loaded, text, device, between_windows)
    pieces = parse_weights(text)
    per_encoder: list[Any] = []
    pooled = None
    for loaded_encoder in loaded.encoders:
        spec, tokenizer, encoder = loaded_encoder.spec, loaded_encoder.tokenizer, loaded_encoder.model
        window_ids, window_weights = tokenize_windows(tokenizer, pieces)
        token_total = token_count(tokenizer, text) if getattr(encoder.config, "use_attention_mask", False) else 0
        outputs = []
        dtype = next(encoder.parameters()).dtype
        for index, (ids, weights) in enumerate(zip(window_ids, window_weights)):
            if between_windows is not None:
                between_windows()
            ids_tensor = torch.tensor([ids], device=device)
            mask = None
            if getattr(encoder.config, "use_attention_mask", False):  # as diffusers' pipelines do
                used = min(WINDOW + 2, token_total - index * WINDOW + 2)
                mask = torch.zeros_like(ids_tensor)
                mask[:, :used] = 1
            if spec.hidden == "penultimate":
                result = encoder(ids_tensor, attention_mask=mask, output_hidden_states=True)
                hidden = result.hidden_states[-2]
            else:
                result = encoder(ids_tensor, attention_mask=mask)
                hidden = result[0]
            if spec.pooled and index == 0:
                pooled = result.text_embeds
            weight_tensor = torch.tensor([weights], device=device, dtype=hidden.dtype)
            outputs.append(_apply_weights(hidden, weight_tensor).to(dtype))
        per_encoder.append(torch.cat(outputs, dim=1))
    if loaded.family.join_encoders == "concat":
        embeds = torch.cat(per_encoder, dim=-1)
    else:
        embeds = per_encoder[0]
    return embeds, pooled


def token_count(tokenizer: Any, text: str) -> int:
    """How many tokens ``text`` has without BOS/EOS (after removing the weight syntax)."""
    return sum(len(tokenizer(fragment, add_special_tokens=False).input_ids) for fragment, _ in parse_weights(text))
