"""Official SAM2 checkpoints in transformers' ``Sam2Model``: the same weights on the torchvision-free path.

The official ``sam2`` package saves ``{"model": state_dict}`` in ``sam2[.1]_hiera_{tiny,small,base_plus,large}.pt``;
transformers' ``Sam2Model`` names the same tensors differently and keeps only the image path (no memory encoder,
memory attention or object-pointer heads, which only the video predictor uses). :func:`official_to_transformers`
renames the image-path tensors and drops the video-only ones; :func:`sam2_model_from_official` builds the
``Sam2Model`` of the checkpoint's size and loads them strictly (every tensor of the model filled, shapes checked).

The size table :data:`OFFICIAL_HIERA` restates the official package's model configs
(``configs/sam2.1/sam2.1_hiera_*.yaml``, and the Hiera defaults where a config leaves a field out);
``tests/test_official_sam2.py`` checks it against the package's own configs, and the masks of the two paths on the
same weights against each other.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from ..errors import EmergenceError

__all__ = ["OFFICIAL_HIERA", "official_size", "official_to_transformers", "transformers_sam2_config",
           "sam2_model_from_official"]

#: the Hiera trunk of each official size: embed dim and heads of stage 1 (both double at each later stage), blocks
#: per stage, the blocks with global attention, the background size of the windowed position embedding, and the
#: attention window of each stage
OFFICIAL_HIERA: dict[str, dict[str, Any]] = {
    "tiny": {"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 7, 2), "global_att_blocks": (5, 7, 9),
             "window_pos_embed_bkg_spatial_size": (7, 7), "window_spec": (8, 4, 14, 7)},
    "small": {"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 11, 2), "global_att_blocks": (7, 10, 13),
              "window_pos_embed_bkg_spatial_size": (7, 7), "window_spec": (8, 4, 14, 7)},
    "base_plus": {"embed_dim": 112, "num_heads": 2, "stages": (2, 3, 16, 3), "global_att_blocks": (12, 16, 20),
                  "window_pos_embed_bkg_spatial_size": (14, 14), "window_spec": (8, 4, 14, 7)},
    "large": {"embed_dim": 144, "num_heads": 2, "stages": (2, 6, 36, 4), "global_att_blocks": (23, 33, 43),
              "window_pos_embed_bkg_spatial_size": (7, 7), "window_spec": (8, 4, 16, 8)},
}

#: official tensors only the video predictor uses (transformers' Sam2Model has no place for them)
_VIDEO_ONLY = ("memory_encoder.", "memory_attention.", "maskmem_tpos_enc", "no_mem_pos_enc", "no_obj_ptr",
               "no_obj_embed_spatial", "mask_downsample.", "obj_ptr_proj.", "obj_ptr_tpos_proj.")

#: (pattern, replacement), applied in order to every official name
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"(backbone\.blocks\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (r"(backbone\.blocks\.\d+\.mlp)\.layers\.0\.", r"\1.proj_in."),
    (r"(backbone\.blocks\.\d+\.mlp)\.layers\.1\.", r"\1.proj_out."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
     "prompt_encoder.shared_embedding.positional_embedding"),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"\.out_proj\.", ".o_proj."),
    (r"(transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (r"(transformer\.layers\.\d+\.mlp)\.layers\.0\.", r"\1.proj_in."),
    (r"(transformer\.layers\.\d+\.mlp)\.layers\.1\.", r"\1.proj_out."),
    (r"transformer\.norm_final_attn\.", "transformer.layer_norm_final_attn."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    # three-layer heads: first -> proj_in, middle -> layers.0, last -> proj_out
    (r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head))\.layers\.0\.",
     r"\1.proj_in."),
    (r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head))\.layers\.2\.",
     r"\1.proj_out."),
    (r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head))\.layers\.1\.",
     r"\1.layers.0."),
)


def official_size(checkpoint: str | os.PathLike) -> str:
    """The size (a key of :data:`OFFICIAL_HIERA`) of an official checkpoint file, by its name
    (``sam2.1_hiera_large.pt`` -> ``"large"``).

    Raises:
        ValueError: not an official file name; pass ``size=`` to :func:`sam2_model_from_official`.
    """
    name = os.path.basename(os.fspath(checkpoint))
    stem, _, size = name.removesuffix(".pt").partition("_hiera_")
    if stem not in ("sam2", "sam2.1") or size not in OFFICIAL_HIERA:
        raise ValueError(f"cannot tell the size of SAM2 checkpoint {name!r} from its name (official names: "
                         f"sam2.1_hiera_{{{','.join(OFFICIAL_HIERA)}}}.pt); pass size= one of {list(OFFICIAL_HIERA)}")
    return size


def official_to_transformers(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename an official SAM2 state dict to ``transformers.Sam2Model``'s names.

    The four point embeddings (``[1, 256]`` each) become one ``prompt_encoder.point_embed.weight [4, 256]``; the
    prompt encoder's random Fourier matrix ``[2, 128]`` also fills ``shared_image_embedding`` (the official model
    shares one module for both); the video-only tensors are dropped. Tensors are not copied.
    """
    out: dict[str, Any] = {}
    points: dict[int, Any] = {}
    for name, value in state_dict.items():
        if name.startswith(_VIDEO_ONLY):
            continue
        match = re.fullmatch(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight", name)
        if match:
            points[int(match.group(1))] = value
            continue
        for pattern, repl in _RENAMES:
            name = re.sub(pattern, repl, name)
        out[name] = value
    if points:
        import torch

        if sorted(points) != list(range(len(points))):
            raise EmergenceError(f"official SAM2 point embeddings {sorted(points)} are not numbered 0..n-1")
        out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in range(len(points))], dim=0)
    fourier = out.get("prompt_encoder.shared_embedding.positional_embedding")
    if fourier is not None:
        out["shared_image_embedding.positional_embedding"] = fourier
    return out


