"""Where the visual tokens are: sequence positions, token grids, and the original-image pixels each token covers.

A :class:`VisualLayout` is a list of :class:`View`\\ s. A view is one regular grid of visual tokens (the whole image
for LLaVA-1.5, the base image or the unpadded tile mosaic for LLaVA-NeXT, the tile mosaic or the global image for
Idefics3) together with the axis-aligned box, in ORIGINAL image pixels, that the full grid covers. Processors resize,
pad, crop and tile with axis-aligned scalings and shifts only, so this box is exact: it may reach outside the image
(padding) or stop inside it (centre crop). Tokens that belong to no grid (newline tokens, separators, a CLS token)
keep their sequence position but are not rendered.

Rendering a ``[V]`` vector: each view's grid of values is sampled bicubically (``align_corners=False``, the
convention of image resizers) at the centres of the original pixels it covers. Where several views cover a pixel
(a global image and a tile), ``"mean"`` averages them with equal weight; ``"density"`` sums each view's value divided
by its token area (attention mass per pixel, so the heatmap integrates to the total attention); ``"global"``/``"tiles"``
keep one kind of view (with the other as fallback where it covers nothing). The default ``"auto"`` is ``"density"``
when the views have cells of different sizes (a coarse global image over fine tiles) and ``"mean"`` otherwise.
Pixels that no view covers (cropped away) get ``fill`` (default: the minimum covered value, so an argmax never lands
there and no NaN appears).

Several images, or the frames of a video, in one prompt: a *composite* layout (:meth:`VisualLayout.combine`) holds one
part per image, or per video frame (or group of frames read as one temporal patch), each an ordinary single-image
layout that carries its ``item`` (the image's or video's index among the prompt's media, in prompt order) and, for
video, its ``frames``. The composite's ``[V]`` token order is every part's tokens in sequence order; nothing is
rendered through the composite itself: :meth:`VisualLayout.part` picks one image or frame, and
:meth:`VisualLayout.members` gives its tokens' indices into ``[V]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LayoutError

__all__ = ["View", "VisualLayout", "FuseRule", "working_size"]

FuseRule = Literal["auto", "mean", "density", "global", "tiles"]
_FUSE_RULES = ("auto", "mean", "density", "global", "tiles")


@dataclass(frozen=True)
class View:
    """One regular grid of visual tokens and the original-image box it covers.

    Attributes:
        name: e.g. ``"image"``, ``"base"``, ``"tiles"``, ``"global"``.
        index: ``[rows, cols]`` int array; entry = index into the layout's ``[V]`` token order, ``-1`` = no token.
        box: ``(x0, y0, x1, y1)`` in original-image pixels covered by the whole grid (float; may exceed the image).
        kind: ``"global"`` for a view of the whole image at low resolution, ``"tiles"`` for high-resolution crops.
    """

    name: str
    index: np.ndarray
    box: tuple[float, float, float, float]
    kind: Literal["global", "tiles"] = "global"

    def __post_init__(self) -> None:
        index = np.asarray(self.index)
        if index.ndim != 2 or index.size == 0:
            raise LayoutError(f"view {self.name!r}: index must be a non-empty 2-D grid, got shape {index.shape}")
        x0, y0, x1, y1 = self.box
        if not (x1 > x0 and y1 > y0):
            raise LayoutError(f"view {self.name!r}: empty box {self.box}")
        object.__setattr__(self, "index", index.astype(np.int64))

    @property
    def grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of the token grid."""
        return int(self.index.shape[0]), int(self.index.shape[1])

    @property
    def cell_size(self) -> tuple[float, float]:
        """``(width, height)`` of one token cell in original pixels."""
        rows, cols = self.grid
        x0, y0, x1, y1 = self.box
        return (x1 - x0) / cols, (y1 - y0) / rows


