"""Map methods: the ways the literature turns a multimodal LLM's internals into one map per generated token,
computed from one :class:`~emergence.ProbeRun` and scored by the same analyzer and metrics.

Each method is one :class:`MapMethod` object: it says what it needs from the model (:meth:`MapMethod.refusal`),
records what it reads during or after ``Probe.generate(..., methods=[...])`` (:meth:`MapMethod.recording`,
:meth:`MapMethod.record`) and makes the maps (:meth:`MapMethod.compute`). :func:`register_method` adds one from
outside the package; ``analyze``, sweeps and the CLI find it by name (docs/architecture.md walks through one).

Every method gives ``[T, V]`` float32: one value per generated token and visual token, rendered by the run's layout
like attention. Pick one with ``analyze(run, ..., method="tam")``, ``emergence analyze --map-method tam`` or a
sweep's ``map_method``. Methods other than ``attention`` read what ``Probe.generate(..., methods=[...])`` recorded
in ``run.extras``:

``attention`` (PixFoundation, arXiv 2502.04192; attend-and-segment, arXiv 2410.08209) -- the default.
    The attention row that predicts each token, averaged over the chosen layers and heads, minus the answer's mean
    map (:mod:`emergence.analysis.token_maps`). Cost: the capture alone (one extra ``q.K`` row per layer and step).
``relative`` ("MLLMs know where to look", Zhang et al., ICLR 2025).
    The same attention divided, key by key, by the attention of the row that starts the answer to a generic prompt
    (default ``"Write a general description of the image."``) over the same image, both averaged over the same
    layers and heads: it removes where the model looks whatever it is asked. The paper divides the answer-start
    row; here every answer token's row is divided by that one generic row. Cost: one extra prefill of the generic
    prompt (``methods=["relative"]``). Denominators are floored at ``floor`` (default 1e-6) so keys the generic
    prompt ignores (float16 zeros) cannot blow up. Default normalisation: none (the ratio).
``tam`` (Token Activation Map, Li et al., ICCV 2025, arXiv 2506.23270; code xmed-lab/TAM).
    The final layer's hidden state of every visual token read through the LM head for the generated token's class,
    ReLU. Estimated causal inference removes the activation the context induces: the maps of the context tokens
    (the prompt's text after the image and the earlier answer tokens, each for its own class; tokens of the same
    class as the explained one left out) are averaged with weights ReLU(the explained class's logit at the context
    token's row), scaled by least squares onto the token's map and subtracted (ReLU). The map is min-max
    normalised jointly with those text scores and smoothed by the rank Gaussian filter (3x3 window per view grid,
    sorted values weighted by a Gaussian over rank whose sigma is the window's coefficient of variation). Cost:
    the final hidden states are read by a hook during the same generation (single pass), and the logits of the
    needed classes only are kept (``run.extras["tam_logits"]`` ``[S, C]``). Differences from the reference: the
    context is every non-special prompt token between the last visual token and the prompt's last position (the
    reference cuts the user's text out
    by model-specific ids) and each prompt token's map uses its own class (the reference uses the argmax class
    for the first one). Not for cross-attention models (their image never enters the decoder's sequence).
``gradient`` (gradient-weighted attention, as in Chefer et al., ICCV 2021, for decoders).
    ReLU(d logit(token t) / d A  x  A) on the row that predicts token t, per layer and head, then averaged like
    attention. On request only: one teacher-forced forward through the model's eager attention with gradients and
    one backward pass per generated token (``methods=["gradient"]``, or :func:`gradient_attention` later).

Localization heads (Kang et al., CVPR 2025) are a head selection, not a map (:mod:`emergence.analysis.heads`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, ContextManager

import numpy as np
import torch

from ..capture.extras import gradient_attention, record_final_hidden, tam_context, tam_logits
from ..errors import CaptureError, EmergenceError, UnsupportedModelError
from .token_maps import MapOptions, normalise as normalise_maps, reduce_attention, token_maps

__all__ = [
    "METHODS", "GENERIC_PROMPT", "MapMethod", "RecordRequest", "AttentionMethod", "RelativeMethod", "TamMethod",
    "GradientMethod", "register_method", "get_method", "method_maps", "recordable_methods", "recorded_maps", "tam_maps",
    "rank_gaussian_filter", "relative_maps",
]

GENERIC_PROMPT = "Write a general description of the image."


@dataclass
class RecordRequest:
    """What a generation was asked for, handed to each map method's :meth:`MapMethod.record`.

    Attributes:
        prompt: the prompt as given (``None`` when the caller passed processed ``inputs`` only).
        images: the original images, in prompt order.
        videos: each video's frames.
        model_inputs: the processed inputs the model generated from (batch of one, on the model's device).
        capture: the capture options (``keep``, ``layers``, ``storage_dtype``, ``frames``, ``mechanism``).
        convention: ``"predicting"`` or ``"self"``.
        generic_prompt: relative attention's generic prompt (``None``: :data:`GENERIC_PROMPT`).
    """

    prompt: str | None
    images: list[Any]
    videos: list[list[Any]]
    model_inputs: dict[str, Any]
    capture: dict[str, Any]
    convention: str = "predicting"
    generic_prompt: str | None = None


@dataclass(frozen=True)
class MapMethod:
    """One map method: what it records, and how it turns a run into ``[T, V]`` maps.

    Subclass it and override :meth:`compute` (and, when the method reads more than attention, :attr:`needs`,
    :meth:`refusal`, :meth:`recording` and :meth:`record`); :func:`register_method` makes it available by name.

    Attributes:
        name: the name ``analyze(method=...)``, sweeps and ``--map-method`` use.
        normalise: the normalisation it uses when the analysis does not choose one.
        layered: whether single-layer maps exist (the analyzer's emergence layer).
        selects: whether it takes a layer / head selection.
        attention_options: whether ``sink_z`` / ``remove_corners`` (which act on attention) apply.
        needs: the ``run.extras`` entries it reads.
    """

    name: str
    normalise: str = "none"
    layered: bool = True
    selects: bool = True
    attention_options: bool = True
    needs: tuple[str, ...] = ()

    def check(self, run: Any) -> None:
        """Raise a clear error when ``run`` lacks what this method reads."""
        missing = [k for k in self.needs if k not in run.extras]
        if missing:
            raise EmergenceError(f"map method {self.name!r} needs run.extras {missing}, which this run did not record; "
                                 f"generate it with probe.generate(..., methods=[{self.name!r}])")

    def check_options(self, options: MapOptions) -> None:
        """Raise ``ValueError`` for options this method does not take."""
        if not self.attention_options and (options.sink_z is not None or options.remove_corners):
            raise ValueError(f"sink_z / remove_corners act on attention maps; map method {self.name!r} does not "
                             "apply them (leave them unset)")
        if not self.selects and (options.layers is not None or options.heads is not None):
            raise ValueError(f"map method {self.name!r} takes no layers or heads")

    def maps(self, run: Any, options: MapOptions | None = None) -> torch.Tensor:
        """``[T, V]`` float32 maps of every generated token (``options``: layers, heads, normalisation...)."""
        options = options or MapOptions(normalise=self.normalise)  # type: ignore[arg-type]
        self.check(run)
        self.check_options(options)
        return self.compute(run, options)

    def compute(self, run: Any, options: MapOptions) -> torch.Tensor:
        """The maps, after :meth:`maps` checked the run and the options: ``[T, V]`` float32."""
        raise NotImplementedError(f"map method {self.name!r} defines no compute()")

    def refusal(self, probe: Any, convention: str = "predicting") -> Exception | None:
        """Why ``probe`` cannot record this method under ``convention`` (an exception to raise), or ``None``."""
        return None

    def check_request(self, probe: Any, request: RecordRequest) -> None:
        """Raise before generating when this method cannot be recorded for ``request``."""
        reason = self.refusal(probe, request.convention)
        if reason is not None:
            raise reason

    def recording(self, probe: Any) -> ContextManager[Any]:
        """A context around the generation that collects what :meth:`record` reads (default: nothing)."""
        return contextlib.nullcontext()

    def record(self, probe: Any, run: Any, recorded: Any, request: RecordRequest) -> None:
        """After the generation: add this method's entries to ``run.extras`` / ``run.meta`` (``recorded``: what
        :meth:`recording` yielded)."""


@dataclass(frozen=True)
class AttentionMethod(MapMethod):
    """The recorded attention, averaged over the chosen layers and heads, then normalised
    (:func:`emergence.analysis.token_maps.token_maps`)."""

    name: str = "attention"
    normalise: str = "mean_subtract"

    def compute(self, run: Any, options: MapOptions) -> torch.Tensor:
        return token_maps(run, options)


@dataclass(frozen=True)
class RelativeMethod(MapMethod):
    """Relative attention (module docstring); ``floor``: the smallest denominator."""

    name: str = "relative"
    attention_options: bool = False
    needs: tuple[str, ...] = ("generic_attention",)
    floor: float = 1e-6

    def compute(self, run: Any, options: MapOptions) -> torch.Tensor:
        return relative_maps(run, options, floor=self.floor)

    def check_request(self, probe: Any, request: RecordRequest) -> None:
        super().check_request(probe, request)
        if request.prompt is None:
            raise ValueError(f"methods=[{self.name!r}] re-runs the image with a generic prompt: pass the image and "
                             "prompt, not only inputs")

    def record(self, probe: Any, run: Any, recorded: Any, request: RecordRequest) -> None:
        generic = request.generic_prompt or GENERIC_PROMPT
        images = request.images
        media = images if len(images) != 1 else images[0]
        base = probe.generate(media if images else None, generic, video=request.videos[0] if request.videos else None,
                              max_new_tokens=1, **request.capture)
        if base.attention.shape[1:] != run.attention.shape[1:]:
            raise CaptureError(f"the generic prompt's capture has shape {tuple(base.attention.shape[1:])}, the "
                               f"run's {tuple(run.attention.shape[1:])}: the image tokens differ between prompts")
        run.extras["generic_attention"] = base.attention[0]
        run.meta["generic_prompt"] = generic


@dataclass(frozen=True)
class TamMethod(MapMethod):
    """Token activation maps (module docstring); ``filter_size``: the rank Gaussian filter's window."""

    name: str = "tam"
    layered: bool = False
    selects: bool = False
    attention_options: bool = False
    needs: tuple[str, ...] = ("tam_logits", "tam_classes")
    filter_size: int = 3

    def check_options(self, options: MapOptions) -> None:
        if options.layers is not None or options.heads is not None:
            raise ValueError("tam reads the final layer's logits: it takes no layers or heads")
        super().check_options(options)

    def compute(self, run: Any, options: MapOptions) -> torch.Tensor:
        return normalise_maps(tam_maps(run, self.filter_size), options.normalise)

    def refusal(self, probe: Any, convention: str = "predicting") -> Exception | None:
        if probe.adapter.cross_attention:
            return UnsupportedModelError("token activation maps read the visual tokens' final hidden states, which a "
                                         "cross-attention model (Mllama) never computes: its image stays outside the "
                                         "decoder's sequence")
        if probe.adapter.support != "exact":
            return UnsupportedModelError(f"token activation maps place each visual token's logits in the image; "
                                         f"{probe.adapter.family or type(probe.model).__name__}'s visual tokens are "
                                         f"not spatial (support: {probe.adapter.support}), so there is no map to draw")
        return None

    def recording(self, probe: Any) -> ContextManager[Any]:
        return record_final_hidden(probe.model)

    def record(self, probe: Any, run: Any, recorded: Any, request: RecordRequest) -> None:
        run.meta["special_ids"] = sorted(int(i) for i in getattr(probe.tokenizer, "all_special_ids", []) or [])
        run.extras.update(tam_logits(probe, recorded, run))
        run.meta["tam_rows"] = int(run.extras["tam_logits"].shape[0])


@dataclass(frozen=True)
class GradientMethod(MapMethod):
    """Gradient-weighted attention (module docstring), recorded after the generation."""

    name: str = "gradient"
    needs: tuple[str, ...] = ("gradient",)

    def compute(self, run: Any, options: MapOptions) -> torch.Tensor:
        return token_maps(dataclasses.replace(run, attention=run.extras["gradient"], extras={}), options)

    def refusal(self, probe: Any, convention: str = "predicting") -> Exception | None:
        if probe.adapter.cross_attention:
            return UnsupportedModelError("gradient maps are not available for cross-attention models (Mllama)")
        if convention != "predicting":
            return ValueError("methods=['gradient'] follows the predicting convention; generate with it")
        if not probe.adapter.teacher_forced:
            try:  # the family's own reason, if its extend_inputs has one; else the general refusal
                probe.adapter.extend_inputs({}, torch.zeros(1, 0, dtype=torch.long))
            except Exception as exc:  # noqa: BLE001 -- the adapter's refusal is the reason
                return exc
            return UnsupportedModelError(f"{probe.adapter.family or type(probe.model).__name__}: one forward over "
                                         "the prompt and the answer is not supported, which convention='self' and "
                                         "gradient maps need; generate with convention='predicting' and another map "
                                         "method")
        return None

    def record(self, probe: Any, run: Any, recorded: Any, request: RecordRequest) -> None:
        run.extras["gradient"] = gradient_attention(probe, run, request.model_inputs)  # float32: tiny products


METHODS: dict[str, MapMethod] = {}


def register_method(method: MapMethod, *, replace: bool = False) -> MapMethod:
    """Make ``method`` available by its name to ``analyze``, ``Probe.generate(methods=...)``, sweeps and the CLI.

    Raises:
        TypeError: ``method`` is not a :class:`MapMethod`.
        ValueError: the name is taken (pass ``replace=True`` to replace it) or empty.
    """
    if not isinstance(method, MapMethod):
        raise TypeError(f"register_method takes a MapMethod instance, got {type(method).__name__}")
    if not method.name or not method.name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"a map method's name must be letters, digits, - or _; got {method.name!r}")
    if method.name in METHODS and not replace:
        raise ValueError(f"a map method named {method.name!r} is registered already; pass replace=True to replace it")
    METHODS[method.name] = method
    return method


