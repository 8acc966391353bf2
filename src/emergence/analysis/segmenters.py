"""Step 5: promptable segmenters behind one small protocol.

A segmenter sees one image (:meth:`Segmenter.set_image`, which computes any image embedding ONCE), then decodes
batches of prompts (:meth:`Segmenter.predict`). :func:`segment_prompts` decodes each distinct prompt of a sample once,
in as few batched calls as the prompts' shapes allow.

Three implementations:

``Sam2Segmenter`` (``"sam2"``, the default)
    transformers' ``Sam2Model`` with our own pre/post-processing, so it needs no torchvision: resize to the model's
    square input (bilinear, antialiased, rounded to 8-bit as the image processor does), ImageNet normalisation, point
    and box coordinates scaled per axis, low-resolution logits upsampled bilinearly to the original size and
    thresholded at 0. ``tests/test_analysis.py`` checks it against ``Sam2Processor`` where torchvision exists.
    An official checkpoint file loads on this path too (``"sam2:/path/sam2.1_hiera_large.pt"``, converted by
    :mod:`.sam2_weights`); with ``preprocessing="official"`` (the default for such a file) its masks equal the
    official predictor's bit for bit (``tests/test_official_sam2.py``).
``OfficialSam2Segmenter`` (``"sam2-official"``)
    the official ``sam2`` package's ``SAM2ImagePredictor`` (extra ``emergence[sam2]``, which needs torchvision), built
    from the package's own model config and a local checkpoint (``"sam2-official:/path/sam2.1_hiera_large.pt"``: the
    config is read from the file name) or from a hub id with network access.
``ClassicalSegmenter`` (``"classical"``)
    OpenCV, no weights, for offline CPU use: three masks per prompt — a tight and a loose colour flood fill from the
    positive points, and the foreground component (pixels unlike the image border's dominant colours) that holds
    them. Scores are stability scores (IoU of the mask with the mask at 1.5x its tolerance).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import EmergenceError, check_device, require
from ..images import image_digest, load_image
from .prompts import PointPrompt, PromptBatch

__all__ = [
    "Segmenter",
    "ClassicalSegmenter",
    "Sam2Segmenter",
    "OfficialSam2Segmenter",
    "build_segmenter",
    "official_sam2_config",
    "segment_prompts",
    "DEFAULT_SAM2",
]

DEFAULT_SAM2 = "facebook/sam2.1-hiera-large"


@runtime_checkable
class Segmenter(Protocol):
    """What the analyzer needs from a segmenter.

    ``set_image`` is called once per image; ``predict`` then decodes ``N`` prompts of ``P`` points each.
    """

    def set_image(self, image: Any) -> None: ...

    def predict(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None = None,
        multimask: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Args: ``points [N, P, 2]`` (x, y) original pixels, ``labels [N, P]`` (1 positive, 0 negative),
        ``boxes [N, 4]`` (x0, y0, x1, y1). Returns ``masks [N, K, H, W]`` bool and ``scores [N, K]`` float32."""
        ...


