"""Image nodes on small tensors: Canny and the scribble set, outpaint padding, masked pasting, batches,
total-pixel scaling, crops; bad sizes and boxes fail naming the input, crossed thresholds fail validation."""

from __future__ import annotations

import pytest
import torch

from gouache.engine import Engine, InputError, WorkflowInvalid
from gouache.nodes.image_nodes import (
    BlurImage,
    CannyEdges,
    CompositeImages,
    CropImage,
    ImageFromBatch,
    ImageScaleToPixels,
    InvertImage,
    JoinImages,
    PadForOutpaint,
    RepeatImageBatch,
    ThresholdImage,
)

torch.set_num_threads(1)


class Ctx:
    """The little of a RunContext these nodes use."""

    def check_interrupt(self) -> None:
        pass


def run(node, **inputs):
    return node().run(Ctx(), **inputs)


def square(size: int = 32, inner: tuple[int, int] = (8, 24)) -> torch.Tensor:
    """A white square on black, [1,size,size,3]."""
    image = torch.zeros(1, size, size, 3)
    image[:, inner[0]:inner[1], inner[0]:inner[1]] = 1.0
    return image


def test_canny_finds_the_outline_of_a_square_and_nothing_inside():
    edges = run(CannyEdges, image=square(), low_threshold=0.1, high_threshold=0.2)["image"]
    assert edges.shape == (1, 32, 32, 3) and set(edges.unique().tolist()) <= {0.0, 1.0}
    on = edges[0, :, :, 0]
    assert on[12:20, 12:20].sum() == 0 and on[:4].sum() == 0, "flat areas have no edges"
    for row in range(10, 22):  # every row crossing the square has an edge at its left and right side
        assert on[row, 6:10].sum() >= 1 and on[row, 22:26].sum() >= 1
        assert on[row, 6:10].sum() <= 2, "edges are thin"
    assert run(CannyEdges, image=square(), low_threshold=0.9, high_threshold=0.95)["image"].sum() == 0


def test_canny_hysteresis_keeps_weak_edges_only_when_they_touch_strong_ones():
    fading = torch.zeros(1, 32, 32, 3)
    fading[:, :, 16:] = torch.linspace(1.0, 0.2, 32)[:, None, None]  # a step whose contrast fades downwards
    edges = run(CannyEdges, image=fading, low_threshold=0.05, high_threshold=0.3)["image"][0, :, :, 0]
    strong_only = run(CannyEdges, image=fading, low_threshold=0.3, high_threshold=0.3)["image"][0, :, :, 0]
    assert strong_only[4:28].sum(1).eq(0).any(), "the lower part is too weak to be an edge on its own ..."
    assert edges[4:28].sum(1).ge(1).all(), "... but it is kept when it continues a strong one"
    faint = fading * 0.25  # the same picture with every part weak
    assert run(CannyEdges, image=faint, low_threshold=0.05, high_threshold=0.3)["image"].sum() == 0


def test_canny_thresholds_in_the_wrong_order_fail_validation(tmp_path):
    engine = Engine(home=tmp_path)
    workflow = {"format": "gouache/1", "nodes": {
        "load": {"type": "LoadImage", "inputs": {"image": "example.png"}},
        "canny": {"type": "CannyEdges", "inputs": {"image": {"node": "load", "output": "image"},
                                                   "low_threshold": 0.6, "high_threshold": 0.3}}}}
    with pytest.raises(WorkflowInvalid) as error:
        engine.validate(workflow, outputs=["canny"])
    [problem] = error.value.problems
    assert (problem.node, problem.input, problem.code) == ("canny", "high_threshold", "low_above_high")


def test_invert_threshold_and_blur():
    image = torch.tensor([[[[0.0, 0.3, 0.7]]]])
    assert torch.allclose(run(InvertImage, image=image)["image"], torch.tensor([[[[1.0, 0.7, 0.3]]]]))
    assert torch.equal(run(ThresholdImage, image=image, value=0.5)["image"], torch.tensor([[[[0.0, 0.0, 1.0]]]]))
    blurred = run(BlurImage, image=square(9, (4, 5)), radius=2, sigma=1.0)["image"]
    assert blurred.shape == (1, 9, 9, 3) and abs(blurred[..., 0].sum().item() - 1.0) < 1e-5
    assert torch.equal(run(BlurImage, image=square(), radius=0, sigma=1.0)["image"], square())


