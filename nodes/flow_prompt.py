"""Text conditioning of the CLIP + T5 families (SD 3.x, Flux.1), token for token as diffusers' pipelines.

* ``clip_then_t5`` (SD 3): CLIP-L's and CLIP-G's penultimate hidden states, concatenated feature-wise
  and zero-padded to T5's width, followed along the sequence by T5's last hidden state; the pooled
  embedding is both CLIPs' pooled outputs concatenated.
* ``t5_with_pooled`` (Flux.1): T5's last hidden state; the pooled embedding is CLIP-L's (unprojected).

CLIP windows follow ``gouache.nodes.prompt`` (75-token windows, A1111 weights, ``BREAK``, embeddings,
``stop_at_layer``). T5 reads one window
of its ``max_tokens`` (256 for SD 3, 512 for Flux.1, as the pipelines' ``max_sequence_length``):
the tokens, ``</s>``, then padding; longer prompts are cut there, as the pipelines cut them. Weights
scale T5's token embeddings too; ``BREAK`` and embedding references are left out of T5's text.
"""

from __future__ import annotations

from typing import Any

from gouache.nodes.prompt import (
    _apply_weights,
    encoder_vectors,
    parse_weights,
    plain_text,
    run_encoder,
    tokenize_windows,
)


def _t5_ids(tokenizer: Any, pieces: list[tuple[str, float]], length: int) -> tuple[list[int], list[float]]:
    ids: list[int] = []
    weights: list[float] = []
    for fragment, weight in pieces:
        tokens = tokenizer(plain_text(fragment), add_special_tokens=False, truncation=False).input_ids
        ids += tokens
        weights += [weight] * len(tokens)
    ids, weights = ids[:length - 1] + [tokenizer.eos_token_id], weights[:length - 1] + [1.0]
    filler = length - len(ids)
    return ids + [tokenizer.pad_token_id] * filler, weights + [1.0] * filler


def _pooled(result: Any) -> Any:
    """The projected pooled output where the model has a projection, else CLIP's pooler output."""
    embeds = getattr(result, "text_embeds", None)
    return embeds if embeds is not None else result.pooler_output


def encode(loaded: Any, text: str, device: Any, between_windows: Any = None, *, stop_at_layer: int | None = None,
           embeddings: Any = None) -> tuple[Any, Any]:
    """Embeddings [1, L, D] and pooled [1, P] for ``text`` with ``loaded``'s CLIP and T5 encoders.

    ``between_windows`` is called before each encoder call (``ctx.check_interrupt``); ``stop_at_layer``
    and ``embeddings`` are ``gouache.nodes.prompt.encode``'s.
    """
    import torch

    from gouache.nodes.loading.manual_cast import compute_dtype

    family = loaded.family
    pieces = parse_weights(text)
    clip_hidden: list[Any] = []
    pooled: list[Any] = []
    t5_hidden = None
    for encoder in loaded.encoders:
        spec, tokenizer, model = encoder.spec, encoder.tokenizer, encoder.model
        dtype = compute_dtype(model)
        if between_windows is not None:
            between_windows()
        if spec.layout == "t5":
            ids, weights = _t5_ids(tokenizer, pieces, spec.max_tokens)
            hidden = model(torch.tensor([ids], device=device))[0]
            t5_hidden = _apply_weights(hidden, torch.tensor([weights], device=device, dtype=hidden.dtype)).to(dtype)
            continue
        windows = []
        for index, window in enumerate(tokenize_windows(tokenizer, pieces, encoder_vectors(encoder, embeddings or {}))):
            if between_windows is not None and index:
                between_windows()
            hidden, result = run_encoder(encoder, window, device, stop_at_layer)
            if spec.pooled and index == 0:
                pooled.append(_pooled(result).to(dtype))
            weights = torch.tensor([window.weights], device=device, dtype=hidden.dtype)
            windows.append(_apply_weights(hidden, weights).to(dtype))
        clip_hidden.append(torch.cat(windows, dim=1))
    if t5_hidden is None:
        raise ValueError(f"{family.label} conditioning needs its T5 text encoder, which this CLIP lacks")
    pooled_embeds = torch.cat(pooled, dim=-1) if pooled else None
    if family.join_encoders == "t5_with_pooled":
        return t5_hidden, pooled_embeds
    clip = torch.cat(clip_hidden, dim=-1)
    clip = torch.nn.functional.pad(clip, (0, t5_hidden.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, t5_hidden.to(clip.dtype)], dim=-2), pooled_embeds