def transformers_sam2_config(size: str) -> Any:
    """The ``transformers.Sam2Config`` of an official size (a key of :data:`OFFICIAL_HIERA`)."""
    from transformers import Sam2Config, Sam2HieraDetConfig, Sam2VisionConfig

    if size not in OFFICIAL_HIERA:
        raise ValueError(f"unknown SAM2 size {size!r}; use one of {list(OFFICIAL_HIERA)}")
    h = OFFICIAL_HIERA[size]
    dims = [h["embed_dim"] * 2**i for i in range(4)]
    backbone = Sam2HieraDetConfig(
        hidden_size=h["embed_dim"], num_attention_heads=h["num_heads"], embed_dim_per_stage=dims,
        num_attention_heads_per_stage=[h["num_heads"] * 2**i for i in range(4)],
        blocks_per_stage=list(h["stages"]), global_attention_blocks=list(h["global_att_blocks"]),
        window_positional_embedding_background_size=list(h["window_pos_embed_bkg_spatial_size"]),
        window_size_per_stage=list(h["window_spec"]),
    )
    return Sam2Config(vision_config=Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=dims[::-1]))


def sam2_model_from_official(checkpoint: str | os.PathLike | Mapping[str, Any], size: str | None = None) -> Any:
    """A ``transformers.Sam2Model`` holding an official checkpoint's weights (no torchvision, no ``sam2`` package).

    Args:
        checkpoint: the official ``.pt`` file (``{"model": state_dict}``) or such a state dict.
        size: the checkpoint's size; read from an official file name when omitted.

    Raises:
        EmergenceError: the file is missing or unreadable, or its tensors do not fill the model of that size
            exactly (names both lists).
    """
    import torch
    from transformers import Sam2Model

    if isinstance(checkpoint, Mapping):
        state = checkpoint
        if size is None:
            raise ValueError("pass size= (one of %s) with a state dict" % list(OFFICIAL_HIERA))
    else:
        path = os.fspath(checkpoint)
        size = size or official_size(path)
        if not os.path.isfile(path):
            raise EmergenceError(f"SAM2 checkpoint {path!r} does not exist; pass the official .pt file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
            raise EmergenceError(f"cannot read SAM2 checkpoint {path!r}: {exc}") from exc
    if isinstance(state, Mapping) and "model" in state:
        state = state["model"]
    if not isinstance(state, Mapping):
        raise EmergenceError(f"a SAM2 checkpoint holds {{'model': state_dict}}, got {type(state).__name__}")
    model = Sam2Model(transformers_sam2_config(size))
    weights = official_to_transformers(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if tuple(expected[k].shape) != tuple(weights[k].shape))
    if missing or unexpected or wrong:
        raise EmergenceError(
            f"the official SAM2 checkpoint does not fit the {size!r} Sam2Model: missing {missing[:5]} "
            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), wrong shapes {wrong[:5]} "
            f"({len(wrong)}); is size={size!r} right?")
    model.load_state_dict(weights, strict=True)
    return model.eval()
