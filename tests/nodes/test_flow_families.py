"""SD 3.x and Flux.1: every layout loads the same weights, and sampling equals diffusers' pipelines."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel, SD3Transformer2DModel, StableDiffusion3Pipeline
from diffusers.loaders.single_file_utils import (
    convert_flux_transformer_checkpoint_to_diffusers,
    convert_sd3_transformer_checkpoint_to_diffusers,
)
from safetensors.torch import save_file

import tiny_flow_models as tiny
from gouache.nodes import flow_prompt
from gouache.nodes.families import FLUX, SD3, UNET_PREFIX
from gouache.nodes.flow_sampling import sample_flow, unpack
from gouache.nodes.loading import ModelLoadError, flow_convert, load_checkpoint
from gouache.nodes.loading.flow_models import detect_flow_family, load_diffusion_model, load_text_encoders, load_vae
from gouache.nodes.loading.manual_cast import manual_cast
from gouache.nodes.loading.shipped import load_t5_tokenizer, shipped_config_dir
from gouache.nodes.sampling import SampleSettings
from gouache.nodes.types import CheckpointRef, Conditioning, ModelHandle

torch.set_num_threads(1)
PROMPT, NEGATIVE = "a large red circle on a blue background", "blurry, dark"
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Tiny:
    """One tiny model: its diffusers folder, loaded, and where its other layouts were written."""

    folder: Path
    loaded: object
    root: Path


def _tiny(factory: pytest.TempPathFactory, name: str, build) -> Tiny:
    root = factory.mktemp(name)
    folder = build(root / "diffusers")
    return Tiny(folder, load_checkpoint(folder), root)


@pytest.fixture(scope="module")
def sd3(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return _tiny(tmp_path_factory, "sd3", tiny.build_sd3_folder)


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return _tiny(tmp_path_factory, "flux", tiny.build_flux_folder)


@pytest.fixture(scope="module")
def schnell(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return _tiny(tmp_path_factory, "schnell", lambda folder: tiny.build_flux_folder(folder, seed=5, guidance=False))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)


# -- sampling equals the pipelines --------------------------------------------------------------


def _ref(loaded) -> CheckpointRef:
    # CheckpointRef is moving from holding the model to resolving it through the manager.
    fields = [field.name for field in dataclasses.fields(CheckpointRef)]
    return CheckpointRef("key", "tiny", (lambda: loaded) if "resolve" in fields else loaded)


class _Manager:
    def on_device(self, modules):
        return torch.device("cpu")


_CTX = SimpleNamespace(progress=lambda *args: None, check_interrupt=lambda: None, wants_previews=False, preview=None)


def gouache_latents(loaded, *, cfg: float, steps: int = 4, seed: int = 42, guidance: float | None = None,
                    side: int = 8, model=None) -> torch.Tensor:
    with torch.no_grad():
        positive = Conditioning(*flow_prompt.encode(loaded, PROMPT, "cpu"), guidance=guidance)
        negative = Conditioning(*flow_prompt.encode(loaded, NEGATIVE, "cpu"))
        settings = SampleSettings(seed=seed, steps=steps, cfg=cfg, sampler_name="euler", scheduler="normal")
        model = model or ModelHandle(_ref(loaded))
        latent = {"samples": torch.zeros(1, 16, side, side)}
        return sample_flow(_Manager(), _CTX, model, positive, negative, latent, settings).latent["samples"]


def pipeline_latents(loaded, *, cfg: float, steps: int = 4, seed: int = 42, guidance: float = 3.5) -> torch.Tensor:
    components = {**loaded.components(), "scheduler": tiny.scheduler(loaded)}
    common = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, height=64, width=64,
                  generator=torch.Generator("cpu").manual_seed(seed), output_type="latent")
    with torch.no_grad():
        if loaded.family is SD3:
            pipe = StableDiffusion3Pipeline(**components)
            pipe.set_progress_bar_config(disable=True)
            return pipe(**common, guidance_scale=cfg).images
        pipe = FluxPipeline(**components)
        pipe.set_progress_bar_config(disable=True)
        return unpack(pipe(**common, true_cfg_scale=cfg, guidance_scale=guidance).images, 8, 8)


def test_sd3_equals_stable_diffusion_3_pipeline(sd3):
    expected = pipeline_latents(sd3.loaded, cfg=4.5)
    ours = gouache_latents(sd3.loaded, cfg=4.5)
    assert ours.shape == expected.shape == (1, 16, 8, 8)
    assert (ours - expected).abs().max().item() <= TOLERANCE


def test_sd3_prompt_equals_the_pipelines_encode_prompt(sd3):
    pipe = StableDiffusion3Pipeline(**sd3.loaded.components(), scheduler=tiny.scheduler(sd3.loaded))
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(PROMPT, PROMPT, PROMPT, device="cpu", do_classifier_free_guidance=False)
        ours, our_pooled = flow_prompt.encode(sd3.loaded, PROMPT, "cpu")
    assert ours.shape == embeds.shape == (1, 77 + 256, tiny.T5_WIDTH)
    assert torch.equal(ours, embeds) and torch.equal(our_pooled, pooled)


@pytest.mark.parametrize("cfg", [1.0, 2.5])
def test_flux_dev_equals_flux_pipeline(flux, cfg):
    """Distilled guidance 5.0 as the transformer's input; cfg > 1 adds true CFG with the negative prompt."""
    expected = pipeline_latents(flux.loaded, cfg=cfg, guidance=5.0)
    ours = gouache_latents(flux.loaded, cfg=cfg, guidance=5.0)
    assert (ours - expected).abs().max().item() <= TOLERANCE