for _builtin in (AttentionMethod(), RelativeMethod(), TamMethod(), GradientMethod()):
    register_method(_builtin)


def get_method(method: str | MapMethod) -> MapMethod:
    """The :class:`MapMethod` named ``method`` (or ``method`` itself).

    Raises:
        ValueError: an unknown name (the message lists the methods).
    """
    if isinstance(method, MapMethod):
        return method
    if method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; methods: {sorted(METHODS)} (localization heads: "
                         "analyze(..., heads=emergence.maps.localization_heads(runs)))")
    return METHODS[method]


def method_maps(run: Any, method: str | MapMethod = "attention", options: MapOptions | None = None) -> torch.Tensor:
    """``[T, V]`` float32 maps of ``run`` by ``method`` (module docstring)."""
    return get_method(method).maps(run, options)


def recorded_maps(run: Any) -> dict[str, torch.Tensor]:
    """``{name: [T, V] maps}`` of every registered method besides ``attention`` whose recordings ``run`` holds, each
    with its own defaults (what a viewer shows beside the attention)."""
    return {name: m.maps(run) for name, m in METHODS.items()
            if name != "attention" and m.needs and all(k in run.extras for k in m.needs)}


def recordable_methods(probe: Any, convention: str = "predicting") -> list[str]:
    """The registered methods besides ``attention`` that ``probe`` can record under ``convention``, in
    registration order (``emergence analyze --methods-figure`` records them all)."""
    return [name for name, m in METHODS.items() if m.needs and m.refusal(probe, convention) is None]


