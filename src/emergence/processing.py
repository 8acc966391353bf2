"""Loading a model's processor where an optional package is missing.

Without torchvision, transformers cannot build the video processors (``LlavaOnevisionVideoProcessor``,
``Qwen2VLVideoProcessor``...), and ``AutoProcessor.from_pretrained`` of a model that has one fails as a whole, even
for images. :func:`load_processor` then builds the same processor class from its image processor and tokenizer with
no video processor: images go through the real processor code unchanged; a video is refused by
:meth:`emergence.Probe.prepare_media` with the missing package named.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .errors import MissingDependencyError

__all__ = ["load_processor", "without_video_processor"]


def without_video_processor(processor_cls: type) -> type:
    """``processor_cls`` accepting ``video_processor=None`` (transformers cannot even check the class of a video
    processor that needs torchvision when torchvision is absent). Everything else is the real class."""

    class ImagesOnly(processor_cls):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, name: str, arg: Any) -> Any:
            if name == "video_processor" and arg is None:
                return None
            return super().check_argument_for_proper_class(name, arg)

    ImagesOnly.__name__ = processor_cls.__name__
    ImagesOnly.__qualname__ = processor_cls.__qualname__
    return ImagesOnly


def _processor_config(path_or_id: str) -> dict[str, Any] | None:
    from transformers.utils import cached_file

    try:
        found = cached_file(path_or_id, "processor_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    if not found:
        return None
    with open(found, encoding="utf-8") as fh:
        doc = json.load(fh)
    return doc if isinstance(doc, dict) else None


def _images_only(path_or_id: str, exc: ImportError) -> Any:
    """The processor of ``path_or_id`` without its video processor, or ``MissingDependencyError``."""
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.utils import cached_file

    def missing(why: str) -> MissingDependencyError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return MissingDependencyError(f"the processor of {path_or_id!r} needs a package that is not installed "
                                      f"({first}){why}. Install torchvision (pip install 'emergence[vision]')")

    config = _processor_config(path_or_id)
    if config is None or "video_processor" not in config:
        raise missing("") from exc
    cls = getattr(transformers, str(config.get("processor_class", "")), None)
    if not isinstance(cls, type):
        raise missing(f"; its processor class {config.get('processor_class')!r} is unknown") from exc
    kwargs = {k: v for k, v in config.items()
              if k not in ("processor_class", "image_processor", "video_processor", "feature_extractor",
                           "tokenizer", "auto_map")}
    template = cached_file(path_or_id, "chat_template.jinja", _raise_exceptions_for_missing_entries=False)
    if template and "chat_template" not in kwargs:
        with open(template, encoding="utf-8") as fh:
            kwargs["chat_template"] = fh.read()
    try:
        processor = without_video_processor(cls)(image_processor=AutoImageProcessor.from_pretrained(path_or_id),
                                                 tokenizer=AutoTokenizer.from_pretrained(path_or_id),
                                                 video_processor=None, **kwargs)
    except (ImportError, TypeError, ValueError, OSError) as inner:
        raise missing(f"; without its video processor it could not be built either ({inner})") from exc
    import warnings

    warnings.warn(f"the processor of {path_or_id!r} was loaded WITHOUT its video processor, which needs torchvision "
                  "(absent): images are processed as usual, videos are refused. Install torchvision (pip install "
                  "'emergence[vision]') for videos.", stacklevel=3)
    return processor


def load_processor(path_or_id: str | os.PathLike) -> Any:
    """``AutoProcessor.from_pretrained(path_or_id)``; where that fails only because the video processor needs
    torchvision, the same processor class without a video processor (images work; videos are refused naming
    torchvision).

    Raises:
        MissingDependencyError: a package the processor needs is missing and images cannot be processed without it.
        OSError, ValueError: as ``AutoProcessor.from_pretrained``.
    """
    from transformers import AutoProcessor

    where = os.fspath(path_or_id)
    try:
        return AutoProcessor.from_pretrained(where)
    except ImportError as exc:
        return _images_only(where, exc)