def test_flux_guidance_changes_the_result_and_defaults_to_the_family_value(flux):
    default = gouache_latents(flux.loaded, cfg=1.0)
    assert torch.equal(default, gouache_latents(flux.loaded, cfg=1.0, guidance=FLUX.defaults.guidance))
    assert not torch.allclose(default, gouache_latents(flux.loaded, cfg=1.0, guidance=1.0))


def test_flux_schnell_equals_flux_pipeline_with_its_unshifted_schedule(schnell):
    assert schnell.loaded.scheduler_config["use_dynamic_shifting"] is False
    expected = pipeline_latents(schnell.loaded, cfg=1.0)
    assert (gouache_latents(schnell.loaded, cfg=1.0) - expected).abs().max().item() <= TOLERANCE


def test_flow_shift_override_changes_the_schedule(sd3):
    handle = ModelHandle(_ref(sd3.loaded))
    shifted = ModelHandle(handle.checkpoint, sampling=(("shift", 1.0),))
    assert not torch.allclose(gouache_latents(sd3.loaded, cfg=1.0, model=handle),
                              gouache_latents(sd3.loaded, cfg=1.0, model=shifted))


# -- every layout loads the same weights --------------------------------------------------------


@pytest.mark.parametrize("encoders", [True, False], ids=["with-encoders", "model-and-vae"])
def test_sd3_single_file_loads_the_folders_weights(sd3, encoders):
    path = tiny.write_checkpoint(sd3.loaded, sd3.root / f"sd3-{encoders}.safetensors", encoders=encoders)
    loaded = load_checkpoint(path)
    assert loaded.family is SD3
    assert _same_weights(loaded.denoiser, sd3.loaded.denoiser) == 0
    assert _same_weights(loaded.vae, sd3.loaded.vae) == 0
    assert [e.spec.slot for e in loaded.encoders] == (["text_encoder", "text_encoder_2", "text_encoder_3"]
                                                       if encoders else [])
    for ours, theirs in zip(loaded.encoders, sd3.loaded.encoders):
        assert _same_weights(ours.model, theirs.model) == 0


