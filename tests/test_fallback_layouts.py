"""Unregistered models: the generic layout only where it is provably right (issue: never a silently wrong heatmap).
Learned-query models are captured but not drawn; tiled inputs, cross-attention and encoder-decoder models are refused
with the reason."""

from __future__ import annotations

import pytest
import torch
from conftest import noise_image

from emergence import Probe, analyze
from emergence import testing as tiny
from emergence.adapters import GenericAdapter
from emergence.errors import LayoutError, UnsupportedModelError


def test_learned_query_tokens_are_captured_but_never_drawn():
    """BLIP-2's visual tokens are learned queries: captured (exactness vs eager is in test_capture's CAPTURE_CASES),
    but the layout is not spatial and every drawing or segmenting call refuses with the reason."""
    image = noise_image()
    probe = Probe(*tiny.tiny_blip2())
    run = probe.generate(image, "describe the image", max_new_tokens=3)
    assert run.attention.shape[-1] == 4 and run.attention.float().sum() > 0
    assert not run.layout.spatial and run.layout.num_tokens == 4 and set(run.layout.token_kind) == {"query"}
    with pytest.raises(LayoutError, match="learned query / latent tokens .* not image patches"):
        run.heatmap(0)
    with pytest.raises(LayoutError, match="cannot be drawn or segmented"):
        analyze(run, segmenter="classical")
    with pytest.raises(UnsupportedModelError, match="visual tokens are not spatial"):  # before any generation
        probe.generate(image, "describe the image", max_new_tokens=3, methods=["tam"])


def test_the_generic_layout_refuses_tiling_processors_and_several_views():
    """PaliGemma as if unregistered (the generic adapter forced)."""
    image = noise_image()
    model, processor = tiny.tiny_paligemma()
    probe = Probe(model, processor, adapter=GenericAdapter())
    run = probe.generate(image, "describe the image", max_new_tokens=2)
    assert run.layout.spatial and run.layout.meta["fallback"].endswith("proved to fit")
    inputs = dict(probe.prepare(image, "describe the image"))
    two = dict(inputs, pixel_values=torch.cat([inputs["pixel_values"]] * 2))
    with pytest.raises(UnsupportedModelError, match=r"(?s)pixel_values hold 2 views .* register_adapter"):
        probe.layout(two, (image.height, image.width))
    processor.image_processor.do_image_splitting = True
    with pytest.raises(UnsupportedModelError, match=r"makes several views of one image \({'do_image_splitting': True}\)"):
        probe.layout(inputs, (image.height, image.width))


def test_a_token_count_no_grid_implies_is_refused_not_factorised():
    image = noise_image()
    model, processor = tiny.tiny_paligemma()
    probe = Probe(model, processor, adapter=GenericAdapter())
    inputs = dict(probe.prepare(image, "describe the image"))
    ids = inputs["input_ids"]
    image_id = model.config.image_token_id
    extra = torch.tensor([[image_id]])  # one image token too many: 17 x 1? 1 x 17? a guess either way
    first = int(torch.nonzero(ids[0] == image_id)[0])
    longer = torch.cat([ids[:, :first], extra, ids[:, first:]], dim=1)
    with pytest.raises(UnsupportedModelError, match=r"17 image tokens form none of the grids"):
        probe.layout(dict(inputs, input_ids=longer), (image.height, image.width))


def test_cross_attention_and_encoder_decoder_models_are_refused_with_the_reason():
    """Real tiny Idefics (v1) and Florence-2 instances: no silently meaningless placeholder map. (Mllama's
    cross-attention is captured: test_cross_attention.)"""
    from transformers import (
        Florence2Config,
        Florence2ForConditionalGeneration,
        IdeficsConfig,
        IdeficsForVisionText2Text,
    )

    from emergence.layouts import build_layout

    idefics = IdeficsForVisionText2Text(IdeficsConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        cross_layer_interval=1, use_resampler=True,
        vision_config=dict(embed_dim=32, image_size=16, patch_size=8, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=64),
        perceiver_config=dict(resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2, resampler_head_dim=8)))
    with pytest.raises(UnsupportedModelError, match="reads the image only through cross-attention.*perceiver latents"):
        build_layout(idefics, torch.tensor([[1, 99, 5, 6]]), (40, 60), {})
    with pytest.raises(UnsupportedModelError, match="Llama-3.2-Vision"):
        Probe(idefics, None)
    florence = Florence2ForConditionalGeneration(Florence2Config(
        vision_config=dict(embed_dim=[16, 32], depths=[1, 1], num_heads=[2, 2], num_groups=[2, 2], patch_size=[7, 3],
                           patch_stride=[4, 2], patch_padding=[3, 1], patch_prenorm=[False, True], projection_dim=32),
        text_config=dict(vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                         decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                         max_position_embeddings=64),
        image_token_id=99))
    with pytest.raises(UnsupportedModelError, match="is an encoder-decoder model"):
        build_layout(florence, torch.tensor([[1, 99, 99, 5]]), (40, 60), {})