def _check_prompts(points, labels, boxes) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, int]:
    if points is None and boxes is None:
        raise ValueError("give points, boxes, or both")
    n = None
    if points is not None:
        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 3 or points.shape[-1] != 2:
            raise ValueError(f"points must be [N, P, 2] (x, y), got shape {points.shape}")
        labels = np.ones(points.shape[:2], np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        if labels.shape != points.shape[:2]:
            raise ValueError(f"labels must be [N, P] = {points.shape[:2]}, got {labels.shape}")
        n = points.shape[0]
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or (n is not None and len(boxes) != n):
            raise ValueError(f"boxes must be [N, 4] with N = {n}, got shape {boxes.shape}")
        n = boxes.shape[0]
    return points, labels, boxes, int(n)


# ---------------------------------------------------------------------------------------------------- classical
class ClassicalSegmenter:
    """Flood-fill / foreground-component segmenter seeded at the positive points (OpenCV, CPU, no weights).

    Args:
        tolerance: per-channel CIELAB tolerance of the tight flood fill (the loose one uses 2.5x).
        background_tolerance: CIELAB distance under which a pixel counts as one of the border's dominant colours.
        method: ``"floodfill"`` (default) or ``"grabcut"`` (GrabCut initialised from the flood-fill masks; slower).
    """

    num_masks = 3

    def __init__(self, tolerance: float = 10.0, background_tolerance: float = 14.0, method: str = "floodfill") -> None:
        if method not in ("floodfill", "grabcut"):
            raise ValueError(f"method={method!r} is not one of 'floodfill', 'grabcut'")
        self.tolerance = float(tolerance)
        self.background_tolerance = float(background_tolerance)
        self.method = method
        self.embedding_calls = 0
        self.decode_calls = 0
        self._rgb: np.ndarray | None = None

    def set_image(self, image: Any) -> None:
        import cv2

        self._rgb = np.ascontiguousarray(np.asarray(load_image(image)))
        self._lab = cv2.cvtColor(self._rgb, cv2.COLOR_RGB2LAB)
        self._foreground_cache: dict[float, np.ndarray] = {}
        self.embedding_calls += 1

    @property
    def image_size(self) -> tuple[int, int]:
        if self._rgb is None:
            raise EmergenceError("call set_image(image) before predict()")
        return self._rgb.shape[0], self._rgb.shape[1]

    def _flood(self, seeds: np.ndarray, tol: float) -> np.ndarray:
        import cv2

        h, w = self.image_size
        out = np.zeros((h, w), bool)
        for x, y in seeds:
            x, y = int(np.clip(round(float(x)), 0, w - 1)), int(np.clip(round(float(y)), 0, h - 1))
            if out[y, x]:
                continue
            ff = np.zeros((h + 2, w + 2), np.uint8)
            flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (255 << 8)
            cv2.floodFill(self._lab.copy(), ff, (x, y), 0, (tol,) * 3, (tol,) * 3, flags)
            out |= ff[1:-1, 1:-1] > 0
        return out

    def _foreground(self, tol: float) -> np.ndarray:
        if tol in self._foreground_cache:
            return self._foreground_cache[tol]
        lab = self._lab.astype(np.int16)
        border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
        q = border // 8
        keys, counts = np.unique(q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2], return_counts=True)
        order = np.argsort(-counts)
        background = np.zeros(lab.shape[:2], bool)
        covered = 0
        for k in order[:4]:
            members = border[(q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2]) == keys[k]]
            colour = members.mean(0)
            background |= np.abs(lab - colour).max(-1) <= tol
            covered += counts[k]
            if covered >= 0.8 * len(border):
                break
        self._foreground_cache[tol] = ~background
        return ~background

    def _component(self, fg: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        labels, _ = ndimage.label(fg)
        h, w = fg.shape
        keep = set()
        for x, y in seeds:
            x, y = int(np.clip(round(float(x)), 0, w - 1)), int(np.clip(round(float(y)), 0, h - 1))
            if labels[y, x]:
                keep.add(int(labels[y, x]))
        return np.isin(labels, sorted(keep)) if keep else np.zeros_like(fg)

    def _masks(self, pts: np.ndarray, lab: np.ndarray, box: np.ndarray | None, scale: float) -> list[np.ndarray]:
        pos, neg = pts[lab == 1], pts[lab == 0]
        if len(pos) == 0 and box is not None:  # box only: seed at its centre
            pos = np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]], np.float32)
        t = self.tolerance * scale
        tight, loose = self._flood(pos, t), self._flood(pos, 2.5 * t)
        obj = self._component(self._foreground(self.background_tolerance * scale), pos)
        if not obj.any():
            obj = loose
        masks = [tight, loose, obj]
        if len(neg):
            masks = [m & ~self._flood(neg, t) for m in masks]
        if box is not None:
            h, w = self.image_size
            inside = np.zeros((h, w), bool)
            x0, y0, x1, y1 = np.clip(np.round(box).astype(int), 0, [w - 1, h - 1, w - 1, h - 1])
            inside[y0: y1 + 1, x0: x1 + 1] = True
            masks = [m & inside for m in masks]
        return masks

    def _grabcut(self, mask: np.ndarray, sure: np.ndarray) -> np.ndarray:
        import cv2

        if not mask.any() or mask.all():
            return mask
        gc = np.where(mask, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        gc[sure] = cv2.GC_FGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(cv2.cvtColor(self._rgb, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
        return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)

    def predict(self, points, labels, boxes=None, multimask: bool = True) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.image_size
        points, labels, boxes, n = _check_prompts(points, labels, boxes)
        self.decode_calls += 1
        all_masks = np.zeros((n, self.num_masks, h, w), bool)
        scores = np.zeros((n, self.num_masks), np.float32)
        for i in range(n):
            pts = points[i] if points is not None else np.zeros((0, 2), np.float32)
            lab = labels[i] if labels is not None else np.zeros(0, np.int64)
            box = boxes[i] if boxes is not None else None
            masks = self._masks(pts, lab, box, 1.0)
            wider = self._masks(pts, lab, box, 1.5)
            if self.method == "grabcut":
                seed = self._flood(pts[lab == 1], 0.0) if (lab == 1).any() else np.zeros((h, w), bool)
                masks = [self._grabcut(m, seed) for m in masks]
            for k, (m, m2) in enumerate(zip(masks, wider)):
                union = (m | m2).sum()
                all_masks[i, k] = m
                scores[i, k] = (m & m2).sum() / union if union else 0.0
        if not multimask:
            best = scores.argmax(1)
            return all_masks[np.arange(n), best][:, None], scores[np.arange(n), best][:, None]
        return all_masks, scores


# ---------------------------------------------------------------------------------------------------- SAM2 (HF)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Sam2Segmenter:
    """SAM2 through transformers' ``Sam2Model``, without torchvision.

    Args:
        model: a ``transformers.Sam2Model`` (eval mode is set).
        batch_size: prompts per decoder call.
        mask_threshold: logit threshold of the upsampled masks (0, as ``Sam2Processor.post_process_masks``).
        preprocessing: ``"processor"`` resizes as ``Sam2Processor`` does (the resized image rounded to 8 bits);
            ``"official"`` as the official package's ``SAM2Transforms`` (scaled to [0, 1], then resized, no
            rounding). On the same weights, ``"official"`` gives the official predictor's masks bit for bit.
        cache_images: image embeddings kept, by the image's pixels, for images given again (a sweep's templates of
            one image): the same image is embedded once (``embedding_calls`` counts the embeddings computed).
    """

    PREPROCESSING = ("processor", "official")

    def __init__(self, model: Any, batch_size: int = 64, mask_threshold: float = 0.0,
                 preprocessing: str = "processor", cache_images: int = 8) -> None:
        if preprocessing not in self.PREPROCESSING:
            raise ValueError(f"preprocessing={preprocessing!r}: use one of {self.PREPROCESSING}")
        self.model = model.eval()
        self.batch_size = int(batch_size)
        self.mask_threshold = float(mask_threshold)
        self.preprocessing = preprocessing
        size = model.config.prompt_encoder_config.image_size
        self.input_size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.embedding_calls = 0
        self.decode_calls = 0
        self._embeddings = None
        self._size: tuple[int, int] | None = None
        self.cache_images = max(0, int(cache_images))
        self._cache: dict[bytes, Any] = {}  # pixels' digest -> embeddings, oldest first

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = DEFAULT_SAM2, device: str | None = None,
                        dtype: Any = None, **kwargs: Any) -> Sam2Segmenter:
        """Load ``Sam2Model`` from a hub id or a local folder (offline: a local folder, or a cached hub id), or an
        official checkpoint file (``sam2.1_hiera_large.pt``; converted by
        :func:`~emergence.analysis.sam2_weights.sam2_model_from_official`, with ``preprocessing="official"`` unless
        given, so that it segments exactly as ``"sam2-official"`` on the same file)."""
        from transformers import Sam2Model

        if str(name_or_path).endswith(".pt"):
            from .sam2_weights import sam2_model_from_official

            model = sam2_model_from_official(name_or_path)
            if dtype is not None:
                model = model.to(dtype)
            if device is not None:
                model = model.to(device)
            kwargs.setdefault("preprocessing", "official")
            return cls(model, **kwargs)
        try:
            model = Sam2Model.from_pretrained(name_or_path, dtype=dtype)
        except OSError as exc:
            raise EmergenceError(
                f"cannot load SAM2 weights {str(name_or_path)!r}: {exc}. Pass a local folder saved with "
                "Sam2Model.save_pretrained (or a hub id with network access), or use the offline "
                "segmenter='classical'."
            ) from exc
        if device is not None:
            model = model.to(device)
        return cls(model, **kwargs)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def preprocess(self, image: Any) -> Any:
        """``[1, 3, S, S]`` pixel values as ``Sam2Processor`` makes them (S = the model's input size)."""
        import torch
        import torch.nn.functional as F

        rgb = np.array(load_image(image))  # a writable copy
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
        s = self.input_size
        if self.preprocessing == "official":
            x = F.interpolate(x / 255.0, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        else:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            x = x.round().clamp(0, 255) / 255.0
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        dtype = next(self.model.parameters()).dtype
        return ((x - mean) / std).to(device=self.device, dtype=dtype)

    def set_image(self, image: Any) -> None:
        import torch

        image = load_image(image)
        self._size = (image.height, image.width)
        digest = image_digest(image)
        cached = self._cache.pop(digest, None)
        if cached is not None:
            self._cache[digest] = self._embeddings = cached  # most recent last
            return
        with torch.inference_mode():
            self._embeddings = self.model.get_image_embeddings(self.preprocess(image))
        self.embedding_calls += 1
        if self.cache_images:
            self._cache[digest] = self._embeddings
            while len(self._cache) > self.cache_images:
                self._cache.pop(next(iter(self._cache)))

    def predict(self, points, labels, boxes=None, multimask: bool = True) -> tuple[np.ndarray, np.ndarray]:
        import torch
        import torch.nn.functional as F

        if self._embeddings is None or self._size is None:
            raise EmergenceError("call set_image(image) before predict()")
        h, w = self._size
        points, labels, boxes, n = _check_prompts(points, labels, boxes)
        scale = np.array([self.input_size / w, self.input_size / h], np.float32)
        dtype = next(self.model.parameters()).dtype
        out_masks, out_scores = [], []
        for lo in range(0, n, self.batch_size):
            hi = min(n, lo + self.batch_size)
            kwargs: dict[str, Any] = {}
            if points is not None and points.shape[1] > 0:
                kwargs["input_points"] = torch.from_numpy(points[lo:hi] * scale)[None].to(self.device, dtype)
                kwargs["input_labels"] = torch.from_numpy(labels[lo:hi])[None].to(self.device)
            if boxes is not None:
                kwargs["input_boxes"] = torch.from_numpy(boxes[lo:hi] * np.tile(scale, 2))[None].to(self.device, dtype)
            with torch.inference_mode():
                out = self.model(image_embeddings=self._embeddings, multimask_output=multimask, **kwargs)
            self.decode_calls += 1
            low = out.pred_masks[0].float()  # [n, K, h', w']
            up = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
            out_masks.append((up > self.mask_threshold).cpu().numpy())
            out_scores.append(out.iou_scores[0].float().cpu().numpy())
        return np.concatenate(out_masks), np.concatenate(out_scores).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- official sam2
class OfficialSam2Segmenter:
    """The official ``sam2`` package's ``SAM2ImagePredictor`` (``pip install 'emergence[sam2]'``; needs torchvision).

    Args:
        predictor: a ``sam2.sam2_image_predictor.SAM2ImagePredictor``.
    """

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self.embedding_calls = 0
        self.decode_calls = 0
        self._size: tuple[int, int] | None = None

    @classmethod
    def from_pretrained(cls, model_id: str = "facebook/sam2.1-hiera-large", device: str | None = None,
                        **kwargs: Any) -> OfficialSam2Segmenter:
        """A hub id (downloads through ``huggingface_hub``), or a local official checkpoint file (``.pt``), whose
        model config is chosen by its file name (:func:`official_sam2_config`)."""
        if str(model_id).endswith(".pt") or os.path.exists(model_id):
            return cls.from_config(official_sam2_config(model_id), checkpoint=model_id, device=device, **kwargs)
        module = require("sam2.sam2_image_predictor", "sam2", "segmenter='sam2-official'")
        if device is not None:
            kwargs["device"] = device
        try:
            return cls(module.SAM2ImagePredictor.from_pretrained(model_id, **kwargs))
        except OSError as exc:
            raise EmergenceError(
                f"cannot load the official SAM2 {model_id!r}: {exc}. Offline, pass a local checkpoint file: "
                "segmenter='sam2-official:/path/to/sam2.1_hiera_large.pt'."
            ) from exc

    @classmethod
    def from_config(cls, config: str = "configs/sam2.1/sam2.1_hiera_l.yaml",
                    checkpoint: str | os.PathLike | None = None, device: str | None = None,
                    **kwargs: Any) -> OfficialSam2Segmenter:
        """Build with the package's own ``build_sam2`` from one of its model configs (``configs/sam2.1/
        sam2.1_hiera_{t,s,b+,l}.yaml``, or ``configs/sam2/...`` for SAM 2.0) and a local checkpoint file.

        Args:
            checkpoint: the official ``.pt`` file. ``"random"`` builds random weights, for tests and timing only
                (their masks mean nothing); ``None`` is refused.
            device: ``"cpu"`` by default (the package's own default is CUDA).
        """
        if checkpoint is None:
            raise ValueError("from_config needs checkpoint=<path to the official .pt file>; pass checkpoint='random' "
                             "only for tests and timing (random weights segment nothing meaningful)")
        build = require("sam2.build_sam", "sam2", "segmenter='sam2-official'")
        module = require("sam2.sam2_image_predictor", "sam2", "segmenter='sam2-official'")
        path = None if str(checkpoint) == "random" else os.fspath(checkpoint)
        if path is not None and not os.path.isfile(path):
            raise EmergenceError(f"SAM2 checkpoint {path!r} does not exist; pass the official .pt file")
        model = build.build_sam2(config, ckpt_path=path, device=device or "cpu", mode="eval")
        return cls(module.SAM2ImagePredictor(model, **kwargs))

    def set_image(self, image: Any) -> None:
        rgb = np.array(load_image(image))  # a writable copy (torchvision warns on read-only arrays)
        self.predictor.set_image(rgb)
        self._size = rgb.shape[:2]
        self.embedding_calls += 1

    def predict(self, points, labels, boxes=None, multimask: bool = True) -> tuple[np.ndarray, np.ndarray]:
        if self._size is None:
            raise EmergenceError("call set_image(image) before predict()")
        points, labels, boxes, n = _check_prompts(points, labels, boxes)
        masks, scores, _ = self.predictor.predict(
            point_coords=points, point_labels=labels, box=boxes, multimask_output=multimask, return_logits=False,
        )
        self.decode_calls += 1
        masks, scores = np.asarray(masks), np.asarray(scores)
        if masks.ndim == 3:  # the predictor squeezes a batch of one
            masks, scores = masks[None], scores[None]
        return masks.astype(bool), scores.astype(np.float32)


#: official checkpoint file names -> the package's config of that size
_OFFICIAL_SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}


def official_sam2_config(checkpoint: str | os.PathLike) -> str:
    """The official package's model config for an official checkpoint file, by its name:
    ``sam2.1_hiera_large.pt`` -> ``configs/sam2.1/sam2.1_hiera_l.yaml``, ``sam2_hiera_tiny.pt`` ->
    ``configs/sam2/sam2_hiera_t.yaml``.

    Raises:
        ValueError: the name is not one of the official ones (use :meth:`OfficialSam2Segmenter.from_config`).
    """
    name = os.path.basename(os.fspath(checkpoint))
    stem, _, size = name.removesuffix(".pt").partition("_hiera_")
    if stem not in ("sam2", "sam2.1") or size not in _OFFICIAL_SIZES:
        raise ValueError(f"cannot tell the SAM2 model config of {name!r} (official names: sam2.1_hiera_large.pt, "
                         "..._base_plus.pt, ..._small.pt, ..._tiny.pt); call OfficialSam2Segmenter.from_config("
                         "config, checkpoint=...) with the package's config")
    return f"configs/{stem}/{stem}_hiera_{_OFFICIAL_SIZES[size]}.yaml"


# ---------------------------------------------------------------------------------------------------- helpers
def build_segmenter(spec: str | Segmenter | None, device: str | None = None) -> Segmenter:
    """A segmenter from a name: ``"classical"``, ``"sam2"`` (transformers' ``Sam2Model``, default weights),
    ``"sam2:<hub id or folder>"``, ``"sam2-official"`` (the official package) or ``"sam2-official:<hub id or local
    .pt checkpoint>"``; an object with ``set_image``/``predict`` is returned as is. ``"sam2"`` always means the
    transformers model, whether or not the official package is installed."""
    if spec is None:
        spec = "sam2"
    if not isinstance(spec, str):
        if not isinstance(spec, Segmenter):
            raise TypeError(f"segmenter must be a name or have set_image() and predict(), got {type(spec).__name__}")
        return spec
    kind, _, arg = spec.partition(":")
    check_device(device)
    if kind == "classical":
        return ClassicalSegmenter()
    if kind == "sam2":
        return Sam2Segmenter.from_pretrained(arg or DEFAULT_SAM2, device=device)
    if kind == "sam2-official":
        return OfficialSam2Segmenter.from_pretrained(arg or "facebook/sam2.1-hiera-large", device=device)
    raise ValueError(f"unknown segmenter {spec!r}: use 'sam2', 'sam2:<id or folder>', 'sam2-official' or 'classical'")


def segment_prompts(segmenter: Segmenter, prompts: Sequence[PointPrompt], multimask: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``prompts`` (on the image last given to ``set_image``): each distinct prompt once, prompts of the same
    shape in one batched call.

    Returns:
        ``masks [N, K, H, W]`` bool and ``scores [N, K]`` float32, in the order of ``prompts``.
    """
    if not prompts:
        raise ValueError("no prompts to segment")
    batch = PromptBatch.of(list(prompts))
    groups: dict[tuple[int, bool], list[int]] = {}
    for i, p in enumerate(batch.unique):
        groups.setdefault((len(p.points), p.box is not None), []).append(i)
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for (n_points, has_box), members in groups.items():
        pts = np.stack([batch.unique[i].points for i in members]) if n_points else None
        labels = np.stack([batch.unique[i].labels for i in members]) if n_points else None
        boxes = np.stack([batch.unique[i].box for i in members]) if has_box else None
        masks, scores = segmenter.predict(pts, labels, boxes, multimask=multimask)
        for j, i in enumerate(members):
            results[i] = (masks[j], scores[j])
    masks = np.stack([results[i][0] for i in batch.index])
    scores = np.stack([results[i][1] for i in batch.index])
    return masks, scores
