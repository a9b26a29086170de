"""ComfyUI workflows (API and UI formats, JSON and PNG) and A1111 PNGs open as gouache workflows (issue 15).

The files under ``comfy_files/`` are written by hand in ComfyUI's formats: the classic default workflow
in both formats (the UI one with a reroute, a primitive, a note, a group and a title), its LoRA,
img2img, hires-fix and upscale variants, one with custom nodes, one with a subgraph and a bypassed node.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from gouache.engine import Engine
from gouache.nodes.interop.comfy_export import export_api

FILES = Path(__file__).parent / "comfy_files"
A1111 = """a red circle <lora:gouache-tiny-outline:0.7>, blue background
Negative prompt: blurry, lowres
Steps: 2, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 64x64, \
Model hash: abc123, Model: gouache-tiny, Denoising strength: 0.5, Clip skip: 2, Hires upscale: 1.5, \
Hires steps: 2, Hires upscaler: Latent, Version: v1.10.1"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    return Engine(home=tmp_path_factory.mktemp("home"))


def load(name: str) -> dict:
    return json.loads((FILES / name).read_text())


def png(path: Path, **chunks: str) -> Path:
    info = PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_the_default_api_workflow_asks_for_its_checkpoint_by_name(engine):
    valid, problems = engine.check(FILES / "default_api.json")
    assert valid is None
    [problem] = problems
    assert (problem.node, problem.input, problem.code) == ("4", "name", "not_a_choice")
    assert "v1-5-pruned-emaonly.safetensors" in problem.message and "gouache-tiny" in problem.message


@pytest.mark.parametrize("name", ["default_api_tiny.json", "default_ui.json", "lora_api.json", "img2img_api.json",
                                  "hires_api.json", "upscale_api.json", "subgraph_ui.json", "advanced_api.json"])
def test_each_example_converts_to_a_valid_workflow(engine, name):
    valid, problems = engine.check(FILES / name)
    assert problems == [] and valid is not None


def test_the_api_format_maps_classes_inputs_and_links(engine):
    valid = engine.validate(load("default_api_tiny.json"))
    nodes = valid.workflow.nodes
    assert {node_id: nodes[node_id].type for node_id in nodes} == {
        "3": "Sampler", "4": "CheckpointLoader", "5": "EmptyLatent", "6": "TextEncode", "7": "TextEncode",
        "8": "VAEDecode", "9": "SaveImage"}
    sampler = nodes["3"].inputs
    assert (sampler["latent"].node, sampler["latent"].output) == ("5", "latent")
    assert (sampler["model"].node, sampler["model"].output) == ("4", "model")
    assert nodes["4"].inputs["name"] == "gouache-tiny"  # gouache-tiny.safetensors is our embedded checkpoint


def test_sampler_names_are_translated(engine):
    nodes = engine.validate(FILES / "img2img_api.json").workflow.nodes
    assert (nodes["3"].inputs["sampler_name"], nodes["3"].inputs["scheduler"], nodes["3"].inputs["denoise"]) == \
        ("unipc", "exponential", 0.87)
    nodes = engine.validate(FILES / "hires_api.json").workflow.nodes
    assert nodes["11"].inputs["sampler_name"] == "dpmpp_2m_sde" and nodes["10"].type == "LatentUpscale"
    assert (nodes["10"].inputs["scale_by"], nodes["10"].inputs["width"]) == (1.5, 0)


def test_the_ui_format_reads_widgets_by_position_and_keeps_layout_groups_titles(engine):
    valid = engine.validate(FILES / "default_ui.json")
    workflow = valid.workflow
    sampler = workflow.nodes["3"].inputs
    # widgets_values [seed, "randomize", steps, cfg, sampler, scheduler, denoise]: the control value is skipped,
    # and the steps widget is fed by a PrimitiveNode (value 2) instead of its own value 20.
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == \
        (156680208700286, 2, 8, "dpmpp_2m", "karras")
    assert workflow.layout["3"] == {"pos": [863, 186], "size": [315, 262], "seed_control": {"seed": "randomize"}}
    assert workflow.layout["6"]["title"] == "Positive prompt"
    assert workflow.groups == [{"title": "Prompts", "bounding": [400, 100, 460, 500], "color": "#3f789e"}]
    # The reroute (10) is followed to the checkpoint; the note (12) and the primitive (11) leave no node.
    assert workflow.nodes["6"].inputs["clip"].node == "4"
    assert set(workflow.nodes) == {"3", "4", "5", "6", "7", "8", "9"}


