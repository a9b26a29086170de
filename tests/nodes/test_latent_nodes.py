"""Latent nodes on small tensors: composites with feathering, batches, the inpaint fill and its grown mask,
and tiled VAE encode and decode against the whole-image ones on the tiny fixture VAE."""

from __future__ import annotations

import types

import pytest
import torch

from gouache.engine import InputError
from gouache.nodes.compositing import inpaint_pixels
from gouache.nodes.latent import decode, encode
from gouache.nodes.latent_nodes import CompositeLatents, LatentFromBatch, RepeatLatentBatch
from gouache.nodes.tiled_vae import decode_tiled, encode_tiled

torch.set_num_threads(1)


def run(node, **inputs):
    return node().run(None, **inputs)


def test_composite_latents_at_an_offset_with_and_without_feather():
    to = {"samples": torch.zeros(1, 4, 8, 8), "noise_mask": torch.ones(1, 1, 64, 64)}
    source = {"samples": torch.ones(1, 4, 4, 4)}
    out = run(CompositeLatents, samples_to=to, samples_from=source, x=16, y=8, feather=0)["latent"]
    assert out["samples"][0, :, 1:5, 2:6].eq(1).all() and out["samples"].sum() == 4 * 16
    assert out["noise_mask"] is to["noise_mask"] and to["samples"].eq(0).all()
    feathered = run(CompositeLatents, samples_to=to, samples_from=source, x=16, y=8, feather=16)["latent"]["samples"][0, 0]
    assert torch.allclose(feathered[3, 2:6], torch.tensor([0.5, 1.0, 1.0, 0.5]))
    assert torch.allclose(feathered[1, 2:6], torch.tensor([0.25, 0.5, 0.5, 0.25]))
    corner = run(CompositeLatents, samples_to=to, samples_from=source, x=0, y=0, feather=16)["latent"]["samples"][0, 0]
    assert corner[0, 0] == 1 and corner[3, 3] == 0.25, "no fading on sides at the border"


def test_composite_latents_refuses_an_offset_outside_and_another_family():
    to, source = {"samples": torch.zeros(1, 4, 8, 8)}, {"samples": torch.ones(1, 4, 4, 4)}
    with pytest.raises(InputError) as error:
        run(CompositeLatents, samples_to=to, samples_from=source, x=64, y=0, feather=0)
    assert error.value.input == "x" and "64 px" in error.value.message
    with pytest.raises(InputError) as error:
        run(CompositeLatents, samples_to=to, samples_from={"samples": torch.ones(1, 16, 4, 4)}, x=0, y=0, feather=0)
    assert error.value.input == "samples_from"


def test_latent_batches_carry_their_noise_masks():
    samples = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 4, 2, 2)
    per_item = {"samples": samples, "noise_mask": torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1)}
    repeated = run(RepeatLatentBatch, latent=per_item, amount=2)["latent"]
    assert repeated["samples"][:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2]
    assert repeated["noise_mask"].flatten().tolist() == [0, 1, 2, 0, 1, 2]
    taken = run(LatentFromBatch, latent=per_item, batch_index=1, length=2)["latent"]
    assert taken["samples"][:, 0, 0, 0].tolist() == [1, 2] and taken["noise_mask"].flatten().tolist() == [1, 2]
    shared = {"samples": samples, "noise_mask": torch.ones(1, 1, 4, 4)}
    assert run(LatentFromBatch, latent=shared, batch_index=2, length=1)["latent"]["noise_mask"] is shared["noise_mask"]
    with pytest.raises(InputError) as error:
        run(LatentFromBatch, latent=per_item, batch_index=3, length=1)
    assert error.value.input == "batch_index"


def test_inpaint_fill_greys_the_masked_area_and_grows_the_mask_like_comfyui():
    image = torch.rand(1, 10, 10, 3)
    mask = torch.zeros(1, 10, 10)
    mask[0, 4, 4] = 0.8  # rounds to 1
    mask[0, 8, 8] = 0.3  # rounds to 0
    pixels, grown = inpaint_pixels(image, mask, 6, 2)
    assert pixels[0, 4, 4].eq(0.5).all() and torch.equal(pixels[0, 8, 8], image[0, 8, 8])
    # ComfyUI: conv2d with a 6x6 kernel of ones, padding 3, clamped, cut to the image
    expected = torch.nn.functional.conv2d(mask.round()[:, None], torch.ones(1, 1, 6, 6), padding=3).clamp(0, 1)
    assert torch.equal(grown, expected[:, 0, :10, :10])
    cropped, _ = inpaint_pixels(torch.rand(1, 9, 11, 3), torch.zeros(1, 9, 11), 0, 8)
    assert cropped.shape == (1, 8, 8, 3)


def test_inpaint_fill_refuses_a_mask_of_another_size():
    with pytest.raises(InputError) as error:
        inpaint_pixels(torch.rand(1, 8, 8, 3), torch.zeros(1, 8, 16), 6, 8)
    assert error.value.input == "mask" and error.value.code == "size_mismatch"


class _Cpu:
    """A model manager that keeps everything on the CPU."""

    def on_device(self, modules):
        return torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_vae(tiny_sd1):
    from diffusers import AutoencoderKL

    return types.SimpleNamespace(vae=AutoencoderKL.from_pretrained(tiny_sd1.folder / "vae").eval())


def _picture(size: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin(6 * cols), 0.5 + 0.4 * torch.cos(5 * rows), rows * cols], -1)[None]


def test_tiled_decode_and_encode_equal_the_whole_image_seams_included(tiny_vae):
    """Tiles 8 px wide on a 64 px picture: every layer is cut into many tiles, yet GroupNorm statistics and
    the mid block cover the whole image, so only float rounding differs (figures in docs/builtin-nodes.md)."""
    image = _picture(64)
    latent = encode(_Cpu(), tiny_vae, image)
    whole = decode(_Cpu(), tiny_vae, latent)
    interrupts = []
    tiled = decode_tiled(_Cpu(), tiny_vae, latent, 8, lambda: interrupts.append(1))
    assert tiled.shape == whole.shape and (tiled - whole).abs().max() < 1e-4
    assert len(interrupts) > 64, "the interrupt is checked between tiles"
    latents = encode_tiled(_Cpu(), tiny_vae, image, 8)["samples"]
    assert latents.shape == latent["samples"].shape
    assert (latents - latent["samples"]).abs().max() < 1e-4


def test_tiled_decode_stops_when_interrupted(tiny_vae):
    from gouache.engine import Interrupted

    def stop():
        raise Interrupted("stop")

    latent = encode(_Cpu(), tiny_vae, _picture(32))
    with pytest.raises(Interrupted):
        decode_tiled(_Cpu(), tiny_vae, latent, 8, stop)


def test_tiled_refuses_a_vae_it_cannot_walk(tiny_vae):
    odd = types.SimpleNamespace(vae=torch.nn.Identity())
    with pytest.raises(InputError) as error:
        decode_tiled(_Cpu(), odd, {"samples": torch.zeros(1, 4, 4, 4)}, 8)
    assert error.value.input == "vae" and error.value.code == "not_tileable"
