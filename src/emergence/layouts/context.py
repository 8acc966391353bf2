"""The :class:`LayoutContext`: everything an adapter's layout function may read about one image in one prompt."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from ..errors import LayoutError
from .base import VisualLayout

__all__ = ["LayoutBuilder", "LayoutContext", "Medium"]


@dataclass(frozen=True)
class Medium:
    """One image or video of a prompt, as the user gave it.

    Attributes:
        kind: ``"image"`` or ``"video"``.
        size: ``(height, width)`` of the original image, or of every frame of the video.
        frames: number of frames the user gave (1 for an image).
    """

    kind: Literal["image", "video"]
    size: tuple[int, int]
    frames: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("image", "video"):
            raise ValueError(f"Medium kind must be 'image' or 'video', got {self.kind!r}")
        h, w = (int(v) for v in self.size)
        if h <= 0 or w <= 0:
            raise ValueError(f"Medium size must be a positive (height, width), got {self.size}")
        if int(self.frames) < 1:
            raise ValueError(f"a video needs at least one frame, got frames={self.frames}")
        object.__setattr__(self, "size", (h, w))
        object.__setattr__(self, "frames", int(self.frames))


@dataclass
class LayoutContext:
    """Everything a layout builder may read.

    Attributes:
        config: the model's top-level config.
        input_ids: ``[S]`` token ids of ONE sample (the prompt that was fed to the model).
        image_size: ``(height, width)`` of the original image.
        inputs: the processor's outputs (``pixel_values``, ``image_sizes``, ``image_grid_thw``...), batch of one.
        processor: the model's processor or image processor (may be ``None`` for hand-built inputs).
        model_class: name of the model class.
        media: every image and video of the prompt in order (empty = one image of ``image_size``).
        item: which of ``media`` this context places (its layout's ``item``).
    """

    config: Any
    input_ids: torch.Tensor
    image_size: tuple[int, int]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    processor: Any = None
    model_class: str = ""
    media: tuple[Medium, ...] = ()
    item: int = 0

    def for_item(self, item: int, positions: np.ndarray, inputs: Mapping[str, Any], token_id: int | None = None
                 ) -> LayoutContext:
        """The context of one image of several: ``image_size`` is that image's, ``inputs`` its own slice of the
        processor outputs, and every other image's placeholder tokens in ``input_ids`` (``token_id``, default the
        image token) are replaced by ``-1`` so that a one-image layout finds only this image's tokens, at their
        real sequence positions."""
        token_id = self.image_token_id if token_id is None else token_id
        ids = self.input_ids.detach().cpu().reshape(-1).clone()
        others = ids == token_id
        others[torch.as_tensor(np.asarray(positions, dtype=np.int64))] = False
        ids[others] = -1
        size = self.media[item].size if self.media else self.image_size
        return replace(self, input_ids=ids, inputs=dict(inputs), image_size=size, item=item)

    @property
    def text_config(self) -> Any:
        return getattr(self.config, "text_config", None) or self.config

    @property
    def vision_config(self) -> Any:
        vc = getattr(self.config, "vision_config", None)
        if vc is None:
            raise LayoutError(f"{self.model_class} config has no vision_config")
        return vc

    @property
    def image_processor(self) -> Any:
        return getattr(self.processor, "image_processor", self.processor)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", None)

    @property
    def image_token_id(self) -> int:
        """The id of the image placeholder token (config first, then the processor)."""
        for source in (self.config, self.processor, self.tokenizer):
            for name in ("image_token_id", "image_token_index"):
                value = getattr(source, name, None)
                if isinstance(value, int):
                    return value
        raise LayoutError(
            f"cannot find the image token id of {self.model_class}: neither config.image_token_id nor "
            "config.image_token_index nor processor.image_token_id is set"
        )

    def image_positions(self) -> np.ndarray:
        """``[V]`` positions where ``input_ids`` equals the image token id."""
        ids = self.input_ids.detach().cpu().reshape(-1)
        return torch.nonzero(ids == self.image_token_id).flatten().numpy()

    def input(self, name: str) -> Any:
        value = self.inputs.get(name) if self.inputs is not None else None
        if value is None:
            raise LayoutError(f"{self.model_class} layout needs the processor output {name!r}, which is missing")
        return value


LayoutBuilder = Callable[[LayoutContext], VisualLayout]