def test_every_node_without_an_equivalent_is_named_at_once_with_its_pack(engine):
    valid, problems = engine.check(FILES / "custom_ui.json")
    assert valid is None
    unmapped = {p.node: p.message for p in problems if p.code == "unmapped_node"}
    assert set(unmapped) == {"20", "21", "22"}
    assert "'UltimateSDUpscale'" in unmapped["20"] and "comfyui_ultimatesdupscale" in unmapped["20"]
    assert "'unCLIPConditioning'" in unmapped["21"] and "ComfyUI's core" in unmapped["21"]
    assert "cubiq/ComfyUI_IPAdapter_plus" in unmapped["22"] and "'Style'" in unmapped["22"]
    values = {(p.node, p.input): p.message for p in problems if p.code == "unmapped_value"}
    assert "'res_multistep'" in values[("3", "sampler_name")] and "'bong_tangent'" in values[("3", "scheduler")]


def test_a_subgraph_is_flattened_and_a_bypassed_node_passes_its_input_through(engine):
    valid = engine.validate(FILES / "subgraph_ui.json")
    workflow = valid.workflow
    assert workflow.nodes["30:1"].inputs["text"] == "a red circle"
    assert workflow.nodes["3"].inputs["negative"].node == "30:2"
    assert workflow.nodes["30:2"].inputs["clip"].node == "4"
    # The bypassed ImageInvert (31) stays, bypassed (issue 16); the run hands its input on.
    assert workflow.nodes["31"].mode == "bypass" and workflow.nodes["9"].inputs["images"].node == "31"
    assert valid.nodes["9"].links["images"] == ("8", "image") and valid.silent == {"31": "bypassed"}


def test_comfyui_modes_become_ours_and_go_back_as_comfyui_saves_them(engine):
    raw = load("default_ui.json")
    modes = {8: 4, 9: 2}  # VAEDecode bypassed (it has no LATENT -> IMAGE pass), SaveImage muted ("Never")
    for node in raw["nodes"]:
        node["mode"] = modes.get(node["id"], node.get("mode", 0))
    raw["nodes"].append({"id": 90, "type": "SomeCustomUpscale", "mode": 2, "inputs": [], "outputs": [],
                         "properties": {"cnr_id": "some-pack"}})
    _, problems = engine.check(raw)
    codes = {problem.code for problem in problems}
    assert codes == {"nothing_to_run"}  # a muted custom node is no unmapped_node problem: it never runs
    workflow = convert(raw)
    assert workflow["nodes"]["8"]["mode"] == "bypass" and workflow["nodes"]["9"]["mode"] == "mute"
    assert "mode" not in workflow["nodes"]["3"] and "90" not in workflow["nodes"]
    del workflow["nodes"]["8"]["mode"]
    prompt, problems = export_api(workflow, engine.registry)
    assert problems == [] and "9" not in prompt and prompt["8"]["class_type"] == "VAEDecode"


def test_export_follows_links_through_a_bypassed_node(engine):
    workflow = convert(load("default_ui.json"))
    workflow["nodes"]["10"] = {"type": "InvertImage", "mode": "bypass",
                               "inputs": {"image": {"node": "8", "output": "image"}}}
    workflow["nodes"]["9"]["inputs"]["images"] = {"node": "10", "output": "image"}
    prompt, problems = export_api(workflow, engine.registry)
    assert problems == [] and "10" not in prompt and prompt["9"]["inputs"]["images"] == ["8", 0]


def convert(raw: dict) -> dict:
    from gouache.nodes.interop.comfy import convert_ui

    workflow, problems = convert_ui(raw)
    assert problems == []
    return workflow


def test_a_comfyui_png_opens_from_its_workflow_chunk_or_its_prompt_chunk(engine, tmp_path):
    both = png(tmp_path / "both.png", prompt=(FILES / "default_api_tiny.json").read_text(),
               workflow=(FILES / "default_ui.json").read_text())
    workflow = engine.validate(both).workflow
    assert workflow.layout["6"]["title"] == "Positive prompt"  # the UI chunk wins: it carries the layout
    api_only = png(tmp_path / "api.png", prompt=(FILES / "default_api_tiny.json").read_text())
    assert engine.validate(api_only).workflow.nodes["3"].inputs["steps"] == 2


def test_an_a1111_png_opens_with_its_settings(engine, tmp_path):
    workflow = engine.validate(png(tmp_path / "a1111.png", parameters=A1111)).workflow
    nodes = workflow.nodes
    assert nodes["positive"].inputs["text"] == "a red circle, blue background"
    assert nodes["negative"].inputs["text"] == "blurry, lowres"
    assert (nodes["lora1"].inputs["name"], nodes["lora1"].inputs["strength_model"]) == \
        ("gouache-tiny-outline.safetensors", 0.7)
    assert nodes["clip_skip"].inputs["stop_at_layer"] == -2
    sampler = nodes["sampler"].inputs
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == \
        (1234, 2, 6.5, "dpmpp_2m", "karras")
    assert (nodes["latent"].inputs["width"], nodes["latent"].inputs["height"]) == (64, 64)
    assert nodes["hires_upscale"].inputs["scale_by"] == 1.5 and nodes["hires_sampler"].inputs["denoise"] == 0.5
    assert workflow.meta["model_hash"] == "abc123"