def test_pad_for_outpaint_places_the_image_and_masks_the_border_with_feathering():
    image = torch.rand(2, 16, 16, 3)
    out = run(PadForOutpaint, image=image, left=8, top=0, right=0, bottom=16, feathering=4)
    canvas, mask = out["image"], out["mask"]
    assert canvas.shape == (2, 32, 24, 3) and mask.shape == (1, 32, 24)
    assert torch.equal(canvas[:, :16, 8:], image) and canvas[:, 16:].eq(0.5).all() and canvas[:, :, :8].eq(0.5).all()
    assert mask[0, 16:].eq(1).all() and mask[0, :, :8].eq(1).all()
    assert mask[0, 0:12, 12:].eq(0).all(), "no feathering towards the sides that were not padded, nor far inside"
    assert torch.allclose(mask[0, 5, 8:13], torch.tensor([1.0, 0.5625, 0.25, 0.0625, 0.0]))  # ((4 - d) / 4)^2
    assert torch.allclose(mask[0, 15, 12], torch.tensor(0.5625)), "the bottom row counts from 1, as ComfyUI's"
    plain = run(PadForOutpaint, image=image, left=8, top=0, right=0, bottom=0, feathering=0)["mask"]
    assert plain[0, :, 8:].eq(0).all() and plain[0, :, :8].eq(1).all()


def test_composite_through_a_mask_at_an_offset():
    destination = torch.zeros(1, 8, 8, 3)
    source = torch.ones(1, 4, 4, 3)
    mask = torch.zeros(1, 4, 4)
    mask[:, :, 2:] = 1.0
    mask[:, 0, 0] = 0.25
    out = run(CompositeImages, destination=destination, source=source, x=2, y=3, resize_source=False, mask=mask)["image"]
    assert out[0, 3:7, 4:6].eq(1).all() and out[0, 3, 2, 0] == 0.25 and out[0, 4, 2].eq(0).all()
    assert out.sum() == (8 + 0.25) * 3 and destination.eq(0).all()
    whole = run(CompositeImages, destination=destination, source=source, x=6, y=6, resize_source=False, mask=None)["image"]
    assert whole[0, 6:, 6:].eq(1).all() and whole.sum() == 4 * 3, "cut at the edge"
    resized = run(CompositeImages, destination=destination, source=source, x=0, y=0, resize_source=True, mask=None)
    assert resized["image"].eq(1).all()


def test_composite_refuses_a_mask_of_another_size_and_an_offset_outside():
    destination, source = torch.zeros(1, 8, 8, 3), torch.ones(1, 4, 4, 3)
    with pytest.raises(InputError) as error:
        run(CompositeImages, destination=destination, source=source, x=0, y=0, resize_source=False,
            mask=torch.ones(1, 8, 8))
    assert error.value.input == "mask" and error.value.code == "size_mismatch"
    with pytest.raises(InputError) as error:
        run(CompositeImages, destination=destination, source=source, x=0, y=8, resize_source=False, mask=None)
    assert error.value.input == "y" and error.value.code == "outside_image"


def test_batches_join_repeat_and_take():
    first, second = torch.rand(2, 4, 4, 3), torch.rand(1, 4, 4, 3)
    joined = run(JoinImages, image1=first, image2=second)["image"]
    assert torch.equal(joined, torch.cat([first, second]))
    with pytest.raises(InputError) as error:
        run(JoinImages, image1=first, image2=torch.rand(1, 4, 5, 3))
    assert error.value.input == "image2"
    repeated = run(RepeatImageBatch, image=first, amount=3)["image"]
    assert repeated.shape[0] == 6 and torch.equal(repeated[4], first[0])
    assert torch.equal(run(ImageFromBatch, image=joined, batch_index=1, length=2)["image"], joined[1:3])
    for index, length, name in ((3, 1, "batch_index"), (1, 3, "length")):
        with pytest.raises(InputError) as error:
            run(ImageFromBatch, image=joined, batch_index=index, length=length)
        assert error.value.input == name


def test_scale_to_total_pixels_keeps_the_aspect_ratio():
    out = run(ImageScaleToPixels, image=torch.rand(1, 20, 40, 3), method="bilinear", megapixels=0.0078125)["image"]
    assert out.shape == (1, 64, 128, 3)  # 8192 pixels = 0.0078125 * 1024 * 1024


def test_crop_image_inside_and_outside():
    image = torch.rand(1, 6, 8, 3)
    assert torch.equal(run(CropImage, image=image, width=3, height=2, x=5, y=4)["image"], image[:, 4:6, 5:8])
    with pytest.raises(InputError) as error:
        run(CropImage, image=image, width=4, height=2, x=5, y=0)
    assert error.value.input == "width"