def working_size(image_size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``(height, width)`` of the grid maps are rendered on: the image's size, scaled down (aspect ratio kept) so that
    its longer side is at most ``max_side`` pixels; ``None`` = the image's own size."""
    h, w = (int(v) for v in image_size)
    if max_side is None or max(h, w) <= max_side:
        return h, w
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


@dataclass
class VisualLayout:
    """Visual tokens of one image in one prompt.

    Attributes:
        positions: ``[V]`` sequence positions of the visual tokens (keys that the capture keeps), ascending. For
            cross-attention models (Mllama) these index the cross-attention keys (the vision tokens), not the text.
        image_size: ``(height, width)`` of the ORIGINAL image (of a composite: its first part's).
        views: the token grids (see module docstring).
        family: the layout family that built it (``"llava"``, ``"llava_next"``, ``"qwen2_vl"``, ``"idefics3"``...).
        token_kind: ``[V]`` strings, ``"patch"`` for grid tokens, otherwise e.g. ``"newline"``, ``"cls"``.
        meta: family-specific facts (tile grid, canvas size...), JSON-serialisable. ``meta["not_spatial"]`` says why
            a layout without views has no place in the image (learned query or latent tokens).
        item: which of the prompt's images / videos this layout places (0 for a prompt with one image).
        frames: ``(first, stop)`` frame range of the video ``item`` that these tokens read (``None`` for an image).
        parts: of a composite layout, one single-image layout per image or video frame (module docstring).

    A layout without views is *not spatial*: its tokens are captured, but :meth:`render` and everything drawn in
    the image (heatmaps, the analyzer) raise a :class:`LayoutError` that gives the reason.
    """

    positions: np.ndarray
    image_size: tuple[int, int]
    views: list[View]
    family: str
    token_kind: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    item: int = 0
    frames: tuple[int, int] | None = None
    parts: list[VisualLayout] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.item = int(self.item)
        if self.frames is not None:
            f0, f1 = (int(v) for v in self.frames)
            if not 0 <= f0 < f1:
                raise LayoutError(f"frames must be a (first, stop) range with 0 <= first < stop, got {self.frames}")
            self.frames = (f0, f1)
        if self.parts and self.views:
            raise LayoutError("a composite layout (with parts) has no views of its own; each part has its views")
        self.positions = np.asarray(self.positions, dtype=np.int64).reshape(-1)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.image_size[0] <= 0 or self.image_size[1] <= 0:
            raise LayoutError(f"image_size must be positive (height, width), got {self.image_size}")
        n = len(self.positions)
        if n == 0:
            raise LayoutError("a layout needs at least one visual token")
        if np.any(np.diff(self.positions) <= 0):
            raise LayoutError("visual positions must be strictly increasing")
        covered = np.zeros(n, dtype=bool)
        for view in self.views:
            idx = view.index[view.index >= 0]
            if idx.size and (idx.max() >= n):
                raise LayoutError(f"view {view.name!r} refers to token {int(idx.max())} but the layout has {n}")
            if np.any(covered[idx]):
                raise LayoutError(f"view {view.name!r} reuses tokens of another view")
            covered[idx] = True
        if self.parts:
            kinds = np.full(n, "other", dtype=object)
            for k, part in enumerate(self.parts):
                where = np.searchsorted(self.positions, part.positions)
                if np.any(where >= n) or np.any(self.positions[np.minimum(where, n - 1)] != part.positions):
                    raise LayoutError(f"part {k} has visual positions that the composite layout does not hold")
                if np.any(covered[where]):
                    raise LayoutError(f"part {k} shares visual tokens with another part")
                covered[where] = True
                kinds[where] = part.token_kind
            if self.token_kind is None:
                self.token_kind = kinds
        if self.token_kind is None:
            self.token_kind = np.where(covered, "patch", "other")
        self.token_kind = np.asarray(self.token_kind, dtype=object)
        if len(self.token_kind) != n:
            raise LayoutError(f"token_kind has {len(self.token_kind)} entries for {n} visual tokens")

    # ------------------------------------------------------------------ composite
    @classmethod
    def combine(cls, parts: Sequence[VisualLayout], family: str | None = None,
                positions: np.ndarray | Sequence[int] | None = None, meta: dict[str, Any] | None = None
                ) -> VisualLayout:
        """A composite layout of several images or video frames of one prompt.

        Args:
            parts: single-image layouts (each with its ``item`` and, for video, ``frames``), disjoint positions.
            family: default: the first part's family.
            positions: every visual position of the composite (default: the union of the parts'); positions that
                belong to no part (a separator after a video's last frame) are captured but never rendered.
            meta: extra metadata.
        """
        parts = list(parts)
        if not parts:
            raise LayoutError("a composite layout needs at least one part")
        if any(p.parts for p in parts):
            raise LayoutError("parts of a composite layout must be single-image layouts")
        keys = [(p.item, p.frames) for p in parts]
        if len(set(keys)) != len(keys):
            raise LayoutError(f"two parts place the same image / frames: {keys}")
        union = np.concatenate([p.positions for p in parts])
        if len(np.unique(union)) != len(union):
            raise LayoutError("parts of a composite layout share visual positions")
        pos = np.unique(union) if positions is None else np.asarray(positions, dtype=np.int64)
        info = {"items": len({p.item for p in parts}), "parts": len(parts), **(meta or {})}
        return cls(pos, parts[0].image_size, [], family=family or parts[0].family, meta=info, parts=parts)

    @property
    def is_composite(self) -> bool:
        """Whether the layout holds several images or video frames (:attr:`parts`)."""
        return bool(self.parts)

    @property
    def items(self) -> list[int]:
        """The media indices (images / videos in prompt order) this layout places."""
        return sorted({p.item for p in self.parts}) if self.parts else [self.item]

    def members(self, part: int | VisualLayout) -> np.ndarray:
        """``[V_k]`` indices into this layout's ``[V]`` tokens of one part (index or the part itself)."""
        layout = self.parts[part] if isinstance(part, (int, np.integer)) else part
        return np.searchsorted(self.positions, layout.positions)

    def part_index(self, image: int | None = None, frame: int | None = None) -> int | None:
        """Index in :attr:`parts` of image ``image`` (a prompt's image or video, by its index among the media) or,
        for a video, of the part that reads ``frame``; ``None`` for a single-image layout when it is that image.

        Raises:
            LayoutError: no such image or frame (the message lists what the layout holds), or the choice is
                ambiguous (a composite needs ``image`` or ``frame``; a video needs ``frame``).
        """
        if not self.parts:
            if image not in (None, self.item) or (frame is not None and not self._has_frame(self, frame)):
                raise LayoutError(f"this layout places one {'video part' if self.frames else 'image'} "
                                  f"(image={self.item}{f', frames={self.frames}' if self.frames else ''}); "
                                  f"image={image}, frame={frame} is not in it")
            return None
        found = [k for k, p in enumerate(self.parts) if (image is None or p.item == image)
                 and (frame is None or self._has_frame(p, frame))]
        held = ", ".join(f"image={p.item}" + (f" frames {p.frames[0]}..{p.frames[1] - 1}" if p.frames else "")
                         for p in self.parts)
        if not found:
            raise LayoutError(f"no part of this layout is image={image}, frame={frame}; it holds: {held}")
        if len(found) > 1:
            what = "frame=f" if image is not None else "image=k (and frame=f for a video)"
            raise LayoutError(f"this prompt holds {len(found)} images / frames matching image={image}, frame={frame}; "
                              f"choose one with {what}. It holds: {held}")
        return found[0]

    def shifted(self, offset: int) -> VisualLayout:
        """The same layout ``offset`` sequence positions later (a prompt left-padded by ``offset`` tokens in a
        batch); its parts move with it."""
        from dataclasses import replace

        if offset == 0:
            return self
        return replace(self, positions=np.asarray(self.positions) + int(offset),
                       parts=[p.shifted(offset) for p in self.parts])

    def keep_frames(self, frames: Sequence[int]) -> VisualLayout:
        """The composite restricted to its images and to the video parts that read one of ``frames``.

        Raises:
            ValueError: the layout holds no video, or a frame is not in it.
        """
        wanted = {int(f) for f in frames}
        if not wanted:
            raise ValueError("frames=[] keeps no frame; pass None for every frame, or the frame indices to keep")
        videos = [p for p in self.parts if p.frames is not None]
        if not videos:
            raise ValueError("frames=... selects video frames; this prompt holds no video")
        held = sorted({f for p in videos for f in range(*p.frames)})
        missing = sorted(wanted - set(held))
        if missing:
            raise ValueError(f"frames {missing} are not in the video (frames {held[0]}..{held[-1]})")
        parts = [p for p in self.parts if p.frames is None or wanted & set(range(*p.frames))]
        return VisualLayout.combine(parts, family=self.family, meta={"frames_kept": sorted(wanted)})

    @staticmethod
    def _has_frame(layout: VisualLayout, frame: int) -> bool:
        return layout.frames is not None and layout.frames[0] <= int(frame) < layout.frames[1]

    def part(self, image: int | None = None, frame: int | None = None) -> VisualLayout:
        """The single-image layout of image ``image`` / video frame ``frame`` (``self`` for a single-image layout)."""
        k = self.part_index(image, frame)
        return self if k is None else self.parts[k]

    # ------------------------------------------------------------------ facts
    @property
    def spatial(self) -> bool:
        """Whether the visual tokens sit in the image (at least one view; every part's, for a composite)."""
        return all(p.spatial for p in self.parts) if self.parts else bool(self.views)

    def _require_spatial(self) -> None:
        if self.parts:
            held = ", ".join(f"image={p.item}" + (f" frames {p.frames[0]}..{p.frames[1] - 1}" if p.frames else "")
                             for p in self.parts)
            raise LayoutError(f"this layout holds {len(self.parts)} images / video frames ({held}); render one of "
                              "them: layout.part(image=k, frame=f).render(values[layout.members(...)]), or "
                              "run.heatmap(t, image=k, frame=f)")
        if not self.views:
            reason = self.meta.get("not_spatial", "the layout has no token grid")
            raise LayoutError(f"the visual tokens of this {self.family} layout have no place in the image ({reason}); "
                              "their attention is captured (run.attention) but cannot be drawn or segmented")

    @property
    def default_fuse(self) -> str:
        """The fusion rule ``fuse="auto"`` uses: ``"density"`` (attention mass per pixel) when the views have cells of
        different sizes (a coarse global image over fine tiles: equal weights would let the coarse view pull a peak
        off the object on tall or narrow images), else ``"mean"`` (one view, or views of one resolution)."""
        areas = {round(v.cell_size[0] * v.cell_size[1], 6) for v in self.views}
        return "density" if len(areas) > 1 else "mean"

    @property
    def num_tokens(self) -> int:
        """``V``, the number of visual tokens (grid tokens and separators)."""
        return int(len(self.positions))

    @property
    def patch_mask(self) -> np.ndarray:
        """``[V]`` bool, True for tokens that sit in a view's grid."""
        return np.asarray(self.token_kind == "patch")

    def token_boxes(self) -> np.ndarray:
        """``[V, 4]`` float ``(x0, y0, x1, y1)`` of each token's cell in original pixels, clipped to the image;
        NaN for tokens outside every grid (newlines, CLS). For a composite, each token's box in its own image."""
        boxes = np.full((self.num_tokens, 4), np.nan)
        for part in self.parts:
            boxes[self.members(part)] = part.token_boxes()
        h, w = self.image_size
        for view in self.views:
            cw, ch = view.cell_size
            rows, cols = np.nonzero(view.index >= 0)
            idx = view.index[rows, cols]
            x0 = view.box[0] + cols * cw
            y0 = view.box[1] + rows * ch
            boxes[idx] = np.stack([x0, y0, x0 + cw, y0 + ch], axis=1)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        return boxes

    def token_grid(self, values: torch.Tensor | np.ndarray, view: int | str = 0) -> np.ndarray:
        """Arrange a ``[V]`` vector on one view's grid: ``[rows, cols]`` float, NaN where the grid has no token."""
        vec = _as_vector(values, self.num_tokens)
        self._require_spatial()
        v = self._view(view)
        out = np.full(v.grid, np.nan)
        ok = v.index >= 0
        out[ok] = vec[v.index[ok]]
        return out

    def _view(self, view: int | str) -> View:
        if isinstance(view, str):
            for v in self.views:
                if v.name == view:
                    return v
            raise KeyError(f"no view named {view!r}; views are {[v.name for v in self.views]}")
        return self.views[view]

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        values: torch.Tensor | np.ndarray | Sequence[float],
        fuse: FuseRule = "auto",
        mode: Literal["bicubic", "bilinear", "nearest"] = "bicubic",
        fill: float | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Render per-token values as a heatmap over the ORIGINAL image.

        Args:
            values: ``[V]`` (one value per visual token) or ``[N, V]`` (rendered independently, batched).
            fuse: how overlapping views combine (module docstring); ``"auto"`` (default) is :attr:`default_fuse`.
            mode: interpolation of the token grid.
            fill: value of pixels no view covers; default the minimum covered value.
            size: ``(height, width)`` of the output; default the original image size. The view boxes are scaled.

        Returns:
            ``[H, W]`` float32 (or ``[N, H, W]``), never NaN.
        """
        if fuse not in _FUSE_RULES:
            raise ValueError(f"fuse={fuse!r} is not one of {_FUSE_RULES}")
        self._require_spatial()
        if fuse == "auto":
            fuse = self.default_fuse
        arr = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
        single = arr.ndim == 1
        arr = arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
        if arr.shape[-1] != self.num_tokens:
            raise LayoutError(f"values have {arr.shape[-1]} entries per map but the layout has {self.num_tokens} tokens")
        if not np.all(np.isfinite(arr)):
            raise LayoutError("values contain NaN or infinity; clean them before rendering")
        out_h, out_w = size or self.image_size
        sy, sx = out_h / self.image_size[0], out_w / self.image_size[1]
        vec = torch.from_numpy(arr).float()
        n = vec.shape[0]

        kinds = {v.kind for v in self.views}
        chosen = self.views
        if fuse in ("global", "tiles") and fuse in kinds:
            chosen = [v for v in self.views if v.kind == fuse]
        total = torch.zeros(n, out_h, out_w)
        weight = torch.zeros(out_h, out_w)
        for view in chosen:
            value, covered = _render_view(vec, view, out_h, out_w, sx, sy, mode)
            if fuse == "density":
                cw, ch = view.cell_size
                value = value / (cw * ch * sx * sy)
            total += value * covered
            weight += covered
        if fuse in ("global", "tiles") and len(chosen) < len(self.views):
            # fallback to the other views where the chosen kind covers nothing
            for view in self.views:
                if view in chosen:
                    continue
                value, covered = _render_view(vec, view, out_h, out_w, sx, sy, mode)
                fallback = covered * (weight == 0)
                total += value * fallback
                weight += fallback
        covered_any = weight > 0
        if fuse == "density":
            heat = total
        else:
            heat = total / weight.clamp(min=1)
        if not bool(covered_any.all()):
            if fill is None:
                if bool(covered_any.any()):
                    fills = heat[:, covered_any].min(dim=1).values
                else:
                    fills = torch.zeros(n)
            else:
                fills = torch.full((n,), float(fill))
            heat = torch.where(covered_any, heat, fills[:, None, None])
        result = heat.numpy().astype(np.float32)
        return result[0] if single else result

    def coverage(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """``[H, W]`` bool: original pixels covered by at least one view (False where the processor cropped);
        ``size`` = ``(height, width)`` of a scaled grid (as in :meth:`render`), sampled at its pixel centres."""
        self._require_spatial()
        h, w = size or self.image_size
        sy, sx = self.image_size[0] / h, self.image_size[1] / w
        covered = np.zeros((h, w), bool)
        for view in self.views:
            x0, y0, x1, y1 = view.box
            xs = (np.arange(w) + 0.5) * sx
            ys = (np.arange(h) + 0.5) * sy
            covered |= ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
        return covered

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (round-trips through :meth:`from_dict`)."""
        extra: dict[str, Any] = {}
        if self.item:
            extra["item"] = self.item
        if self.frames is not None:
            extra["frames"] = list(self.frames)
        if self.parts:
            extra["parts"] = [p.to_dict() for p in self.parts]
        return {**extra,
            "positions": self.positions.tolist(),
            "image_size": list(self.image_size),
            "family": self.family,
            "token_kind": [str(k) for k in self.token_kind],
            "meta": self.meta,
            "views": [
                {"name": v.name, "index": v.index.tolist(), "box": list(v.box), "kind": v.kind} for v in self.views
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisualLayout:
        """Inverse of :meth:`to_dict`."""
        views = [View(v["name"], np.asarray(v["index"]), tuple(v["box"]), v.get("kind", "global")) for v in data["views"]]
        return cls(
            positions=np.asarray(data["positions"]),
            image_size=tuple(data["image_size"]),
            views=views,
            family=data["family"],
            token_kind=np.asarray(data["token_kind"], dtype=object),
            meta=data.get("meta", {}),
            item=data.get("item", 0),
            frames=tuple(data["frames"]) if data.get("frames") is not None else None,
            parts=[cls.from_dict(p) for p in data.get("parts", [])],
        )

    def __repr__(self) -> str:
        if self.parts:
            return (f"VisualLayout(family={self.family!r}, tokens={self.num_tokens}, composite of {len(self.parts)} "
                    f"parts over {len(self.items)} images / videos: [" + "; ".join(
                        f"image={p.item}" + (f" frames={p.frames}" if p.frames else "") + f" {p.num_tokens} tokens"
                        for p in self.parts) + "])")
        grids = ", ".join(f"{v.name}:{v.grid[0]}x{v.grid[1]}" for v in self.views) or "none: not spatial"
        return (
            f"VisualLayout(family={self.family!r}, tokens={self.num_tokens}, "
            f"positions={int(self.positions[0])}..{int(self.positions[-1])}, image_hw={self.image_size}, views=[{grids}])"
        )


def _as_vector(values: torch.Tensor | np.ndarray | Sequence[float], n: int) -> np.ndarray:
    arr = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
    arr = arr.reshape(-1)
    if arr.shape[0] != n:
        raise LayoutError(f"expected {n} values (one per visual token), got {arr.shape[0]}")
    return arr


def _render_view(
    vec: torch.Tensor, view: View, out_h: int, out_w: int, sx: float, sy: float, mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one view's grid at output pixel centres. Returns values ``[N, H, W]`` and coverage ``[H, W]`` (0/1)."""
    rows, cols = view.grid
    index = torch.from_numpy(view.index)
    grid_vals = torch.zeros(vec.shape[0], rows, cols)
    ok = index >= 0
    grid_vals[:, ok] = vec[:, index[ok]]
    if not bool(ok.all()):
        # holes (no token): fill with the view's mean so interpolation does not invent structure
        means = grid_vals[:, ok].mean(dim=1)
        grid_vals[:, ~ok] = means[:, None]
    x0, y0, x1, y1 = view.box
    xs = (torch.arange(out_w, dtype=torch.float64) + 0.5) / sx  # original-pixel x of each output column centre
    ys = (torch.arange(out_h, dtype=torch.float64) + 0.5) / sy
    gx = ((xs - x0) / (x1 - x0)) * 2 - 1  # normalised grid coords, align_corners=False
    gy = ((ys - y0) / (y1 - y0)) * 2 - 1
    covered = ((gy >= -1) & (gy < 1))[:, None] & ((gx >= -1) & (gx < 1))[None, :]
    sample = torch.stack(torch.meshgrid(gy.float(), gx.float(), indexing="ij")[::-1], dim=-1)  # [H, W, 2] (x, y)
    sample = sample.unsqueeze(0).expand(vec.shape[0], -1, -1, -1)
    if rows == 1 and cols == 1:
        value = grid_vals[:, 0, 0][:, None, None].expand(-1, out_h, out_w).clone()
    else:
        value = F.grid_sample(
            grid_vals.unsqueeze(1), sample, mode=mode, padding_mode="border", align_corners=False
        ).squeeze(1)
    return value, covered.float()
