"""The processors that need torchvision (Llama 4, LFM2-VL, Cohere2-Vision) are restated in ``emergence.testing`` so
that their families' layouts are tested in the light lane too. Where torchvision is installed (`make test-full`), the
real processors, built with the same settings and tokenizer, must lay out what the restatements lay out: identical
token ids (every image token, tile marker and separator in place), identical view shapes, and pixel values within
0.03 on a smooth image (PIL's and torchvision's resize kernels differ slightly; on noise they differ more, which moves
no token)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from emergence import testing as tiny

pytest.importorskip("torchvision", reason="the real Llama 4 / LFM2-VL / Cohere2-Vision processors need torchvision")

#: (width, height): landscape, portrait, small (upscaled), large (tiles), a thin strip
SIZES = [(160, 100), (100, 160), (20, 20), (480, 300), (40, 200)]
PIXEL_TOLERANCE = 0.03


def smooth(width: int, height: int) -> Image.Image:
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx / width * 255, yy / height * 255, (xx + yy) / (width + height) * 255], -1)
    return Image.fromarray(rgb.astype(np.uint8))


def llama4():
    from transformers import Llama4ImageProcessor, Llama4Processor

    _, stand_in = tiny.tiny_llama4()
    real = Llama4Processor(image_processor=Llama4ImageProcessor(size={"height": 32, "width": 32}, max_patches=6),
                           tokenizer=stand_in.tokenizer, patch_size=4, pixel_shuffle_ratio=0.5)
    return stand_in, real, "<image>describe", "<|image|>describe"  # each one's own image placeholder


def lfm2_vl():
    from transformers import Lfm2VlImageProcessor, Lfm2VlProcessor

    _, stand_in = tiny.tiny_lfm2_vl()
    ip = Lfm2VlImageProcessor(tile_size=32, encoder_patch_size=4, max_tiles=6, min_tiles=2, max_image_tokens=16,
                              min_image_tokens=4, downsample_factor=2)
    return stand_in, Lfm2VlProcessor(image_processor=ip, tokenizer=stand_in.tokenizer), "<image>describe", None


def cohere2_vision():
    from transformers import Cohere2VisionImageProcessor, Cohere2VisionProcessor

    _, stand_in = tiny.tiny_cohere2_vision()
    tokenizer = stand_in.tokenizer  # the special tokens the real processor reads from its tokenizer
    tokenizer.boi_token, tokenizer.eoi_token = "<|START_OF_IMG|>", "<|END_OF_IMG|>"
    tokenizer.image_token, tokenizer.img_line_break_token = "<image>", "<|IMG_LINE_BREAK|>"
    tokenizer.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    ip = Cohere2VisionImageProcessor(size={"height": 32, "width": 32}, max_patches=6, crop_to_patches=True,
                                     patch_size=stand_in.side)  # patch_size: tokens per tile side
    return stand_in, Cohere2VisionProcessor(image_processor=ip, tokenizer=tokenizer), "<image>describe", None


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("family", [llama4, lfm2_vl, cohere2_vision], ids=lambda f: f.__name__)
def test_the_restatement_lays_out_what_the_real_processor_does(family, size):
    stand_in, real, text, real_text = family()
    image = smooth(*size)
    ours = stand_in(images=image, text=text)
    theirs = real(images=image, text=real_text or text, return_tensors="pt")
    assert ours["input_ids"].tolist() == theirs["input_ids"].tolist()
    for name in ("pixel_values", "pixel_attention_mask", "spatial_shapes"):
        if name not in theirs:
            continue
        mine, want = ours[name], theirs[name]
        want = want[0] if want.ndim == mine.ndim + 1 else want  # Llama 4 keeps a batch axis
        assert tuple(mine.shape) == tuple(want.shape), name
        if name == "pixel_values":
            assert (mine.float() - want.float()).abs().max().item() <= PIXEL_TOLERANCE
        else:
            assert torch.equal(mine.long(), want.long()), name


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("family", [llama4, lfm2_vl, cohere2_vision], ids=lambda f: f.__name__)
def test_the_adapter_places_the_real_processors_tokens_as_the_restatements(family, size):
    """The adapters read the processor they are given (its image processor's settings, its tokens): with the real
    processor the layout puts the same tokens at the same pixel boxes (positions relative to the first visual token:
    the two write different image placeholders into the prompt)."""
    from emergence import Probe

    stand_in, real, _, _ = family()
    model, _ = getattr(tiny, f"tiny_{family.__name__}")()
    image = smooth(*size)
    layouts = []
    for processor in (stand_in, real):
        probe = Probe(model, processor)
        layouts.append(probe.layout(probe.prepare(image, "describe"), (image.height, image.width)))
    ours, theirs = layouts
    assert np.array_equal(ours.positions - ours.positions[0], theirs.positions - theirs.positions[0])
    assert np.allclose(ours.token_boxes(), theirs.token_boxes())
    assert [v.grid for v in ours.views] == [v.grid for v in theirs.views]
