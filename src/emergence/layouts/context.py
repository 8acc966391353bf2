"""The :class:`LayoutContext`: everything an adapter's layout function may read about one image in one prompt."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import LayoutError
from .base import VisualLayout

__all__ = ["LayoutBuilder", "LayoutContext"]


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
    """

    config: Any
    input_ids: torch.Tensor
    image_size: tuple[int, int]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    processor: Any = None
    model_class: str = ""

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
