"""A full-size SD 1.5 single file, random weights in the real layout, run as a user runs it.

The file is fp16, as most downloads are; on the CPU gouache computes in fp32, so loading casts every
weight. The run goes through ``gouache run`` in its own process, whose peak memory must stay within
1.3x the loaded model's size (plus what Python and torch hold before any model loads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
GIB = 1024**3
SD15_FP32_BYTES = 4.27e9  # UNet 859.5 M + VAE 83.7 M + CLIP-L 123.1 M parameters, 4 bytes each
BASELINE = 1.5 * GIB  # Python, torch, diffusers and transformers imported, before any model loads


@pytest.fixture(scope="module")
def sd15_home(tmp_path_factory) -> Path:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from gouache.nodes.families import SD1
    from gouache.nodes.loading import diffusers_to_original, shipped_config_dir

    home = tmp_path_factory.mktemp("sd15_home")
    folder = shipped_config_dir(SD1)
    torch.manual_seed(0)
    with torch.no_grad():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        state_dict = diffusers_to_original(unet, vae, text, family=SD1)
        target = home / "models" / "checkpoints" / "sd15-random.safetensors"
        target.parent.mkdir(parents=True)
        save_file({k: v.half().contiguous() for k, v in state_dict.items()}, str(target))
    return home


# The gouache CLI, in a process that reports its own peak resident set size when it ends (VmHWM belongs
# to this program alone; a child's ru_maxrss would also count the test process it was forked from).
MEASURED_CLI = """
import atexit, os, sys
def report():
    with open("/proc/self/status") as status, open(os.environ["PEAK_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(report)
from gouache.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_size_fp16_sd15_file_runs_within_the_memory_floor(sd15_home, tmp_path):
    peak_file = tmp_path / "peak"
    command = [sys.executable, "-c", MEASURED_CLI, "run", str(REPO / "workflows" / "text-to-image.json"),
               "--set", "checkpoint.name=sd15-random.safetensors", "--set", "latent.width=64",
               "--set", "latent.height=64", "--set", "sampler.steps=1", "--output-dir", str(tmp_path), "--json"]
    env = {**os.environ, "GOUACHE_HOME": str(sd15_home), "PEAK_FILE": str(peak_file)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and "checkpoint" in result["executed"]
    assert list(tmp_path.glob("*.png")), "the run saved no image"
    peak = int(peak_file.read_text()) * 1024
    assert peak <= 1.3 * SD15_FP32_BYTES + BASELINE, f"peak RSS {peak / GIB:.2f} GiB"
