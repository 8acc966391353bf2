"""``ProbeRun``: one generation with its recorded attention over the visual tokens."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .capture.engine import KeepMode
from .errors import EmergenceError
from .layouts.base import FuseRule, VisualLayout

__all__ = ["HeadSelection", "ProbeRun", "reduce_attention"]

#: heads to average: indices used in every chosen layer, ``(layer, head)`` pairs, or ``None`` for all
HeadSelection = Sequence[int] | Sequence[tuple[int, int]] | None

_FORMAT_VERSION = 1
_VISUAL_EXTRAS = ("generic_attention", "gradient")  # extras whose last axis is the visual tokens


@dataclass
class ProbeRun:
    """The answer an MLLM generated for one image and prompt, with its attention over the visual tokens.

    Attributes:
        text: the decoded answer (special tokens removed).
        token_ids: ``[T]`` generated token ids.
        tokens: ``T`` strings, the text each token adds to the answer (``"".join(tokens) == text`` for most
            tokenizers; special tokens give ``""``).
        token_offsets: ``[T, 2]`` character span of each token in ``text``.
        attention: ``[T, L, H, V]`` (keep="heads"), ``[T, L, V]`` (keep="layers") or ``[T, V]`` (keep="mean"):
            attention probabilities from the row of each generated token (see ``convention``) to every visual token.
        layout: where the ``V`` visual tokens sit in the original image.
        layers: the ``L`` language-model layer indices that ``attention`` holds. For cross-attention models
            (Llama-3.2-Vision, ``meta["attention"] == "cross-attention"``) these are the cross-attention layers'
            decoder indices, and ``V`` indexes their keys (each tile's CLS and patch tokens).
        keep: which reduction ``attention`` holds.
        convention: ``"predicting"`` (row that predicts token t) or ``"self"`` (row at token t's own position).
        prompt: the prompt text given by the user (before the chat template).
        prompt_ids: ``[P]`` token ids of the full prompt fed to the model.
        image: the original image (optional; saved with the run). ``None`` for a run over several images or a
            video (see ``media``).
        meta: model name, backend, ``attention`` (``"self-attention"`` or ``"cross-attention"``), dtype,
            generation settings, library versions.
        media: for a prompt with several images or a video: one entry per image / video in prompt order (a PIL
            image, or a video's list of PIL frames); ``[]`` for a one-image run.
        extras: what map methods other than attention read (:mod:`emergence.maps`), recorded when asked with
            ``Probe.generate(methods=[...])``: ``"generic_attention"`` (``attention``'s layout without the ``T``
            axis: the row that starts the answer to a generic prompt; relative attention), ``"tam_logits"``
            ``[S, C]`` and ``"tam_classes"`` ``[C]`` (the final layer's logits of classes ``C`` at every sequence
            position ``0..S-1``; token activation maps), ``"gradient"`` (``attention``'s shape, float32:
            ReLU(gradient x attention), the gradient-weighted attention). Kept by :meth:`save` / :meth:`load`;
            sliced by :meth:`select` along the visual tokens.

    Several images or a video: ``attention`` keeps every visual token of every image / frame and ``layout`` is a
    composite (:meth:`VisualLayout.combine`); ``token_map``, ``heatmap`` and :meth:`select` take ``image=k`` (the
    k-th image or video of the prompt) and ``frame=f`` (a video's frame), and :meth:`select` gives the one-image run
    that the analyzer and the plots take.
    """

    text: str
    token_ids: torch.Tensor
    tokens: list[str]
    token_offsets: torch.Tensor
    attention: torch.Tensor
    layout: VisualLayout
    layers: list[int]
    keep: KeepMode = "heads"
    convention: str = "predicting"
    prompt: str = ""
    prompt_ids: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    image: Image.Image | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    media: list[Any] = field(default_factory=list)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.token_ids = torch.as_tensor(self.token_ids, dtype=torch.long).reshape(-1)
        self.token_offsets = torch.as_tensor(self.token_offsets, dtype=torch.long).reshape(-1, 2)
        self.layers = [int(i) for i in self.layers]
        t = len(self.token_ids)
        expected_ndim = {"heads": 4, "layers": 3, "mean": 2}.get(self.keep)
        if expected_ndim is None:
            raise ValueError(f"keep={self.keep!r} is not one of ('heads', 'layers', 'mean')")
        a = self.attention
        if a.ndim != expected_ndim:
            raise EmergenceError(f"attention for keep={self.keep!r} must have {expected_ndim} dims, got shape {tuple(a.shape)}")
        if a.shape[0] != t or len(self.tokens) != t or len(self.token_offsets) != t:
            raise EmergenceError(
                f"{t} token ids, {len(self.tokens)} token strings, {len(self.token_offsets)} offsets and "
                f"{a.shape[0]} attention rows must agree"
            )
        if a.shape[-1] != self.layout.num_tokens:
            raise EmergenceError(f"attention has {a.shape[-1]} visual tokens, the layout {self.layout.num_tokens}")
        if self.keep != "mean" and a.shape[1] != len(self.layers):
            raise EmergenceError(f"attention has {a.shape[1]} layers but {len(self.layers)} layer indices were given")
        self.media = list(self.media or [])
        self.extras = dict(self.extras or {})
        for name in _VISUAL_EXTRAS:
            if name in self.extras and self.extras[name].shape[-1] != a.shape[-1]:
                raise EmergenceError(f"extras[{name!r}] has {self.extras[name].shape[-1]} visual tokens, the attention "
                                     f"{a.shape[-1]}")
        if self.media and len(self.media) != len(self.layout.items):
            raise EmergenceError(f"{len(self.media)} media entries for a layout over images / videos "
                                 f"{self.layout.items}")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_heads(self) -> int | None:
        """``H`` when keep="heads", else ``None``."""
        return int(self.attention.shape[2]) if self.keep == "heads" else None

    def _token_index(self, t: int) -> int:
        n = len(self)
        if not isinstance(t, (int, np.integer)):
            raise TypeError(f"token index must be an int, got {type(t).__name__}")
        if not -n <= t < n:
            raise IndexError(f"token index {t} is out of range for a run of {n} generated tokens (valid: 0..{n - 1})")
        return int(t) % n

    def token_map(
        self, t: int | None = None, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
        image: int | None = None, frame: int | None = None,
    ) -> torch.Tensor:
        """Per-visual-token attention, reduced by the mean over the chosen layers and heads.

        Args:
            t: generated-token index (negative counts from the end); ``None`` = every token.
            layers: language-model layer indices (must be among ``self.layers``); default all captured.
            heads: head indices; default all. Needs keep="heads".
            image, frame: keep only the tokens of one image / video frame (:meth:`VisualLayout.part`); default
                every visual token.

        Returns:
            ``[V]`` float32 for one token, ``[T, V]`` when ``t`` is None (``V`` = the chosen image's tokens).
        """
        a = self.attention if t is None else self.attention[self._token_index(t)][None]
        if image is not None or frame is not None:
            k = self.layout.part_index(image, frame)
            if k is not None:
                a = a[..., torch.from_numpy(self.layout.members(k))]
        a = reduce_attention(a, self.keep, self.layers, layers, heads)
        return a[0] if t is not None else a

    def heatmap(
        self,
        t: int,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        fuse: FuseRule = "mean",
        image: int | None = None,
        frame: int | None = None,
    ) -> np.ndarray:
        """Heatmap of generated token ``t`` in ORIGINAL image pixels.

        Args:
            image, frame: which image (index among the prompt's images / videos) or video frame to draw; needed
                when the prompt holds several (a video part of several frames, e.g. a Qwen2-VL temporal patch of
                two frames, is drawn for each of its frames).

        Returns:
            ``[image_h, image_w]`` float32: the mean attention over the chosen layers and heads, rendered bicubically
            through the layout (see :meth:`VisualLayout.render`).
        """
        layout = self.layout.part(image, frame) if (image is not None or frame is not None) else self.layout
        return layout.render(self.token_map(t, layers, heads, image=image, frame=frame), fuse=fuse)

    def frame_profile(self, image: int | None = None, layers: Sequence[int] | None = None,
                      heads: Sequence[int] | None = None) -> tuple[list[tuple[int, int]], torch.Tensor]:
        """How much each generated token attends to each part of a video: the "when" view of a video.

        Args:
            image: the video's index among the prompt's media (default: the only video).

        Returns:
            ``(frames, mass)``: each part's ``(first, stop)`` frame range, in frame order, and ``[parts, T]``
            float32: the attention mass (summed over the part's tokens, mean over the chosen layers and heads) of
            every generated token on that part.
        """
        videos = sorted({p.item for p in self.layout.parts if p.frames is not None})
        if not videos:
            raise EmergenceError("this run holds no video; frame_profile needs a run generated with video=frames")
        if image is None:
            if len(videos) > 1:
                raise EmergenceError(f"this run holds videos {videos}; choose one with image=k")
            image = videos[0]
        elif image not in videos:
            raise EmergenceError(f"image={image} is not a video of this run (videos: {videos})")
        maps = self.token_map(None, layers, heads)  # [T, V]
        parts = sorted((p for p in self.layout.parts if p.item == image), key=lambda p: p.frames)
        mass = torch.stack([maps[:, torch.from_numpy(self.layout.members(p))].sum(dim=1) for p in parts])
        return [p.frames for p in parts], mass

    def select(self, image: int | None = None, frame: int | None = None) -> ProbeRun:
        """The run restricted to one image or video frame: ``attention[..., V_k]``, that part's layout and its
        image (the frame itself for a video), ready for :func:`~emergence.analyze` and the plots. A one-image run
        is returned as is when the choice names its image.

        Raises:
            LayoutError: no such image / frame, or the choice is ambiguous (the message lists the parts).
        """
        from dataclasses import replace

        k = self.layout.part_index(image, frame)
        if k is None:
            return self
        part = self.layout.parts[k]
        members = torch.from_numpy(self.layout.members(k))
        picture = None
        if self.media:
            source = self.media[self.layout.items.index(part.item)]
            if isinstance(source, (list, tuple)):
                first = part.frames[0] if part.frames else 0
                picture = source[int(frame) if frame is not None else first]
            else:
                picture = source
        meta = {**self.meta, "selected": {"image": part.item, "frame": frame, "frames": list(part.frames or []),
                                          "parts": len(self.layout.parts)}}
        extras = {k: (v[..., members] if k in _VISUAL_EXTRAS else v) for k, v in self.extras.items()}
        return replace(self, attention=self.attention[..., members], layout=part, image=picture, media=[], meta=meta,
                       extras=extras)

    # ------------------------------------------------------------------ conversion
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ProbeRun:
        """A copy with ``attention`` moved/cast (other fields shared)."""
        from dataclasses import replace

        return replace(self, attention=self.attention.to(device=device, dtype=dtype))

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.attention.shape)
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return (
            f"ProbeRun(tokens={len(self)}, attention[{shape}] {str(self.attention.dtype).replace('torch.', '')} "
            f"keep={self.keep!r}, convention={self.convention!r}, layout={self.layout.family}:{self.layout.num_tokens}, "
            f"model={self.meta.get('model', '?')!r}, text={text!r})"
        )

    # ------------------------------------------------------------------ viewer
    def to_html(self, path: str | os.PathLike | None = None, *, max_side: int = 512, budget_mb: float = 32.0,
                maps: dict[str, Any] | None = None) -> Any:
        """The run in a self-contained HTML viewer (:mod:`emergence.plotting.viewer`): click a word to see its map;
        choose the layers, the head, the normalisation, the image or frame; maps are computed in the page.

        Args:
            path: write the page here (a new file, or a page the toolkit wrote) and return the path; ``None``: return
                the HTML.
            max_side: the longer side of the drawn grid, in pixels.
            budget_mb: the most per-head attention to embed (float16 MB); over it, the layer means (the page says so).
            maps: ``{method name: [T, V]}`` maps of other methods to show beside the attention
                (:func:`emergence.analysis.methods.recorded_maps`).

        Raises:
            ValueError: the run holds no image, or no generated token. UnsupportedModelError: a layout that is not
                spatial.
        """
        from .plotting.viewer import page_html, run_payload, write_page

        payload = run_payload(self, max_side=max_side, budget_mb=budget_mb, maps=maps)
        return page_html(payload) if path is None else write_page(payload, path)

    def _repr_html_(self) -> str:
        """Jupyter: the viewer inline (an isolated frame; per-head attention up to 8 MB, else layer means)."""
        from .plotting.viewer import inline_frame, run_payload

        return inline_frame(run_payload(self, max_side=384, budget_mb=8.0))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the run to the folder ``path``: a new or empty folder, or one that already holds a saved run (its
        files are replaced; other files in it are kept). Any other folder is refused.

        Files: ``attention.safetensors`` (attention, ids, offsets), ``run.json`` (text, tokens, layout, meta) and
        ``image.png`` when the image is known, each written atomically; ``run.json`` is written last and names the
        save it belongs to, so a folder caught half-way by a kill is detected by :meth:`load`. Lossless: :meth:`load`
        gives back equal tensors and fields.

        Raises:
            OutputDirError: ``path`` is a file or a folder with files this toolkit did not write; or it cannot be
                written (read-only, disk full).
        """
        import io
        import secrets

        from safetensors.torch import save as save_tensors

        from .files import atomic_write_bytes, atomic_write_json, check_output_dir, mark_output_dir

        path = check_output_dir(path, "run")
        save_id = secrets.token_hex(8)
        data = save_tensors(
            {
                "attention": self.attention.detach().cpu().contiguous(),
                "token_ids": self.token_ids.cpu().contiguous(),
                "token_offsets": self.token_offsets.cpu().contiguous(),
                "prompt_ids": self.prompt_ids.detach().cpu().to(torch.long).contiguous(),
                **{f"extra.{k}": v.detach().cpu().contiguous() for k, v in self.extras.items()},
            },
            metadata={"save_id": save_id},
        )
        mark_output_dir(path, "run")
        atomic_write_bytes(path / "attention.safetensors", data)
        def png(picture: Image.Image) -> bytes:
            buf = io.BytesIO()
            picture.save(buf, format="PNG")
            return buf.getvalue()

        if self.image is not None:
            atomic_write_bytes(path / "image.png", png(self.image))
        else:
            (path / "image.png").unlink(missing_ok=True)  # the previous run's image (the folder is a run folder)
        for name in _media_files(path):  # the previous run's media, as its run.json lists them
            (path / name).unlink(missing_ok=True)
        media_doc = [{"kind": "video", "frames": len(m)} if isinstance(m, (list, tuple)) else {"kind": "image"}
                     for m in self.media]
        for names, source in zip(_media_names(media_doc), self.media):
            for name, picture in zip(names, source if isinstance(source, (list, tuple)) else [source]):
                atomic_write_bytes(path / name, png(picture))
        doc = {
            "format_version": _FORMAT_VERSION,
            "save_id": save_id,
            "text": self.text,
            "tokens": self.tokens,
            "layers": self.layers,
            "keep": self.keep,
            "convention": self.convention,
            "prompt": self.prompt,
            "layout": self.layout.to_dict(),
            "meta": self.meta,
            "media": media_doc,
        }
        atomic_write_json(path / "run.json", doc)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProbeRun:
        """Read a run written by :meth:`save`."""
        from safetensors.torch import load_file

        path = Path(path)
        doc_path = path / "run.json"
        if not doc_path.exists():
            raise FileNotFoundError(f"{str(path)!r} is not a saved ProbeRun (no run.json inside)")
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
        if doc.get("format_version", 0) > _FORMAT_VERSION:
            raise EmergenceError(f"{str(path)!r} was written by a newer emergence (format {doc['format_version']})")
        tensors = load_file(str(path / "attention.safetensors"))
        if "save_id" in doc:
            from safetensors import safe_open

            with safe_open(str(path / "attention.safetensors"), framework="pt") as fh:
                stored = (fh.metadata() or {}).get("save_id")
            if stored != doc["save_id"]:
                raise EmergenceError(f"{str(path)!r} is half-written: its attention.safetensors and run.json come "
                                     "from different saves (a save was interrupted). Save the run again.")
        image = None
        if (path / "image.png").exists():
            with Image.open(path / "image.png") as im:
                image = im.convert("RGB")
        media: list[Any] = []

        def read(name: str) -> Image.Image:
            with Image.open(path / name) as im:
                return im.convert("RGB")

        for entry, names in zip(doc.get("media", []), _media_names(doc.get("media", []))):
            pictures = [read(name) for name in names]
            media.append(pictures if entry["kind"] == "video" else pictures[0])
        return cls(
            media=media,
            text=doc["text"],
            token_ids=tensors["token_ids"],
            tokens=list(doc["tokens"]),
            token_offsets=tensors["token_offsets"],
            attention=tensors["attention"],
            layout=VisualLayout.from_dict(doc["layout"]),
            layers=doc["layers"],
            keep=doc["keep"],
            convention=doc["convention"],
            prompt=doc.get("prompt", ""),
            prompt_ids=tensors["prompt_ids"],
            image=image,
            meta=doc.get("meta", {}),
            extras={k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")},
        )



def _media_names(entries: list[dict[str, Any]]) -> list[list[str]]:
    """The file names of each media entry of a run.json: ``media_k.png`` for an image, ``media_k_frame_f.png`` for
    each frame of a video."""
    return [[f"media_{k}_frame_{f}.png" for f in range(int(e.get("frames", 0)))] if e.get("kind") == "video"
            else [f"media_{k}.png"] for k, e in enumerate(entries)]


def _media_files(path: Path) -> list[str]:
    """The media files a saved run in ``path`` wrote (read from its run.json; none when there is none)."""
    try:
        doc = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = doc.get("media", []) if isinstance(doc, dict) else []
    return [name for names in _media_names(entries) for name in names]


def reduce_attention(attention: torch.Tensor, keep: str, captured: Sequence[int], layers: Sequence[int] | None = None,
                     heads: HeadSelection = None) -> torch.Tensor:
    """``[N, V]`` float32: attention in a run's ``keep`` layout with a leading ``[N]`` axis (``[N, L, H, V]``,
    ``[N, L, V]`` or ``[N, V]``), averaged over the chosen ``layers`` (indices among ``captured``) and ``heads``
    (head indices used in every chosen layer, or ``(layer, head)`` pairs).

    Raises:
        ValueError, IndexError: a choice the kept attention cannot give (the message says why), or an empty one
            (``layers=[]`` / ``heads=[]`` would average nothing).
    """
    if layers is not None and len(layers) == 0:
        raise ValueError(f"layers=[] selects no layer; pass None for all captured layers {list(captured)} or a "
                         "non-empty list")
    if heads is not None and len(heads) == 0:
        raise ValueError("heads=[] selects no head; pass None for all heads, or head indices / (layer, head) pairs")
    a = attention.float()
    if heads is not None and len(heads) and isinstance(heads[0], (tuple, list)):
        if keep != "heads":
            raise ValueError("(layer, head) pairs need a run captured with keep='heads'")
        pairs = [(int(layer), int(head)) for layer, head in heads]
        missing = sorted({layer for layer, _ in pairs if layer not in captured})
        if missing:
            raise ValueError(f"layers {missing} were not captured; this run holds layers {list(captured)}")
        n_heads = a.shape[2]
        bad = [p for p in pairs if not 0 <= p[1] < n_heads]
        if bad:
            raise IndexError(f"head indices in {bad} are out of range for {n_heads} heads")
        li = torch.tensor([list(captured).index(layer) for layer, _ in pairs])
        hi = torch.tensor([head for _, head in pairs])
        return a[:, li, hi].mean(1)
    if keep == "mean":
        if layers is not None or heads is not None:
            raise ValueError("this run kept only the layer-and-head mean (keep='mean'); re-run with keep='heads'")
        return a
    if layers is not None:
        missing = [i for i in layers if i not in captured]
        if missing:
            raise ValueError(f"layers {missing} were not captured; this run holds layers {list(captured)}")
        a = a[:, [list(captured).index(i) for i in layers]]
    if keep == "heads":
        if heads is not None:
            h = a.shape[2]
            bad = [i for i in heads if not -h <= i < h]
            if bad:
                raise IndexError(f"head indices {bad} are out of range for {h} heads")
            a = a[:, :, list(heads)]
        a = a.mean(dim=2)
    elif heads is not None:
        raise ValueError("this run kept head means only (keep='layers'); re-run with keep='heads' to pick heads")
    return a.mean(dim=1)