def test_gouaches_own_parameters_chunk_opens_without_its_workflow_chunk(engine, tmp_path):
    result = engine.run(FILES / "default_api_tiny.json")
    [saved] = result.images["9"]
    chunks = Image.open(engine.settings.folder("output") / saved["path"]).text
    workflow = engine.validate(png(tmp_path / "ours.png", parameters=chunks["parameters"])).workflow
    assert workflow.nodes["sampler"].inputs["seed"] == 156680208700286
    assert workflow.nodes["checkpoint"].inputs["name"] == "gouache-tiny"


def test_export_to_the_api_format_round_trips(engine):
    original = engine.validate(FILES / "hires_api.json").workflow.to_json()
    prompt, problems = export_api(original, engine.registry)
    assert problems == []
    assert prompt["10"]["class_type"] == "LatentUpscaleBy" and prompt["11"]["inputs"]["sampler_name"] == "dpmpp_2m_sde"
    assert prompt["3"]["inputs"]["latent_image"] == ["5", 0] and prompt["8"]["inputs"]["vae"] == ["4", 2]
    again = engine.validate(prompt).workflow.to_json()
    assert again["nodes"] == original["nodes"]


def test_export_names_every_node_comfyui_lacks(engine):
    workflow = {"format": "gouache/1", "nodes": {"blur": {"type": "BlurMask", "inputs": {}},
                                                 "edges": {"type": "ThresholdImage", "inputs": {}}}}
    prompt, problems = export_api(workflow, engine.registry)
    assert prompt is None and {p.node for p in problems} == {"blur", "edges"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gouache", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_gouache_run_runs_a_comfyui_file_on_gouache_tiny(tmp_path):
    done = cli("--home", str(tmp_path / "home"), "run", str(FILES / "default_api_tiny.json"), "--json", "--quiet",
               "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "out").glob("ComfyUI_*.png"))


def test_gouache_validate_and_import_on_the_command_line(tmp_path):
    home = str(tmp_path / "home")
    done = cli("--home", home, "validate", str(FILES / "default_api.json"), cwd=tmp_path)
    assert done.returncode == 2 and "[not_a_choice]" in done.stderr and "gouache-tiny" in done.stderr
    # --set reads the imported node types: a prompt set to "5" stays text, as it would in a gouache file.
    done = cli("--home", home, "validate", str(FILES / "default_api_tiny.json"), "--set", "6.text=5", "--set",
               "3.seed=9", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = cli("--home", home, "import", str(FILES / "default_ui.json"), "-o", str(tmp_path / "out.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["format"] == "gouache/1" and written["layout"]["6"]["title"] == "Positive prompt"
    done = cli("--home", home, "import", str(tmp_path / "out.json"), "--to", "comfy-api", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["3"]["class_type"] == "KSampler"
    done = cli("--home", home, "import", str(FILES / "custom_ui.json"), "-o", str(tmp_path / "no.json"), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("[unmapped_node]") == 3 and not (tmp_path / "no.json").exists()


def core_templates() -> list[Path]:
    """The UI-format templates of ComfyUI's template package whose nodes all come from ComfyUI's core."""
    package = pytest.importorskip("comfyui_workflow_templates_json")
    found = []
    for path in sorted((Path(package.__file__).parent / "templates").glob("*.json")):
        raw = json.loads(path.read_text())
        if path.name.startswith("api_") or not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list):
            continue
        nodes = [*raw["nodes"], *(node for sub in (raw.get("definitions") or {}).get("subgraphs") or []
                                  for node in sub.get("nodes") or [])]
        if all((node.get("properties") or {}).get("cnr_id") in (None, "comfy-core") for node in nodes):
            found.append(path)
    return found


def test_each_core_template_imports_or_names_every_unmapped_node(engine):
    from gouache.nodes.interop.comfy_graph import BYPASSED, MUTED
    from gouache.nodes.interop.comfy_nodes import COMFY_NODES, PASS_THROUGH

    templates = core_templates()
    assert len(templates) > 100
    imported = []
    for path in templates:
        raw = json.loads(path.read_text())
        subgraphs = {sub["id"]: sub for sub in (raw.get("definitions") or {}).get("subgraphs") or []}
        valid, problems = engine.check(raw)
        named = {(p.node, p.message.split(" is a ")[1].split("'")[1]) for p in problems if p.code == "unmapped_node"}
        # Every real node of a class we lack, at the top level and inside each subgraph instance, is named.
        expected = set()

        def walk(level, prefix, depth=0):
            for node in level.get("nodes") or []:
                if node.get("mode") in (MUTED, BYPASSED) or node["type"] in PASS_THROUGH:
                    continue
                if node["type"] in subgraphs and depth < 8:
                    walk(subgraphs[node["type"]], f"{prefix}{node['id']}:", depth + 1)
                elif node["type"] not in COMFY_NODES:
                    expected.add((f"{prefix}{node['id']}", node["type"]))

        walk(raw, "")
        assert named == expected, path.name
        if not expected and not [p for p in problems if p.code == "unmapped_value"]:
            imported.append(path.name)
            # What is left is validation's: models not installed here.
            assert {p.code for p in problems} <= {"not_a_choice"}, (path.name, problems)
    assert "image_sdxl_simple.json" in imported


def test_the_import_guide_lists_every_mapped_class():
    from gouache.nodes.interop.comfy_nodes import COMFY_NODES

    guide = (Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text()
    for cls, spec in COMFY_NODES.items():
        assert f"| `{cls}` | {spec.type} |" in guide, f"docs/import.md does not list {cls}"


def test_sampling_in_parts_maps_onto_our_advanced_and_custom_samplers(engine):
    nodes = engine.validate(FILES / "advanced_api.json").workflow.nodes
    assert nodes["3"].type == "SamplerAdvanced" and nodes["3"].inputs["end_at_step"] == 1
    assert nodes["20"].type == "SamplerCustom" and nodes["20"].inputs["sigmas"].output == "low_sigmas"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default_ui.json", "lora_api.json", "img2img_api.json", "hires_api.json",
                                  "upscale_api.json", "subgraph_ui.json", "advanced_api.json"])
def test_each_example_runs_on_gouache_tiny(engine, name):
    result = engine.run(FILES / name)
    assert result.ok, result.error
    assert result.images["9"]


def test_a_flux_workflow_from_split_files_maps_its_loaders_and_its_vae_family(engine):
    from gouache.nodes.interop.comfy import convert_api

    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "fp8_e4m3fn_fast"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors",
                                                         "clip_name2": "clip_l.safetensors", "type": "flux"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["2", 0]}},
        "5": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["4", 0]}},
    }
    workflow, problems = convert_api(prompt)
    assert problems == []
    nodes = workflow["nodes"]
    assert nodes["1"] == {"type": "DiffusionModelLoader",
                          "inputs": {"name": "flux1-dev.safetensors", "weight_dtype": "fp8_e4m3fn"}}
    assert nodes["2"]["inputs"] == {"text_encoder_1": "t5xxl_fp16.safetensors", "text_encoder_2": "clip_l.safetensors",
                                    "family": "flux"}
    assert nodes["3"]["inputs"] == {"name": "ae.safetensors", "family": "flux"}
    assert nodes["5"]["inputs"]["conditioning"] == {"node": "4", "output": "conditioning"}


