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
