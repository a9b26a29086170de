"""Mask nodes on small tensors: from and to images, invert, grow and shrink, feather, blur, threshold,
combine, solid, crop; bad masks and boxes fail naming the input."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from gouache.engine import Engine, InputError
from gouache.nodes.mask_nodes import (
    BlurMask,
    CombineMasks,
    CropMask,
    FeatherMask,
    GrowMask,
    ImageToMask,
    InvertMask,
    LoadImageMask,
    MaskToImage,
    SolidMask,
    ThresholdMask,
)

torch.set_num_threads(1)


def dot(size: int = 7, at: tuple[int, int] = (3, 3)) -> torch.Tensor:
    """A [1,size,size] mask with one pixel set."""
    mask = torch.zeros(1, size, size)
    mask[0, at[0], at[1]] = 1.0
    return mask


def run(node, **inputs):
    return node().run(None, **inputs)


def test_image_to_mask_takes_a_channel_and_mask_to_image_greys_it():
    image = torch.rand(2, 4, 5, 4)
    for index, channel in enumerate(("red", "green", "blue", "alpha")):
        assert torch.equal(run(ImageToMask, image=image, channel=channel)["mask"], image[..., index])
    grey = run(MaskToImage, mask=image[..., 0])["image"]
    assert grey.shape == (2, 4, 5, 3) and torch.equal(grey[..., 2], image[..., 0])


def test_image_to_mask_refuses_alpha_of_an_rgb_image():
    with pytest.raises(InputError) as error:
        run(ImageToMask, image=torch.rand(1, 4, 4, 3), channel="alpha")
    assert error.value.input == "channel"


def test_invert_and_threshold():
    mask = torch.tensor([[[0.0, 0.25, 0.5, 1.0]]])
    assert torch.equal(run(InvertMask, mask=mask)["mask"], torch.tensor([[[1.0, 0.75, 0.5, 0.0]]]))
    assert torch.equal(run(ThresholdMask, mask=mask, value=0.4)["mask"], torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]))


def test_grow_square_and_tapered_and_shrink():
    square = run(GrowMask, mask=dot(), expand=2, tapered_corners=False)["mask"][0]
    assert square.sum() == 25 and square[1:6, 1:6].min() == 1  # a 5x5 square around the dot
    tapered = run(GrowMask, mask=dot(), expand=2, tapered_corners=True)["mask"][0]
    assert tapered.sum() == 13 and tapered[1, 1] == 0 and tapered[1, 3] == 1  # a diamond: corners cut
    block = torch.zeros(1, 9, 9)
    block[0, 2:7, 2:7] = 1
    shrunk = run(GrowMask, mask=block, expand=-1, tapered_corners=False)["mask"][0]
    assert shrunk.sum() == 9 and shrunk[3:6, 3:6].min() == 1
    full = torch.ones(1, 5, 5)
    assert torch.equal(run(GrowMask, mask=full, expand=-2, tapered_corners=True)["mask"], full), \
        "outside the image does not count: a full mask stays full"
    assert torch.equal(run(GrowMask, mask=block, expand=0, tapered_corners=True)["mask"], block)


def test_grow_by_many_pixels_equals_growing_one_at_a_time():
    once = run(GrowMask, mask=dot(201, (100, 100)), expand=70, tapered_corners=False)["mask"]
    assert once.sum() == 141 * 141


def test_feather_fades_each_side_over_its_own_width():
    out = run(FeatherMask, mask=torch.ones(1, 4, 8), left=4, top=0, right=2, bottom=0)["mask"][0]
    assert torch.allclose(out[0], torch.tensor([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.5]))
    assert torch.equal(out[0], out[3])
    top = run(FeatherMask, mask=torch.ones(1, 4, 2), left=0, top=2, right=0, bottom=0)["mask"][0, :, 0]
    assert torch.allclose(top, torch.tensor([0.5, 1.0, 1.0, 1.0]))


def test_blur_keeps_the_total_and_spreads_a_dot():
    blurred = run(BlurMask, mask=dot(9, (4, 4)), radius=2, sigma=1.0)["mask"][0]
    assert abs(blurred.sum().item() - 1.0) < 1e-5 and blurred[4, 4] < 1 and blurred[4, 5] > 0
    assert torch.allclose(blurred, blurred.t()) and blurred[4, 7] == 0


def test_combine_every_operation_at_an_offset():
    destination = torch.full((1, 4, 4), 0.5)
    source = torch.ones(1, 2, 2)
    expected = {"multiply": 0.5, "add": 1.0, "subtract": 0.0, "and": 0.0, "or": 1.0, "xor": 1.0}
    for operation, value in expected.items():
        out = run(CombineMasks, destination=destination, source=source, x=1, y=2, operation=operation)["mask"][0]
        assert torch.equal(out[2:4, 1:3], torch.full((2, 2), value)), operation
        assert out[0:2].eq(0.5).all() and out[:, 0].eq(0.5).all() and out[:, 3].eq(0.5).all(), operation
    assert torch.equal(destination, torch.full((1, 4, 4), 0.5)), "inputs are never changed"
    # and/or/xor read the rounded masks: 0.5 rounds to 0 (half to even)
    logic = run(CombineMasks, destination=torch.ones(1, 2, 2), source=torch.ones(1, 2, 2), x=0, y=0,
                operation="xor")["mask"]
    assert logic.eq(0).all()
    overhang = run(CombineMasks, destination=torch.zeros(1, 4, 4), source=torch.ones(1, 3, 3), x=3, y=3,
                   operation="add")["mask"][0]
    assert overhang.sum() == 1 and overhang[3, 3] == 1, "a source reaching past the edge is cut there"


def test_combine_refuses_an_offset_outside_the_destination():
    with pytest.raises(InputError) as error:
        run(CombineMasks, destination=torch.zeros(1, 4, 4), source=torch.ones(1, 2, 2), x=4, y=0, operation="add")
    assert error.value.input == "x"


def test_solid_and_crop():
    solid = run(SolidMask, value=0.25, width=5, height=3)["mask"]
    assert solid.shape == (1, 3, 5) and solid.eq(0.25).all()
    mask = torch.arange(20, dtype=torch.float32).reshape(1, 4, 5)
    assert torch.equal(run(CropMask, mask=mask, x=1, y=2, width=3, height=2)["mask"], mask[:, 2:4, 1:4])
    for box, name in (({"x": 5, "y": 0, "width": 1, "height": 1}, "x"), ({"x": 0, "y": 4, "width": 1, "height": 1}, "y"),
                      ({"x": 3, "y": 0, "width": 3, "height": 1}, "width"), ({"x": 0, "y": 1, "width": 1, "height": 4}, "height")):
        with pytest.raises(InputError) as error:
            run(CropMask, mask=mask, **box)
        assert error.value.input == name


def test_load_image_mask_reads_a_channel_or_the_transparency(tmp_path):
    home = tmp_path / "home"
    (home / "input").mkdir(parents=True)
    pixels = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    pixels.putpixel((1, 1), (0, 0, 255, 0))
    pixels.save(home / "input" / "shape.png")
    engine = Engine(home=home)

    def mask(channel):
        workflow = {"format": "gouache/1", "nodes": {"m": {"type": "LoadImageMask",
                                                           "inputs": {"image": "shape.png", "channel": channel}}}}
        result = engine.run(workflow, outputs=["m"])
        assert result.ok, result.error
        return result.outputs["m"]["mask"]

    alpha = mask("alpha")
    assert alpha.shape == (1, 2, 4) and alpha[0, 1, 1] == 1 and alpha.sum() == 1, "1 where transparent"
    assert mask("red").sum() == 7 and mask("blue")[0, 1, 1] == 1


def test_a_mask_node_fed_something_else_fails_naming_the_input(tmp_path):
    engine = Engine(home=tmp_path)
    workflow = {"format": "gouache/1", "nodes": {
        "solid": {"type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8}},
        "crop": {"type": "CropMask", "inputs": {"mask": {"node": "solid", "output": "mask"},
                                                "x": 2, "y": 2, "width": 8, "height": 2}}}}
    result = engine.run(workflow, outputs=["crop"])
    assert not result.ok
    assert (result.error.node, result.error.input, result.error.code) == ("crop", "width", "outside_image")
