"""What a fresh process pays for before it works: the server lists models without torch.

Each check runs in a new interpreter, because an import made by another test would hide one here.
Times are the benchmark's business (``bench/bench_startup.py``); these tests only check what is imported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "diffusers", "transformers", "safetensors", "accelerate", "yaml")

SERVE_AND_ASK = """
import json, sys, urllib.request
from gouache.engine import Engine
from gouache.web.background import BackgroundServer

engine = Engine(home=sys.argv[1])
with BackgroundServer(engine) as server:
    bodies = {route: json.load(urllib.request.urlopen(server.url + route, timeout=60))
              for route in ("/api/nodes", "/api/models")}
print(json.dumps({"bodies": bodies, "imported": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def _in_fresh_process(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_server_lists_checkpoints_without_importing_torch(tmp_path, tiny_sd1):
    checkpoints = tmp_path / "home" / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(tiny_sd1.safetensors, checkpoints / "single.safetensors")
    shutil.copytree(tiny_sd1.folder, checkpoints / "folder")

    found = _in_fresh_process(SERVE_AND_ASK, str(tmp_path / "home"))

    models = {entry["name"]: entry for entry in found["bodies"]["/api/models"]["checkpoints"]}
    assert models["single.safetensors"]["family"] == "sd1"
    assert models["folder"]["format"] == "diffusers" and models["folder"]["family"] == "sd1"
    loader = next(node for node in found["bodies"]["/api/nodes"]["nodes"] if node["type"] == "CheckpointLoader")
    choices = next(spec for spec in loader["inputs"] if spec["name"] == "name")["choices"]
    assert {"single.safetensors", "folder", "gouache-tiny"} <= set(choices)
    assert found["imported"] == [], f"listing models imported {found['imported']}"


def test_fingerprints_and_detection_import_no_torch(tiny_sd1):
    script = f"""
import json, sys
from gouache.nodes.loading import detect_folder, fingerprint
from gouache.nodes.folders import describe_checkpoint
from pathlib import Path
fingerprint(Path({str(tiny_sd1.safetensors)!r}))
described = describe_checkpoint(Path({str(tiny_sd1.safetensors)!r}))
family = detect_folder(Path({str(tiny_sd1.folder)!r})).family.name
print(json.dumps({{"family": [described["family"], family],
                   "imported": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""
    found = _in_fresh_process(script)
    assert found == {"family": ["sd1", "sd1"], "imported": []}


def test_the_models_package_still_offers_every_public_name():
    import gouache.nodes.loading as models

    for name in models.__all__:
        assert getattr(models, name) is not None, name
    with pytest.raises(AttributeError):
        models.no_such_name  # noqa: B018


# -- CPU threads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("cores", "load", "threads"), [(2, 0.2, 2), (2, 0.6, 1), (2, 5.3, 1), (8, 2.4, 6), (1, 0.0, 1)])
def test_the_thread_policy_takes_the_cores_others_leave_free(cores, load, threads):
    from gouache.nodes.devices import thread_plan

    plan = thread_plan({}, cores=cores, load=load)
    assert (plan.threads, plan.source, plan.cores, plan.load) == (threads, "policy", cores, load)


@pytest.mark.parametrize(("environ", "threads", "source"), [
    ({"OMP_NUM_THREADS": "3"}, 3, "OMP_NUM_THREADS"),
    ({"GOUACHE_THREADS": "2", "OMP_NUM_THREADS": "3"}, 2, "GOUACHE_THREADS"),
    ({"GOUACHE_THREADS": "torch", "OMP_NUM_THREADS": "3"}, None, "torch"),
    ({"GOUACHE_THREADS": "auto", "OMP_NUM_THREADS": "0"}, 4, "policy"),
    ({"GOUACHE_THREADS": "many", "OMP_NUM_THREADS": ""}, 4, "policy"),
])
def test_a_thread_count_the_user_chose_wins(environ, threads, source):
    from gouache.nodes.devices import thread_plan

    plan = thread_plan(environ, cores=4, load=0.0)
    assert (plan.threads, plan.source) == (threads, source)


PREPARE = """
import json, sys
from gouache.nodes.devices import prepare_threads
found = []
for environ in ({}, {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "2"}, {"GOUACHE_THREADS": "torch"}):
    plan = prepare_threads(environ)
    found.append([environ, plan.wait_policy, plan.source])
print(json.dumps({"found": found, "torch": "torch" in sys.modules}))
"""


def test_before_torch_loads_the_plan_goes_to_openmp_through_the_environment():
    found = _in_fresh_process(PREPARE)
    (policy, policy_wait, _), (chosen, chosen_wait, chosen_source), (left, left_wait, _) = found["found"]
    assert policy["OMP_WAIT_POLICY"] == policy_wait == "PASSIVE" and int(policy["OMP_NUM_THREADS"]) >= 1
    assert chosen == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "2"}  # the user's choices stay
    assert (chosen_wait, chosen_source) == ("ACTIVE", "OMP_NUM_THREADS")
    assert left == {"GOUACHE_THREADS": "torch"} and left_wait is None
    assert not found["torch"]


RUN_AND_COUNT = """
import contextlib, io, json, sys
from gouache.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
import torch
print(json.dumps({"code": code, "result": json.loads(out.getvalue()), "torch_threads": torch.get_num_threads()}))
"""


@pytest.mark.slow
def test_gouache_run_says_which_threads_it_computed_with(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("GOUACHE_THREADS", "1")
    found = _in_fresh_process(RUN_AND_COUNT, "--home", str(tmp_path), "run", "workflows/text-to-image.json",
                              "--quiet", "--json", "--set", "sampler.steps=2")
    assert found["code"] == 0
    threads = found["result"]["threads"]
    assert (threads["threads"], threads["source"], threads["wait_policy"]) == (1, "GOUACHE_THREADS", "PASSIVE")
    assert found["torch_threads"] == 1


@pytest.fixture
def policy_of_two_threads(monkeypatch):
    """As if ``gouache run`` had applied the policy with two threads (the Python API applies none)."""
    import torch

    from gouache.nodes import devices

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(devices, "_applied", devices.ThreadPlan(2, "policy", 2, 0.0, "PASSIVE"))
    yield devices
    torch.set_num_threads(before)


def test_small_steps_run_on_one_thread_and_the_count_comes_back(policy_of_two_threads):
    import threading

    import torch

    devices = policy_of_two_threads
    with devices.threads_for(devices.SMALL_STEP_WORK - 1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    for large in (devices.SMALL_STEP_WORK, None):  # large steps, or steps off the CPU
        with devices.threads_for(large):
            assert torch.get_num_threads() == 2
    # A server's worker threads: each has its own count (OpenMP keeps it per thread).
    inside, leave = threading.Event(), threading.Event()
    counts = []

    def other() -> None:
        with devices.threads_for(1):
            counts.append(torch.get_num_threads())
            inside.set()
            leave.wait(30)

    worker = threading.Thread(target=other)
    worker.start()
    try:
        assert inside.wait(30)
        assert counts == [1] and torch.get_num_threads() == 2
    finally:
        leave.set()
        worker.join(30)
    assert torch.get_num_threads() == 2


def test_a_thread_count_the_user_chose_is_kept_for_small_steps(policy_of_two_threads, monkeypatch):
    import torch

    devices = policy_of_two_threads
    monkeypatch.setattr(devices, "_applied", devices.ThreadPlan(2, "GOUACHE_THREADS", 2, None, "PASSIVE"))
    with devices.threads_for(1):
        assert torch.get_num_threads() == 2


def test_the_embedded_model_samples_on_one_thread_where_the_policy_chose_two(policy_of_two_threads, tmp_path):
    import torch

    from gouache.engine import Engine

    seen: set[int] = set()
    hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda *_: seen.add(torch.get_num_threads()))
    try:
        workflow = json.loads((ROOT / "workflows" / "text-to-image.json").read_text())
        workflow["nodes"]["sampler"]["inputs"]["steps"] = 2
        result = Engine(home=tmp_path).run(workflow, outputs=["sampler"])
    finally:
        hook.remove()
    assert result.ok and 1 in seen  # the sampler's steps
    assert torch.get_num_threads() == 2
