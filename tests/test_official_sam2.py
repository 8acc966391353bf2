"""The official ``sam2`` package behind ``segmenter="sam2-official"``: built from the package's own model config and
a local checkpoint file (nothing is downloaded), prompts decoded in one batch equal the package predictor's own
one-prompt calls, and the names that do not say which model to build are refused. The package needs torchvision:
these tests run in the full lane (`make test-full`) and skip with that reason elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emergence.analysis.segmenters import OfficialSam2Segmenter, build_segmenter, official_sam2_config
from emergence.errors import EmergenceError, MissingDependencyError


def test_official_checkpoint_names_pick_the_package_config():
    assert official_sam2_config("/w/sam2.1_hiera_large.pt") == "configs/sam2.1/sam2.1_hiera_l.yaml"
    assert official_sam2_config("sam2.1_hiera_base_plus.pt") == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    assert official_sam2_config("sam2_hiera_tiny.pt") == "configs/sam2/sam2_hiera_t.yaml"
    with pytest.raises(ValueError, match="cannot tell the SAM2 model config of 'my_sam.pt'.*from_config"):
        official_sam2_config("my_sam.pt")


def test_no_checkpoint_is_refused_rather_than_random_weights():
    with pytest.raises(ValueError, match="checkpoint='random' only for tests"):
        OfficialSam2Segmenter.from_config("configs/sam2.1/sam2.1_hiera_t.yaml")


def test_without_the_package_the_error_names_the_extra():
    try:
        import sam2  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="sam2"):
            OfficialSam2Segmenter.from_config("configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint="random")
    else:
        pytest.skip("the official sam2 package is installed here (its refusal is checked where it is absent)")


@pytest.fixture(scope="module")
def tiny_official(tmp_path_factory):
    pytest.importorskip("sam2", reason="the official sam2 package (extra emergence[sam2], needs torchvision) is absent")
    torch.manual_seed(0)
    seg = OfficialSam2Segmenter.from_config("configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint="random")
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": seg.predictor.model.state_dict()}, path)  # the official checkpoint format
    return seg, path


def test_a_local_checkpoint_loads_through_the_package_and_batches_equal_single_calls(tiny_official):
    seg, path = tiny_official
    loaded = build_segmenter(f"sam2-official:{path}")
    assert isinstance(loaded, OfficialSam2Segmenter)
    image = (np.random.RandomState(1).rand(90, 140, 3) * 255).astype(np.uint8)  # not square: scaled per axis
    points = np.array([[[20, 30]], [[100, 60]], [[70, 10]]], np.float32)
    labels = np.ones((3, 1), np.int64)
    loaded.set_image(image)
    masks, scores = loaded.predict(points, labels)
    assert masks.shape == (3, 3, 90, 140) and masks.dtype == bool and scores.shape == (3, 3)
    assert loaded.embedding_calls == 1 and loaded.decode_calls == 1
    # the same weights, one prompt per call of the package's own predictor
    seg.predictor.set_image(image.copy())
    for i in range(3):
        m, s, _ = seg.predictor.predict(point_coords=points[i], point_labels=labels[i], multimask_output=True)
        assert np.array_equal(masks[i], m.astype(bool))
        assert np.allclose(scores[i], s, atol=1e-5)


def test_a_missing_checkpoint_file_is_named(tiny_official):
    with pytest.raises(EmergenceError, match="does not exist"):
        OfficialSam2Segmenter.from_config("configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint="/nowhere/x.pt")


# ---------------------------------------------------------------------------------------------- the same weights
from emergence.analysis.sam2_weights import OFFICIAL_HIERA, official_size, sam2_model_from_official  # noqa: E402
from emergence.analysis.segmenters import Sam2Segmenter  # noqa: E402


def test_official_sizes_are_read_from_the_file_name_and_bad_files_are_named(tmp_path):
    assert official_size("/w/sam2.1_hiera_base_plus.pt") == "base_plus"
    assert official_size("sam2_hiera_tiny.pt") == "tiny"
    with pytest.raises(ValueError, match="pass size="):
        official_size("mysam.pt")
    with pytest.raises(EmergenceError, match="does not exist"):
        sam2_model_from_official(tmp_path / "sam2.1_hiera_tiny.pt")
    bad = tmp_path / "sam2.1_hiera_small.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(EmergenceError, match="cannot read SAM2 checkpoint"):
        build_segmenter(f"sam2:{bad}")


def test_the_size_table_restates_the_package_configs():
    pytest.importorskip("sam2", reason="the official sam2 package (extra emergence[sam2], needs torchvision) is absent")
    from hydra import compose

    defaults = {"window_pos_embed_bkg_spatial_size": (14, 14), "window_spec": (8, 4, 14, 7)}  # Hiera's own
    short = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
    for version in ("sam2", "sam2.1"):
        for size, table in OFFICIAL_HIERA.items():
            cfg = compose(config_name=f"configs/{version}/{version}_hiera_{short[size]}.yaml")
            trunk = cfg.model.image_encoder.trunk
            read = {key: trunk.get(key, defaults.get(key)) for key in table}
            if "stages" not in trunk:  # base_plus keeps Hiera's defaults
                read.update(stages=(2, 3, 16, 3), global_att_blocks=(12, 16, 20))
            read = {k: tuple(v) if not isinstance(v, int) else v for k, v in read.items()}
            assert read == table, (version, size)
            assert list(cfg.model.image_encoder.neck.backbone_channel_list) == [
                table["embed_dim"] * 2**i for i in (3, 2, 1, 0)]


@pytest.fixture(scope="module")
def perturbed_checkpoint(tmp_path_factory):
    """A random official tiny SAM2.1 whose every tensor is shifted by noise (so that no zero- or one-initialised
    tensor could be mapped to the wrong place unnoticed), saved in the official format and name."""
    pytest.importorskip("sam2", reason="the official sam2 package (extra emergence[sam2], needs torchvision) is absent")
    torch.manual_seed(3)
    seg = OfficialSam2Segmenter.from_config("configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint="random")
    with torch.no_grad():
        for p in seg.predictor.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("sam2w") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": seg.predictor.model.state_dict()}, path)
    return path


def _prompts():
    points = np.array([[[20, 30], [60, 50]], [[130, 80], [10, 5]], [[70, 10], [71, 11]]], np.float32)
    labels = np.array([[1, 0], [1, 1], [1, 0]], np.int64)
    boxes = np.array([[5, 5, 60, 70], [50, 20, 139, 89], [0, 0, 139, 89]], np.float32)
    return points, labels, boxes


def test_the_transformers_path_on_official_weights_gives_the_official_masks_bit_for_bit(perturbed_checkpoint):
    official = build_segmenter(f"sam2-official:{perturbed_checkpoint}")
    ours = build_segmenter(f"sam2:{perturbed_checkpoint}")
    assert isinstance(ours, Sam2Segmenter) and ours.preprocessing == "official"
    image = (np.random.RandomState(5).rand(90, 140, 3) * 255).astype(np.uint8)
    official.set_image(image)
    ours.set_image(image)
    points, labels, boxes = _prompts()
    for kwargs in ({"points": points[:, :1], "labels": labels[:, :1]}, {"points": points, "labels": labels},
                   {"points": None, "labels": None, "boxes": boxes}, {"points": points, "labels": labels,
                                                                      "boxes": boxes}):
        for multimask in (True, False):
            m_off, s_off = official.predict(multimask=multimask, **kwargs)
            m_ours, s_ours = ours.predict(multimask=multimask, **kwargs)
            assert m_off.shape == m_ours.shape
            assert np.array_equal(m_off, m_ours), (list(kwargs), multimask)
            # scores: float32 rounding of a different summation order, once there are several points (measured
            # up to 1.2e-7); the masks above are equal bit for bit
            assert np.abs(s_off - s_ours).max() <= 1e-6, (list(kwargs), multimask)
            assert 0.01 < m_ours.mean() < 0.99  # the masks are not trivially empty or full


def test_the_processor_preprocessing_differs_only_by_its_8_bit_rounding(perturbed_checkpoint):
    """The measured difference of ``preprocessing="processor"`` (the default for transformers folders): the pixel
    inputs differ by at most half an 8-bit step, a handful of mask pixels flip near the decision boundary."""
    official = build_segmenter(f"sam2-official:{perturbed_checkpoint}")
    ours = Sam2Segmenter(sam2_model_from_official(perturbed_checkpoint), preprocessing="processor")
    image = (np.random.RandomState(5).rand(90, 140, 3) * 255).astype(np.uint8)
    exact = ours.preprocess(image)
    ours.preprocessing = "official"
    gap = (ours.preprocess(image) - exact).abs() * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert 0 < gap.max().item() <= 0.5 / 255 + 1e-6
    ours.preprocessing = "processor"
    official.set_image(image)
    ours.set_image(image)
    points, labels, _ = _prompts()
    m_off, _ = official.predict(points, labels)
    m_ours, _ = ours.predict(points, labels)
    flipped = float((m_off != m_ours).mean())
    assert flipped < 0.01, flipped


def test_a_checkpoint_of_another_size_is_refused_with_the_tensors_named(perturbed_checkpoint, tmp_path):
    wrong = tmp_path / "sam2.1_hiera_small.pt"
    wrong.write_bytes(perturbed_checkpoint.read_bytes())
    with pytest.raises(EmergenceError, match=r"does not fit the 'small' Sam2Model: missing \[.*is size='small' right"):
        build_segmenter(f"sam2:{wrong}")
    with pytest.raises(ValueError, match="preprocessing='pil'"):
        Sam2Segmenter(sam2_model_from_official(perturbed_checkpoint), preprocessing="pil")


@pytest.mark.slow
@pytest.mark.parametrize("size, short", [("small", "s"), ("base_plus", "b+"), ("large", "l")])
def test_every_official_size_converts_to_the_same_masks(size, short, tmp_path):
    """The larger sizes (different heads, windows, global blocks and position-embedding backgrounds) on both paths.
    Opt in: ``make test-slow`` in the full lane."""
    pytest.importorskip("sam2", reason="the official sam2 package (extra emergence[sam2], needs torchvision) is absent")
    torch.manual_seed(4)
    seg = OfficialSam2Segmenter.from_config(f"configs/sam2.1/sam2.1_hiera_{short}.yaml", checkpoint="random")
    with torch.no_grad():
        for p in seg.predictor.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / f"sam2.1_hiera_{size}.pt"
    torch.save({"model": seg.predictor.model.state_dict()}, path)
    del seg
    official, ours = build_segmenter(f"sam2-official:{path}"), build_segmenter(f"sam2:{path}")
    image = (np.random.RandomState(6).rand(70, 50, 3) * 255).astype(np.uint8)
    official.set_image(image)
    ours.set_image(image)
    points, labels, _ = _prompts()
    points = points * np.float32([50 / 140, 70 / 90])
    m_off, s_off = official.predict(points, labels)
    m_ours, s_ours = ours.predict(points, labels)
    assert np.array_equal(m_off, m_ours)
    assert np.abs(s_off - s_ours).max() <= 1e-6