@pytest.mark.parametrize("raw", [
    {"nodes": [1, {"id": 2, "type": "KSampler", "inputs": "x", "widgets_values": 5}], "links": [[1, 2]]},
    {"nodes": [{"id": 1, "type": "Reroute", "inputs": [{"link": 9}]}], "links": [{"id": 9}]},
    {"3": {"class_type": "KSampler", "inputs": {"model": ["9", 0], "seed": [1, 2, 3]}}},
    {"3": {"class_type": "KSampler", "inputs": None}},
])
def test_a_damaged_comfyui_file_is_a_problem_never_a_crash(engine, raw):
    valid, problems = engine.check(raw)
    assert valid is None and problems


def test_an_a1111_model_not_installed_is_the_usual_missing_model_problem(engine, tmp_path):
    text = A1111.replace("Model: gouache-tiny", "Model: dreamshaper_8")
    _, problems = engine.check(png(tmp_path / "other.png", parameters=text))
    [problem] = problems
    assert (problem.node, problem.input, problem.code) == ("checkpoint", "name", "not_a_choice")
    assert "dreamshaper_8.safetensors" in problem.message and "gouache-tiny" in problem.message


def test_conditioning_operations_keep_their_comfyui_names(engine):
    prompt = load("default_api_tiny.json")
    prompt["10"] = {"class_type": "ConditioningSetArea",
                    "inputs": {"conditioning": ["6", 0], "width": 32, "height": 64, "x": 0, "y": 0, "strength": 1.0}}
    prompt["11"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["10", 0]}}
    prompt["12"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["7", 0]}}
    prompt["3"]["inputs"].update(positive=["11", 0], negative=["12", 0])
    nodes = engine.validate(prompt).workflow.nodes
    assert (nodes["10"].type, nodes["11"].type, nodes["12"].type) == \
        ("ConditioningSetArea", "ConditioningCombine", "ConditioningZeroOut")
    assert nodes["3"].inputs["negative"].node == "12"
