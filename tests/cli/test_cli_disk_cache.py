"""``gouache run`` keeps node outputs under the home folder: a new process reuses what an earlier one computed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEXT_TO_IMAGE = str(ROOT / "workflows" / "text-to-image.json")


@pytest.fixture
def gouache_run(tmp_path):
    env = {**os.environ, "GOUACHE_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def run(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "gouache", "run", TEXT_TO_IMAGE, "--json", "--quiet", *args],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run


@pytest.mark.slow
def test_a_second_process_samples_nothing_and_a_new_seed_encodes_no_text(gouache_run, tmp_path):
    first = gouache_run()
    assert {"positive", "negative", "sampler", "decode", "save"} <= set(first["executed"])

    again = gouache_run()
    assert again["executed"] == ["checkpoint"]  # models are loaded, not stored: only the loader runs
    assert set(again["from_disk"]) == {"positive", "negative", "latent", "sampler", "decode", "save"}
    assert again["images"] == first["images"]

    reseeded = gouache_run("--set", "sampler.seed=7")
    assert {"positive", "negative", "latent"} <= set(reseeded["from_disk"])
    assert {"sampler", "decode", "save"} <= set(reseeded["executed"])
    assert "positive" not in reseeded["executed"] and "negative" not in reseeded["executed"]


@pytest.mark.slow
def test_a_saved_image_that_was_deleted_is_saved_again(gouache_run):
    first = gouache_run()
    [saved] = first["images"]["save"]
    Path(saved["file"]).unlink()
    again = gouache_run()
    assert "save" in again["executed"] and "sampler" not in again["executed"]
    assert Path(again["images"]["save"][0]["file"]).is_file()