def test_flux_comfyui_checkpoint_renders_like_the_folder(flux):
    path = tiny.write_checkpoint(flux.loaded, flux.root / "flux1-dev-checkpoint.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.family is FLUX and loaded.denoiser.config.guidance_embeds
    assert (gouache_latents(loaded, cfg=1.0) - gouache_latents(flux.loaded, cfg=1.0)).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("layout", ["original", "prefixed", "diffusers"])
@pytest.mark.parametrize("which", ["sd3", "flux"])
def test_diffusion_model_file_alone(request, which, layout):
    model = request.getfixturevalue(which)
    files = tiny.write_split(model.loaded, model.root / f"split-{layout}", layout=layout)
    loaded = load_diffusion_model(files["diffusion_model"])
    assert loaded.family is model.loaded.family and loaded.vae is None and loaded.encoders == ()
    assert {**loaded.denoiser.config, "sample_size": 0} == {**model.loaded.denoiser.config, "sample_size": 0}
    assert _same_weights(loaded.denoiser, model.loaded.denoiser) == 0


@pytest.mark.parametrize("which", ["sd3", "flux"])
def test_text_encoder_files_in_any_order_and_the_vae_file(request, which):
    model = request.getfixturevalue(which)
    files = tiny.write_split(model.loaded, model.root / "split")
    encoder_files = [files[spec.slot] for spec in model.loaded.family.encoders]
    random.Random(3).shuffle(encoder_files)
    loaded = load_text_encoders(encoder_files, model.loaded.family)
    assert [e.spec.slot for e in loaded.encoders] == [e.spec.slot for e in model.loaded.encoders]
    for ours, theirs in zip(loaded.encoders, model.loaded.encoders):
        assert _same_weights(ours.model, theirs.model) == 0
    with torch.no_grad():
        assert torch.equal(flow_prompt.encode(loaded, PROMPT, "cpu")[0], flow_prompt.encode(model.loaded, PROMPT, "cpu")[0])
    vae = load_vae(files["vae"], model.loaded.family).vae
    assert _same_weights(vae, model.loaded.vae) == 0
    assert vae.config.scaling_factor == model.loaded.family.latent.scaling_factor


def test_text_encoders_missing_one_name_what_is_missing(sd3):
    files = tiny.write_split(sd3.loaded, sd3.root / "split-missing")
    with pytest.raises(ModelLoadError, match="T5"):
        load_text_encoders([files["text_encoder"], files["text_encoder_2"]], SD3)


def test_diffusers_from_single_file_reads_what_gouache_writes(sd3, flux):
    path = tiny.write_checkpoint(sd3.loaded, sd3.root / "for-diffusers.safetensors")
    transformer = SD3Transformer2DModel.from_single_file(str(path), config=str(sd3.folder), subfolder="transformer",
                                                         local_files_only=True)
    assert _same_weights(transformer, sd3.loaded.denoiser) == 0
    vae_file = tiny.write_split(flux.loaded, flux.root / "for-diffusers")["vae"]
    vae = AutoencoderKL.from_single_file(str(vae_file), config=str(flux.folder), subfolder="vae", local_files_only=True)
    assert _same_weights(vae, flux.loaded.vae) == 0


def test_sd3_table_equals_diffusers_converter(sd3):
    original = tiny.original_denoiser(SD3, sd3.loaded.denoiser)
    theirs = convert_sd3_transformer_checkpoint_to_diffusers(dict(original))
    rules = flow_convert.sd3_rules(2, (0,), True)
    ours = flow_convert.to_diffusers(original, rules, "test")
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_flux_table_equals_diffusers_converter_at_full_width():
    """diffusers' Flux converter assumes 3072 wide blocks: compare names and shapes on an empty model."""
    with init_empty_weights():
        model = FluxTransformer2DModel(num_layers=1, num_single_layers=1)
    expected = model.state_dict()
    original = flow_convert.to_original(expected, flow_convert.flux_rules(1, 1, False))
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in expected.items()}