# ---------------------------------------------------------------------------------------------------- relative
def relative_maps(run: Any, options: MapOptions | None = None, floor: float = 1e-6) -> torch.Tensor:
    """Relative attention: ``[T, V]`` = the answer's attention / the generic prompt's answer-start attention, both
    averaged over ``options``' layers and heads; then ``options.normalise`` (``"none"`` by default).

    Args:
        run: recorded with ``methods=["relative"]`` (``run.extras["generic_attention"]``, ``attention``'s layout
            without the ``T`` axis).
        floor: denominators below it are raised to it.
    """
    options = options or MapOptions(normalise="none")
    if not floor > 0:
        raise ValueError(f"floor must be positive, got {floor}")
    question = reduce_attention(run.attention, run.keep, run.layers, options.layers, options.heads)  # [T, V]
    generic = reduce_attention(run.extras["generic_attention"][None], run.keep, run.layers, options.layers,
                               options.heads)  # [1, V]
    return normalise_maps(question / generic.clamp_min(floor), options.normalise)



# ---------------------------------------------------------------------------------------------------- TAM
def rank_gaussian_filter(grid: np.ndarray, size: int = 3) -> np.ndarray:
    """TAM's rank Gaussian filter of a 2-D map: in each ``size x size`` window (reflected at the border) the sorted
    values are averaged with Gaussian weights over their rank offset from the middle, with sigma the window's
    coefficient of variation (std / mean); a window whose mean is <= 0 gives 0, a constant window its value.

    Args:
        grid: ``[h, w]`` float.

    Returns:
        ``[h, w]`` float64.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be odd and positive, got {size}")
    grid = np.asarray(grid, dtype=np.float64)
    pad = size // 2
    padded = np.pad(grid, pad, mode="reflect") if pad else grid
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size)).reshape(*grid.shape, size * size)
    ranked = np.sort(windows, axis=-1)
    mean = ranked.mean(-1)
    std = ranked.std(-1)
    offset = np.arange(size * size) - (size * size) // 2
    out = np.zeros_like(mean)
    varied = (mean > 0) & (std > 0)
    sigma = std[varied] / mean[varied]
    kernel = np.exp(-(offset[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    kernel /= kernel.sum(-1, keepdims=True)
    out[varied] = (ranked[varied] * kernel).sum(-1)
    flat = (mean > 0) & (std == 0)
    out[flat] = mean[flat]
    return out


def _filter_views(values: np.ndarray, layout: Any, size: int) -> np.ndarray:
    """Apply :func:`rank_gaussian_filter` (``size`` window) on each view's token grid (cells without a token count
    as 0)."""
    out = values.copy()
    for view in layout.views:
        idx = np.asarray(view.index)
        grid = np.where(idx >= 0, values[np.maximum(idx, 0)], 0.0)
        smooth = rank_gaussian_filter(grid, size)
        out[idx[idx >= 0]] = smooth[idx >= 0]
    return out


def tam_maps(run: Any, filter_size: int = 3) -> torch.Tensor:
    """Token activation maps (module docstring) of every generated token.

    Args:
        run: recorded with ``methods=["tam"]``.
        filter_size: the rank Gaussian filter's window (TAM: 3; 1 turns it off).

    Returns:
        ``[T, V]`` float32 in [0, 1].
    """
    logits = run.extras["tam_logits"].double().numpy()  # [S, C]
    classes = run.extras["tam_classes"].numpy()
    column = {int(c): k for k, c in enumerate(classes)}
    rows = logits.shape[0]
    answer = run.token_ids.numpy()
    if rows != int(run.meta.get("tam_rows", rows)) or any(int(c) not in column for c in answer):
        raise EmergenceError("run.extras['tam_logits'] does not belong to this run's answer; record it again")
    prompt_rows = rows - (len(answer) - 1)
    vis = np.asarray(run.layout.positions)
    ctx_pos, ctx_ids = tam_context(run, rows)
    scores = np.maximum(logits, 0.0)
    maps = np.maximum(logits[vis], 0.0)  # [V, C]: each class's raw map
    context_maps = [maps[:, column[int(c)]] for c in ctx_ids]
    context_ids = [int(c) for c in ctx_ids]
    context_rows = list(ctx_pos)
    out = np.zeros((len(answer), len(vis)))
    for t, c in enumerate(answer):
        col = column[int(c)]
        img = maps[:, col].copy()
        text = scores[context_rows, col] if context_rows else np.zeros(0)
        others = [k for k, cid in enumerate(context_ids) if cid != int(c)]
        weights = text[others] if others else np.zeros(0)
        if weights.sum() > 0:
            interference = (np.stack([context_maps[k] for k in others]) * (weights / weights.sum())[:, None]).sum(0)
            energy = float(interference @ interference)
            scale = float(img @ interference) / energy if energy > 0 else 0.0
            img = np.maximum(img - scale * interference, 0.0)
        joint = np.concatenate([img, text])
        lo, hi = joint.min(), joint.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        out[t] = _filter_views(img, run.layout, filter_size) if filter_size > 1 else img
        # token t becomes context of the next ones: its map for its own class, weighted at the row predicting it
        context_maps.append(maps[:, col])
        context_ids.append(int(c))
        context_rows.append(prompt_rows - 1 + t)
    return torch.from_numpy(out).float()
