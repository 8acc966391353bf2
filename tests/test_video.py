"""Video: one layout part per frame (LLaVA-NeXT-Video, LLaVA-OneVision) or per temporal patch of frames (the
Qwen2-VL family); a marker drawn into one frame changes only the tokens of the part that reads it, under the marker;
capture over every frame's tokens equals eager attention with identical ids; per-frame heatmaps, the frame x token
profile, frame subsets, analyze(frame=f), save / load.

The video processors need torchvision, absent here: the tiny builders lay video inputs out as the real video
processors do (``emergence.testing.HandBuiltProcessor`` for Qwen, ``FrameVideoProcessor`` for LLaVA-NeXT-Video and
LLaVA-OneVision).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from conftest import FAMILIES, N_NEW, assert_capture_equals_eager, box_gap, lm_input_embeddings, noise_image
from PIL import Image

from emergence import Probe, ProbeRun, analyze
from emergence.errors import CaptureError, LayoutError, UnsupportedModelError
from emergence.layouts import Medium

FW, FH = 120, 80  # frame size
VIDEO = ["llava_next_video", "llava_onevision", "llava_onevision_odd_grid", "qwen2_vl", "qwen2_5_vl", "qwen3_vl",
         "qwen3_5"]


def _frames(n: int = 5, seed: int = 0) -> list[Image.Image]:
    return [noise_image(FW, FH, seed=seed + f) for f in range(n)]


def _tps(model) -> int:
    return int(getattr(model.config.vision_config, "temporal_patch_size", 1) or 1) \
        if "Qwen" in type(model).__name__ else 1


@pytest.mark.parametrize("family", VIDEO)
def test_video_parts_cover_every_frame_and_every_video_token(family):
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    frames = _frames(5)
    inputs = probe.prepare_media([], [frames], "describe")
    layout = probe.layout(inputs, [Medium("video", (FH, FW), len(frames))])
    tps = _tps(model)
    assert len(layout.parts) == -(-len(frames) // tps)
    covered = [f for p in layout.parts for f in range(*p.frames)]
    assert covered == list(range(len(frames)))  # every frame once, in order; the last group may be short
    assert all(p.item == 0 and p.image_size == (FH, FW) for p in layout.parts)
    assert len({p.num_tokens for p in layout.parts}) == 1
    video_tokens = int((inputs["input_ids"][0] == model.config.video_token_id).sum())
    assert layout.num_tokens == video_tokens
    with torch.no_grad():  # the model accepts exactly these inputs
        model(**inputs)
    # frames given that the inputs do not hold are named
    with pytest.raises(LayoutError, match="frames"):
        probe.layout(inputs, [Medium("video", (FH, FW), len(frames) + 2 * tps)])


@pytest.mark.parametrize("frame", [0, 3])
@pytest.mark.parametrize("family", VIDEO)
def test_a_marker_in_one_frame_changes_only_its_parts_tokens_under_it(family, frame):
    model, processor = FAMILIES[family](local_vision=True)
    probe = Probe(model, processor)
    frames = _frames(4, seed=7)
    arr = np.array(frames[frame])
    x0, y0, x1, y1 = 30, 20, 60, 50
    arr[y0:y1, x0:x1] = [255, 0, 255]
    marked = list(frames)
    marked[frame] = Image.fromarray(arr)
    base = probe.prepare_media([], [frames], "describe")
    layout = probe.layout(base, [Medium("video", (FH, FW), len(frames))])
    diff = lm_input_embeddings(model, base) - lm_input_embeddings(model, probe.prepare_media([], [marked], "describe"))
    changed = np.nonzero(diff.abs().sum(-1)[torch.as_tensor(layout.positions)].numpy() > 1e-5)[0]
    assert len(changed) > 0
    k = layout.part_index(frame=frame)
    assert set(changed.tolist()) <= set(layout.members(k).tolist()), "a token of another frame changed"
    boxes = layout.token_boxes()
    for v in changed:
        b = boxes[v]
        assert box_gap(b, (x0, y0, x1, y1)) <= 0.5 * max(b[2] - b[0], b[3] - b[1]) + 1, (v, b)


@pytest.mark.parametrize("family", ["llava_next_video", "llava_onevision", "qwen2_vl", "qwen3_vl"])
def test_capture_over_a_video_equals_eager_with_identical_ids(family):
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    frames = _frames(4)
    inputs = probe.prepare_media([], [frames], "describe the video")
    run = probe.generate(video=frames, prompt="describe the video", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32)
    assert_capture_equals_eager(model, inputs, run)  # over every image's / frame's tokens


def test_per_frame_maps_profile_subsets_analyze_and_save(tmp_path):
    model, processor = FAMILIES["qwen2_vl"]()
    probe = Probe(model, processor)
    frames = _frames(5)
    run = probe.generate(video=frames, prompt="describe", max_new_tokens=4, min_new_tokens=4)
    assert run.image is None and len(run.media) == 1 and len(run.media[0]) == 5
    # frames 0 and 1 share a temporal patch: the same map; frame 2 reads another
    np.testing.assert_array_equal(run.heatmap(1, frame=0), run.heatmap(1, frame=1))
    assert run.heatmap(1, frame=2).shape == (FH, FW)
    assert not np.array_equal(run.heatmap(1, frame=0), run.heatmap(1, frame=2))
    with pytest.raises(LayoutError, match="no part of this layout is image=None, frame=9"):
        run.heatmap(1, frame=9)
    one = run.select(frame=3)
    assert one.layout.frames == (2, 4) and np.array_equal(np.array(one.image), np.array(frames[3]))
    # the frame x token profile: each part's mass, summing to the mass on the whole video
    spans, mass = run.frame_profile()
    assert spans == [(0, 2), (2, 4), (4, 5)] and mass.shape == (3, 4)
    torch.testing.assert_close(mass.sum(0), run.token_map(None).sum(1), rtol=1e-5, atol=1e-6)
    from emergence.plotting import plot_frame_profile

    fig, ax = plot_frame_profile(run)
    assert len(ax.get_yticklabels()) == 3
    # a frame subset keeps only those parts' tokens, with the same probabilities
    sub = probe.generate(video=frames, prompt="describe", max_new_tokens=4, min_new_tokens=4, frames=[4])
    assert [p.frames for p in sub.layout.parts] == [(4, 5)]
    k = run.layout.part_index(frame=4)
    torch.testing.assert_close(sub.attention.float(),
                               run.attention[..., torch.from_numpy(run.layout.members(k))].float(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="frames \\[7\\] are not in the video"):
        probe.generate(video=frames, prompt="describe", max_new_tokens=1, frames=[7])
    # analyze one frame against its ground truth
    gt = np.zeros((FH, FW), bool)
    gt[10:50, 20:70] = True
    report = analyze(run, gt, segmenter="classical", frame=2, layer_emergence=False)
    assert np.array_equal(np.array(report.image), np.array(frames[2]))
    # save / load keeps the frames
    run.save(tmp_path / "video")
    back = ProbeRun.load(tmp_path / "video")
    assert len(back.media[0]) == 5 and back.layout.to_dict() == run.layout.to_dict()
    np.testing.assert_array_equal(back.heatmap(2, frame=4), run.heatmap(2, frame=4))


def test_an_image_and_a_video_in_one_prompt():
    model, processor = FAMILIES["llava_next_video"]()
    probe = Probe(model, processor)
    picture = noise_image(100, 60, seed=9)
    frames = _frames(3)
    run = probe.generate(image=[picture], video=frames, prompt="compare", max_new_tokens=3)
    assert run.layout.items == [0, 1]
    assert run.heatmap(0, image=0).shape == (60, 100)
    assert run.heatmap(0, image=1, frame=2).shape == (FH, FW)
    alone = probe.layout(probe.prepare(picture, "compare"), (60, 100))
    np.testing.assert_allclose(run.layout.part(image=0).token_boxes(), alone.token_boxes(), equal_nan=True)


def test_families_without_video_support_refuse_it_by_name():
    model, processor = FAMILIES["llava"]()
    with pytest.raises(UnsupportedModelError, match="per-frame maps of videos are not supported for this family"):
        Probe(model, processor).generate(video=_frames(2), prompt="describe", max_new_tokens=1)
    model, processor = FAMILIES["glm4v"]()
    with pytest.raises(UnsupportedModelError, match="videos are not supported"):
        Probe(model, processor).generate(video=_frames(2), prompt="describe", max_new_tokens=1)
    with pytest.raises(ValueError, match="does not decode video files"):
        Probe(*FAMILIES["qwen2_vl"]()).generate(video="clip.mp4", prompt="describe", max_new_tokens=1)


def _smooth_frames(n: int = 5) -> list[Image.Image]:
    """Low-frequency frames: resizers (PIL here, torchvision in the real video processors) agree on them closely."""
    y, x = np.mgrid[0:FH, 0:FW].astype(np.float32)
    out = []
    for f in range(n):
        rgb = [128 + 100 * np.sin(x / 37 + f), 128 + 100 * np.cos(y / 29 - f), 128 + 60 * np.sin((x + y) / 53)]
        out.append(Image.fromarray(np.clip(np.stack(rgb, -1), 0, 255).astype(np.uint8)))
    return out


def test_stand_ins_build_what_the_real_video_processors_build():
    """Where torchvision is installed (the GPU machines' image), the real video processors run: same shapes, same
    prompt tokens, same grids, and pixel values within resizer differences. Skipped on the CPU build machines."""
    try:
        importlib.import_module("torchvision")  # the real video processors import it lazily
        from transformers import LlavaNextVideoVideoProcessor, LlavaOnevisionVideoProcessor, Qwen2VLVideoProcessor
    except Exception as exc:  # noqa: BLE001 - torchvision absent or unusable with this torch
        pytest.skip(f"the real video processors need torchvision ({type(exc).__name__}: {exc})")
    from emergence.testing import FrameVideoProcessor

    frames = _smooth_frames(5)
    real = {
        "llava_next_video": LlavaNextVideoVideoProcessor(size={"shortest_edge": 32},
                                                         crop_size={"height": 32, "width": 32}),
        "llava_onevision": LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32}),
    }
    for name, crop in (("llava_next_video", True), ("llava_onevision", False)):
        ours = FrameVideoProcessor(32, crop=crop)(videos=[frames])["pixel_values_videos"]
        theirs = real[name](videos=[frames], return_tensors="pt")["pixel_values_videos"]
        assert theirs.shape == ours.shape, name
        assert (theirs.float() - ours.float()).abs().mean().item() < 0.05, name
    model, processor = FAMILIES["qwen2_vl"]()
    ip = processor.image_processor
    size = {"shortest_edge": ip.size.shortest_edge, "longest_edge": ip.size.longest_edge}
    real_qwen = Qwen2VLVideoProcessor(patch_size=4, merge_size=2, temporal_patch_size=2, cap_pixels_per_frame=False,
                                      size=size)
    ours = processor(videos=[frames], text="<|vision_start|><|video_pad|><|vision_end|> describe")
    theirs = real_qwen(videos=[frames], return_tensors="pt")
    assert torch.equal(theirs["video_grid_thw"], ours["video_grid_thw"])
    assert theirs["pixel_values_videos"].shape == ours["pixel_values_videos"].shape
    diff = (theirs["pixel_values_videos"].float() - ours["pixel_values_videos"].float()).abs().mean().item()
    assert diff < 0.05
    # the real processor fills the last temporal patch of an odd frame count with the last frame, in the packing
    # [patches, C, tps, p*p] that the frame-count check reads (adapters.qwen.check_padded_frames)
    t, gh, gw = theirs["video_grid_thw"][0].tolist()
    last = theirs["pixel_values_videos"][(t - 1) * gh * gw:].reshape(gh * gw, 3, 2, -1)
    assert torch.equal(last[:, :, 0], last[:, :, 1])
    four = real_qwen(videos=[frames[:4]], return_tensors="pt")
    t = int(four["video_grid_thw"][0, 0])
    last = four["pixel_values_videos"][(t - 1) * gh * gw:].reshape(gh * gw, 3, 2, -1)
    assert not torch.equal(last[:, :, 0], last[:, :, 1])


@pytest.mark.parametrize("family", [f for f in VIDEO if f.startswith("qwen")])
def test_inputs_made_from_more_frames_than_given_are_refused(family):
    """A video input made from 4 frames, given with 3: the same temporal-patch count, but the last patch holds two
    different frames where 3 frames would repeat the third (was: accepted; the last part claimed a frame that was
    not given)."""
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    frames = _frames(4)
    inputs = probe.prepare_media([], [frames], "describe")
    with pytest.raises(LayoutError, match="video 0 was given 3 frames.*made from more frames"):
        probe.generate(video=frames[:3], inputs=inputs, max_new_tokens=1)
    three = probe.prepare_media([], [frames[:3]], "describe")  # the processor's own 3-frame inputs pass
    assert probe.layout(three, [Medium("video", (FH, FW), 3)]).num_tokens > 0


def test_video_inputs_that_would_be_misread_are_refused_by_name():
    """One [H, W, 3] frame as video= (it would be read as H frames of W x 3 pixels), a list of videos, and frames=[]
    are refused before any generation; methods given as one string is that method, not its letters."""
    model, processor = FAMILIES["qwen2_vl"]()
    probe = Probe(model, processor)
    frames = _frames(4)
    one = np.asarray(frames[0])
    with pytest.raises(ValueError, match=r"shape \(\d+, \d+, 3\).*one frame \[H, W, 3\] is an image"):
        probe.generate(video=one, prompt="describe", max_new_tokens=1)
    with pytest.raises(ValueError, match="ONE video"):
        probe.generate(video=[frames, frames], prompt="describe", max_new_tokens=1)
    with pytest.raises(ValueError, match=r"frames=\[\] keeps no frame"):
        probe.generate(video=frames, prompt="describe", max_new_tokens=1, frames=[])
    stacked = np.stack([np.asarray(f) for f in frames])  # [F, H, W, 3] is a video
    assert probe.generate(video=stacked, prompt="describe", max_new_tokens=1).layout.num_tokens > 0
    run = probe.generate(frames[0], "describe", max_new_tokens=2, min_new_tokens=2, methods="tam")
    assert "tam_logits" in run.extras


@pytest.mark.parametrize("family", ["qwen2_vl", "llava_next_video", "llava_onevision"])
def test_video_inputs_given_with_image_say_to_pass_video(family):
    """(was: "per-frame maps of videos are not supported yet", or for a list of frames "several images per prompt
    are not supported")."""
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    frames = _frames(4)
    inputs = probe.prepare_media([], [frames], "describe")
    for image in (frames[0], frames):
        with pytest.raises(ValueError, match=r"pass its frames as video=frames, not image="):
            probe.generate(image, inputs=inputs, max_new_tokens=1)
    assert probe.generate(video=frames, inputs=inputs, max_new_tokens=1).layout.num_tokens > 0


@pytest.mark.parametrize("family, field", [("qwen2_vl", "video_token_id"), ("llava_onevision", "video_token_id"),
                                           ("qwen2_vl", "image_token_id")])
def test_an_answer_holding_a_media_placeholder_is_refused_before_the_teacher_forced_forward(family, field):
    """The model writes its own video / image token (forced here with a sequence bias): the one forward over prompt
    + answer of convention='self' and of gradient maps would read it as one more video (was: transformers' "Video
    features and video tokens do not match"); the predicting convention records the answer as generated."""
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    token = getattr(model.config, field)
    bias = {"sequence_bias": {(token,): 80.0}}
    frames = _frames(4)
    for kwargs in ({"convention": "self"}, {"methods": ["gradient"]}):
        with pytest.raises(CaptureError, match=rf"placeholder token \(id {token}\) at answer position.*suppress_tokens"):
            probe.generate(video=frames, prompt="describe", max_new_tokens=2, **kwargs, **bias)
    run = probe.generate(video=frames, prompt="describe", max_new_tokens=2, **bias)
    assert run.token_ids.tolist() == [token, token] and run.attention.shape[0] == 2