def test_readme_family_table_is_generated_from_the_support_table_and_each_exact_family_is_tested():
    from pathlib import Path

    from conftest import CAPTURE_CASES as TESTED

    from emergence.adapters.support import families, markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown_table() in readme, "README's family table is stale: python -m emergence.adapters.support"
    builders = {getattr(f, "func", f).__name__ for f in TESTED.values()}
    from test_original_llava import BUILDERS_TESTED_HERE  # its generate differs: exactness tested in that file

    builders |= set(BUILDERS_TESTED_HERE)
    for adapter in families():
        if adapter.support != "refused":
            assert adapter.tested and set(adapter.tested.split(", ")) <= builders, \
                f"{adapter.family} is listed as {adapter.support} without a family test"
    # a family listed with several images / video has a class in the multi-image / video tests
    from conftest import FAMILIES
    from test_multi_image import MULTI
    from test_video import VIDEO

    def classes(names):
        return {type(FAMILIES[n]()[0]).__name__ for n in names}

    from test_cross_attention import MULTI_IMAGE_CLASSES

    multi, video = classes(MULTI) | set(MULTI_IMAGE_CLASSES), classes(VIDEO)
    for adapter in families():
        if adapter.multi_image:
            assert multi & set(adapter.architectures), f"{adapter.family} says several images, untested"
        if adapter.video:
            assert video & set(adapter.architectures), f"{adapter.family} says video, untested"


def test_kosmos2_latents_are_placed_by_the_position_mask_captured_and_never_drawn():
    """Kosmos-2 names no image token: its latents sit where image_embeds_position_mask is 1. They are captured at
    exactly those positions (exactness vs eager: test_capture's CAPTURE_CASES) and refuse to be drawn."""
    image = noise_image()
    probe = Probe(*tiny.tiny_kosmos2(latents=4))
    inputs = probe.prepare(image, "describe the image")
    run = probe.generate(image, inputs=inputs, max_new_tokens=2)
    mask = inputs["image_embeds_position_mask"][0]
    assert run.layout.positions.tolist() == torch.nonzero(mask).flatten().tolist() and not run.layout.spatial
    with pytest.raises(LayoutError, match="not image patches"):
        run.heatmap(0)
    with pytest.raises(LayoutError, match="image_embeds_position_mask"):
        probe.layout({k: v for k, v in inputs.items() if k != "image_embeds_position_mask"}, (image.height, image.width))


def test_families_not_placed_yet_are_refused_with_what_stands_in_the_way():
    """A real tiny Emu3: its visual tokens are VQ codes with an end-of-line per row; no grid is guessed."""
    from transformers import Emu3Config, Emu3ForConditionalGeneration

    from emergence.layouts import build_layout

    vocab = {"<image>": 90, "<|extra_200|>": 91, **{f"<|visual token {i:06d}|>": 100 + i for i in range(16)}}
    config = Emu3Config(
        vq_config=dict(codebook_size=16, embed_dim=4, latent_channels=4, base_channels=32, channel_multiplier=[1, 1],
                       num_res_blocks=1, attn_resolutions=[], hidden_size=32, num_attention_heads=1),
        text_config=dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2),
        vocabulary_map=vocab)
    model = Emu3ForConditionalGeneration(config)
    # the refusal comes from the adapter, before any processor output is read
    with pytest.raises(UnsupportedModelError, match=r"(?s)VQ codes .* will not guess a grid.*register_adapter"):
        build_layout(model, torch.tensor([[1, 90, 90, 91, 90, 90, 91, 5]]), (40, 60), {})
    with pytest.raises(UnsupportedModelError, match="VQ codes"):  # and before any input is processed
        Probe(model)


def test_a_family_built_on_timm_is_refused_by_name_before_generating():
    """PerceptionLM needs timm (its ViT tower) and torchvision (its processors) to be built at all: in the full lane
    the real model and processors run, and the generic layout refuses its thumbnail + tiles with the fix."""
    pytest.importorskip("timm", reason="PerceptionLM's tower is a timm model (full lane: make test-full)")
    pytest.importorskip("torchvision", reason="PerceptionLM's processors need torchvision (full lane)")
    model, processor = tiny.tiny_perception_lm()
    probe = Probe(model, processor)
    calls = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(UnsupportedModelError, match="(?s)PerceptionLMForConditionalGeneration is not registered.*"
                                                        "2 views.*register_adapter"):
            probe.generate(noise_image(80, 50), "describe", max_new_tokens=2)
    finally:
        handle.remove()
    assert not calls  # refused before any forward pass