# -- dtypes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn], ids=["bf16", "fp8"])
def test_low_precision_weights_stay_in_their_dtype_and_compute_in_fp32(flux, dtype):
    files = tiny.write_split(flux.loaded, flux.root / f"low-{dtype}", dtype=dtype)
    low = load_diffusion_model(files["diffusion_model"])
    stored = {p.dtype for p in low.denoiser.parameters()}
    assert stored == {dtype}, "an fp32 copy was made"
    manual_cast(low.denoiser, torch.float32)
    assert {p.dtype for p in low.denoiser.parameters()} == {dtype}
    # The reference: the folder's model with every weight rounded to the file's dtype, in fp32.
    rounded = load_checkpoint(flux.folder)
    with torch.no_grad():
        for parameter in rounded.denoiser.parameters():
            parameter.copy_(parameter.to(dtype).float())
    mixed = SimpleNamespace(**{**vars(flux.loaded), "denoiser": low.denoiser})
    ours = gouache_latents(mixed, cfg=1.0)
    reference = SimpleNamespace(**{**vars(flux.loaded), "denoiser": rounded.denoiser})
    assert (ours - gouache_latents(reference, cfg=1.0)).abs().max().item() <= TOLERANCE
    assert {p.dtype for p in low.denoiser.parameters()} == {dtype}


def test_bf16_text_encoders_and_vae_keep_their_dtype(sd3):
    path = tiny.write_checkpoint(sd3.loaded, sd3.root / "sd3-bf16.safetensors", dtype=torch.bfloat16)
    loaded = load_checkpoint(path)
    for _, module in loaded.modules():
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
        manual_cast(module, torch.float32)
    with torch.no_grad():
        embeds, pooled = flow_prompt.encode(loaded, PROMPT, "cpu")
    assert embeds.dtype == torch.float32 and torch.isfinite(embeds).all() and torch.isfinite(pooled).all()
    assert torch.isfinite(gouache_latents(loaded, cfg=2.0)).all()


# -- what is refused, and how ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "shape", "label"), [
    ("single_stream_modulation.lin.weight", (2, 2), "Flux.2"),
    ("distilled_guidance_layer.in_proj.bias", (2,), "Chroma"),
])
def test_related_families_are_refused_by_name(key, shape, label):
    with pytest.raises(ModelLoadError, match=label.replace(".", r"\.")):
        detect_flow_family({UNET_PREFIX + key: torch.zeros(shape), "double_blocks.0.img_attn.qkv.weight": 0})


def test_flux_fill_is_refused_by_name(flux, tmp_path):
    original = tiny.original_denoiser(FLUX, flux.loaded.denoiser)
    original["img_in.weight"] = torch.zeros(original["img_in.weight"].shape[0], 384)
    save_file({k: v.contiguous() for k, v in original.items()}, str(tmp_path / "fill.safetensors"))
    with pytest.raises(ModelLoadError, match="Flux.1 Fill"):
        load_diffusion_model(tmp_path / "fill.safetensors")


def test_a_tensor_that_lands_nowhere_is_named(sd3, tmp_path):
    path = tiny.write_checkpoint(sd3.loaded, tmp_path / "extra.safetensors", encoders=False)
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    tensors[UNET_PREFIX + "joint_blocks.0.x_block.surprise.weight"] = torch.zeros(2)
    save_file(tensors, str(path))
    with pytest.raises(ModelLoadError, match="surprise"):
        load_checkpoint(path)


# -- the T5 tokenizer that ships ------------------------------------------------------------------


def test_shipped_t5_tokenizer_gives_t5s_ids():
    tokenizer = load_t5_tokenizer(shipped_config_dir(FLUX) / "tokenizer_2")
    assert len(tokenizer) == 32100
    assert tokenizer("The house is wonderful.").input_ids == [37, 629, 19, 1627, 5, 1]
    assert tokenizer("a photo of a cat").input_ids == [3, 9, 1202, 13, 3, 9, 1712, 1]
    assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1
