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

__all__ = ["ProbeRun"]

_FORMAT_VERSION = 1


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
        layers: the ``L`` language-model layer indices that ``attention`` holds.
        keep: which reduction ``attention`` holds.
        convention: ``"predicting"`` (row that predicts token t) or ``"self"`` (row at token t's own position).
        prompt: the prompt text given by the user (before the chat template).
        prompt_ids: ``[P]`` token ids of the full prompt fed to the model.
        image: the original image (optional; saved with the run).
        meta: model name, backend, dtype, generation settings, library versions.
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
        self, t: int | None = None, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Per-visual-token attention, reduced by the mean over the chosen layers and heads.

        Args:
            t: generated-token index (negative counts from the end); ``None`` = every token.
            layers: language-model layer indices (must be among ``self.layers``); default all captured.
            heads: head indices; default all. Needs keep="heads".

        Returns:
            ``[V]`` float32 for one token, ``[T, V]`` when ``t`` is None.
        """
        a = self.attention if t is None else self.attention[self._token_index(t)][None]
        a = a.float()
        if self.keep == "mean":
            if layers is not None or heads is not None:
                raise ValueError("this run kept only the layer-and-head mean (keep='mean'); re-run with keep='heads'")
        else:
            if layers is not None:
                missing = [i for i in layers if i not in self.layers]
                if missing:
                    raise ValueError(f"layers {missing} were not captured; this run holds layers {self.layers}")
                a = a[:, [self.layers.index(i) for i in layers]]
            if self.keep == "heads":
                if heads is not None:
                    h = a.shape[2]
                    bad = [i for i in heads if not -h <= i < h]
                    if bad:
                        raise IndexError(f"head indices {bad} are out of range for {h} heads")
                    a = a[:, :, list(heads)]
                a = a.mean(dim=2)
            elif heads is not None:
                raise ValueError("this run kept head means only (keep='layers'); re-run with keep='heads' to pick heads")
            a = a.mean(dim=1)
        return a[0] if t is not None else a

    def heatmap(
        self,
        t: int,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        fuse: FuseRule = "mean",
    ) -> np.ndarray:
        """Heatmap of generated token ``t`` in ORIGINAL image pixels.

        Returns:
            ``[image_h, image_w]`` float32: the mean attention over the chosen layers and heads, rendered bicubically
            through the layout (see :meth:`VisualLayout.render`).
        """
        return self.layout.render(self.token_map(t, layers, heads), fuse=fuse)

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
            },
            metadata={"save_id": save_id},
        )
        mark_output_dir(path, "run")
        atomic_write_bytes(path / "attention.safetensors", data)
        if self.image is not None:
            buf = io.BytesIO()
            self.image.save(buf, format="PNG")
            atomic_write_bytes(path / "image.png", buf.getvalue())
        else:
            (path / "image.png").unlink(missing_ok=True)  # the previous run's image (the folder is a run folder)
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
        return cls(
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
        )

