"""Map methods: the ways the literature turns a multimodal LLM's internals into one map per generated token,
computed from one :class:`~emergence.ProbeRun` and scored by the same analyzer and metrics.

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

Localization heads (Kang et al., CVPR 2025) are a head selection, not a map: :func:`localization_heads` picks
``(layer, head)`` pairs from a calibration set, and ``attention`` restricted to them is the map
(``analyze(..., heads=pairs)``), next to the ground-truth ranking of :func:`emergence.analysis.head_scores`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .analysis.token_maps import MapOptions, normalise as normalise_maps, reduce_attention, token_maps
from .errors import CaptureError, EmergenceError, UnsupportedModelError

__all__ = [
    "METHODS", "GENERIC_PROMPT", "MapMethod", "get_method", "method_maps", "tam_maps", "rank_gaussian_filter",
    "relative_maps", "gradient_attention", "localization_heads", "spatial_entropy", "elbow_value",
]

GENERIC_PROMPT = "Write a general description of the image."
_RECORDED = {"relative": ("generic_attention",), "tam": ("tam_logits", "tam_classes"), "gradient": ("gradient",)}


@dataclass(frozen=True)
class MapMethod:
    """One map method (module docstring).

    Attributes:
        name: ``"attention"``, ``"relative"``, ``"tam"`` or ``"gradient"``.
        normalise: the normalisation it uses when the analysis does not choose one.
        layered: whether single-layer maps exist (the analyzer's emergence layer).
        floor: ``relative`` only: the smallest denominator.
    """

    name: str
    normalise: str
    layered: bool
    floor: float = 1e-6

    @property
    def needs(self) -> tuple[str, ...]:
        """The ``run.extras`` entries this method reads."""
        return _RECORDED.get(self.name, ())

    def check(self, run: Any) -> None:
        """Raise a clear error when ``run`` lacks what this method reads."""
        missing = [k for k in self.needs if k not in run.extras]
        if missing:
            raise EmergenceError(f"map method {self.name!r} needs run.extras {missing}, which this run did not record; "
                                 f"generate it with probe.generate(..., methods=[{self.name!r}])")

    def maps(self, run: Any, options: MapOptions | None = None) -> torch.Tensor:
        """``[T, V]`` float32 maps of every generated token (``options``: layers, heads, normalisation...)."""
        options = options or MapOptions(normalise=self.normalise)  # type: ignore[arg-type]
        self.check(run)
        if self.name in ("relative", "tam") and (options.sink_z is not None or options.remove_corners):
            raise ValueError(f"sink_z / remove_corners act on attention maps; map method {self.name!r} does not "
                             "apply them (leave them unset)")
        if self.name == "attention":
            return token_maps(run, options)
        if self.name == "relative":
            return relative_maps(run, options, floor=self.floor)
        if self.name == "gradient":
            from dataclasses import replace

            return token_maps(replace(run, attention=run.extras["gradient"], extras={}), options)
        if options.layers is not None or options.heads is not None:
            raise ValueError("tam reads the final layer's logits: it takes no layers or heads")
        return normalise_maps(tam_maps(run), options.normalise)


METHODS: dict[str, MapMethod] = {
    "attention": MapMethod("attention", "mean_subtract", layered=True),
    "relative": MapMethod("relative", "none", layered=True),
    "tam": MapMethod("tam", "none", layered=False),
    "gradient": MapMethod("gradient", "none", layered=True),
}


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


def _tam_context(run: Any, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and ids of the prompt's context tokens: after the last visual token and before the prompt's last
    position (whose row starts the answer and weighs the first answer token), special tokens dropped."""
    prompt_rows = rows - (len(run.token_ids) - 1)  # the prompt's length in sequence positions
    ids = run.prompt_ids.numpy()
    special = set(run.meta.get("special_ids", ()))
    first = int(run.layout.positions.max()) + 1 if run.layout.num_tokens else 0
    positions = np.arange(first, prompt_rows - 1)
    token_ids = ids[len(ids) - (prompt_rows - positions)]  # aligned from the end (spliced image tokens)
    keep = np.asarray([int(i) not in special for i in token_ids], dtype=bool)
    return positions[keep], token_ids[keep]


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
    ctx_pos, ctx_ids = _tam_context(run, rows)
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


def _decoder(model: Any) -> Any:
    return model.get_decoder() if hasattr(model, "get_decoder") else model


@contextlib.contextmanager
def record_final_hidden(model: Any) -> Iterator[list[torch.Tensor]]:
    """Collect the language model's final hidden states (after its last norm) of every forward pass inside:
    ``[q, D]`` per pass, in the model's dtype on its device."""
    passes: list[torch.Tensor] = []

    def hook(_module: Any, _args: Any, output: Any) -> None:
        hidden = getattr(output, "last_hidden_state", None)
        if hidden is None and isinstance(output, (tuple, list)):
            hidden = output[0]
        if not isinstance(hidden, torch.Tensor) or hidden.ndim != 3 or hidden.shape[0] != 1:
            raise CaptureError(f"the decoder {type(_module).__name__} returned no [1, q, D] last_hidden_state; "
                               "token activation maps need one")
        passes.append(hidden[0].detach())

    handle = _decoder(model).register_forward_hook(hook)
    try:
        yield passes
    finally:
        handle.remove()


def class_logits(model: Any, hidden: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The model's output logits of ``classes`` ``[C]`` for final hidden states ``[S, D]``: ``[S, C]`` float32,
    with the LM head's bias, ``logit_scale`` / ``logits_scaling`` and final-logit soft-capping where the config has
    them."""
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or weight.shape[1] != hidden.shape[-1]:
        raise UnsupportedModelError(f"{type(model).__name__}'s output embeddings ({type(head).__name__}) are not a "
                                    "linear vocabulary head; token activation maps need one")
    cols = classes.to(weight.device)
    bias = getattr(head, "bias", None)
    with torch.no_grad():
        logits = torch.nn.functional.linear(hidden.to(weight.dtype), weight[cols],
                                            None if bias is None else bias[cols]).float()
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        logits = logits * float(scale)
    scaling = getattr(config, "logits_scaling", None)
    if isinstance(scaling, (int, float)) and not isinstance(scaling, bool) and scaling:
        logits = logits / float(scaling)
    cap = getattr(config, "final_logit_softcapping", None)
    if isinstance(cap, (int, float)) and cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.cpu()


def tam_extras(probe: Any, passes: list[torch.Tensor], run: Any) -> dict[str, torch.Tensor]:
    """``run.extras`` entries of TAM from the recorded passes (the first is the prompt's prefill): the logits of the
    answer's and the context's classes at the ``P + T - 1`` positions the generation computed."""
    steps = len(run.token_ids)
    generation = passes[:steps]  # a later full forward (the "self" convention's capture) is not read
    if len(generation) != steps or any(p.shape[0] != 1 for p in generation[1:]):
        raise CaptureError(f"recorded {len(generation)} decoder passes of {[p.shape[0] for p in generation[:4]]}... "
                           f"rows for {steps} generated tokens; token activation maps need one prefill and one "
                           "single-position step per token (chunked prefill or assisted decoding is unsupported)")
    hidden = torch.cat(generation, dim=0)
    rows = hidden.shape[0]
    ctx_ids = _tam_context(run, rows)[1]
    classes = torch.as_tensor(sorted({int(i) for i in run.token_ids.tolist()} | {int(i) for i in ctx_ids}),
                              dtype=torch.long)
    return {"tam_logits": class_logits(probe.model, hidden, classes), "tam_classes": classes}


# ---------------------------------------------------------------------------------------------------- gradient
@contextlib.contextmanager
def _eager_weights(model: Any, modules: Sequence[Any]) -> Iterator[dict[int, torch.Tensor]]:
    """While inside, ``modules`` run the model's own eager attention and their probabilities ``[1, H, q, k]``
    (in the autograd graph) are kept by layer index; other modules are untouched."""
    from .capture.engine import attention_edit, calls_attention_interface, eager_mask, model_eager_function

    if not all(calls_attention_interface(m) for m in modules):
        raise UnsupportedModelError("gradient maps read the attention probabilities through transformers' attention "
                                    "interface, which these attention modules never call")
    owned = {id(m): m.layer_idx for m in modules}
    kept: dict[int, torch.Tensor] = {}

    def eager(module, query, key, value, attention_mask, *args, **kwargs):
        mask = eager_mask(attention_mask, query, key, kwargs)  # the model's masks are built for its own backend
        output, weights = model_eager_function(module)(module, query, key, value, mask, *args, **kwargs)
        kept[owned[id(module)]] = weights
        return output, weights

    with attention_edit(model, modules, run=eager):  # any active knockout's mask edit applies first
        yield kept


def gradient_attention(probe: Any, run: Any, inputs: dict[str, Any] | None = None) -> torch.Tensor:
    """Gradient-weighted attention of ``run``: for each generated token t, ReLU(d logit_t / d A  x  A) on the row
    that predicts t, at the run's layers, over its visual tokens, reduced like ``run.attention`` (``keep``).

    One teacher-forced forward over prompt + answer through the model's eager attention with gradients, then one
    backward pass per token (memory: the forward's graph; time: about T + 1 forwards).

    Args:
        probe: the :class:`~emergence.Probe` that made ``run``.
        inputs: ``emergence.capture.replay.run_inputs(probe, run)`` (default: re-processed here).

    Returns:
        ``[T, L, H, V]`` / ``[T, L, V]`` / ``[T, V]`` float32, as ``run.attention``.

    Raises:
        UnsupportedModelError: a cross-attention model, or attention that bypasses transformers' interface.
    """
    from .capture.replay import teacher_forced

    if getattr(probe.adapter, "cross_attention", False):
        raise UnsupportedModelError("gradient maps are not available for cross-attention models (Mllama)")
    if run.convention != "predicting":
        raise ValueError("gradient maps follow the predicting convention; generate the run with it")
    full, rows = teacher_forced(probe, run, inputs)
    modules = [m for m in probe.attention_modules if m.layer_idx in set(run.layers)]
    vis = torch.as_tensor(run.layout.positions, dtype=torch.long)
    order = [run.layers.index(m.layer_idx) for m in modules]
    out = torch.zeros(len(run.token_ids), len(run.layers), _heads(modules, probe.model), len(vis))
    with torch.enable_grad(), _eager_weights(probe.model, modules) as kept, probe.upstream_fixes():
        logits = probe.model(**full, use_cache=False).logits[0]
        weights = [kept[m.layer_idx] for m in modules]
        for t, (row, token) in enumerate(zip(rows.tolist(), run.token_ids.tolist())):
            grads = torch.autograd.grad(logits[row, token], weights, retain_graph=t + 1 < len(rows))
            for slot, g, a in zip(order, grads, weights):
                cols = vis.to(a.device)
                out[t, slot] = (g[0, :, row, cols].float() * a[0, :, row, cols].detach().float()).clamp_min(0).cpu()
    if run.keep == "layers":
        return out.mean(2)
    if run.keep == "mean":
        return out.mean((1, 2))
    return out


def _heads(modules: Sequence[Any], model: Any) -> int:
    from .capture.engine import num_attention_heads

    return num_attention_heads(modules[0], model)


# ---------------------------------------------------------------------------------------------------- heads
def _components(grid: np.ndarray, threshold: float) -> tuple[float, np.ndarray]:
    """``(spatial entropy, 8-connected component labels)`` of a 2-D map (:func:`spatial_entropy`)."""
    from scipy.ndimage import label

    grid = np.asarray(grid, dtype=np.float64)
    kept = np.maximum(grid - grid.mean(), 0.0)
    labels, n = label(kept > threshold, structure=np.ones((3, 3)))
    total = kept.sum()
    if total <= 0:
        return float("inf"), labels
    shares = np.asarray([kept[labels == k].sum() for k in range(1, n + 1)]) / total
    shares = shares[shares > 0]
    return float(-(shares * np.log(shares)).sum()), labels


def spatial_entropy(grid: np.ndarray, threshold: float = 1e-3) -> float:
    """LocalizationHeads' spatial entropy of a 2-D attention map: keep ``max(map - mean, 0)``, split the entries
    above ``threshold`` into 8-connected components, and return ``-sum p log p`` over the components' shares of the
    kept mass (``inf`` when nothing is above the mean). Low = one compact region."""
    return _components(grid, threshold)[0]


def elbow_value(values: np.ndarray) -> float:
    """The elbow of the ascending curve of ``values`` (the point farthest from the chord between its ends): heads
    whose attention sum reaches it pass LocalizationHeads' first criterion."""
    y = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if len(y) < 3 or y[-1] == y[0]:
        return float(y[0]) if len(y) else 0.0
    x = np.arange(len(y), dtype=np.float64)
    chord = np.array([x[-1] - x[0], y[-1] - y[0]])
    chord /= np.linalg.norm(chord)
    rel = np.stack([x - x[0], y - y[0]], axis=1)
    dist = np.abs(rel[:, 0] * chord[1] - rel[:, 1] * chord[0])
    return float(y[int(dist.argmax())])


def localization_heads(runs: Sequence[Any], top: int = 3, per_sample: int = 10, threshold: float = 1e-3,
                       exclude_bottom_row: bool = True) -> tuple[list[tuple[int, int]], np.ndarray]:
    """LocalizationHeads' selection (Kang et al., CVPR 2025) over calibration runs, no ground truth.

    Per run, on the row that ends the prompt (step 0 of the predicting convention): heads whose attention sum over
    the visual tokens reaches the elbow of all heads' sums pass (criterion 1; the reference code compares flat head
    indices with the elbow head's index, which we read as the paper's intent: the sums); among them the
    ``per_sample`` with the lowest :func:`spatial_entropy` over the first view's grid are selected (criterion 2),
    leaving out heads whose components cover the whole bottom row (the reference's ``bottom_row_focus`` flag) when
    ``exclude_bottom_row``. The ``top`` heads selected most often over the runs are returned.

    Args:
        runs: calibration runs with keep="heads", predicting convention, one image each.

    Returns:
        ``([(layer, head), ...] best first, frequency [L, H])`` (frequency = share of runs selecting the head).
    """
    if not runs:
        raise ValueError("localization_heads needs at least one calibration run")
    for name, value in (("top", top), ("per_sample", per_sample)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: give a positive number of heads")
    counts: np.ndarray | None = None
    for run in runs:
        if run.keep != "heads" or run.convention != "predicting":
            raise ValueError("localization heads need runs captured with keep='heads' and the predicting convention")
        att = run.attention[0].double().numpy()  # [L, H, V]: the prompt's last row
        n_layers, n_heads, _ = att.shape
        counts = np.zeros((n_layers, n_heads)) if counts is None else counts
        if counts.shape != (n_layers, n_heads):
            raise ValueError("calibration runs hold different layers or heads")
        sums = att.sum(-1)
        passing = sums >= elbow_value(sums)
        index = np.asarray(run.layout.views[0].index)
        entropies = []
        for layer in range(n_layers):
            for head in range(n_heads):
                if not passing[layer, head]:
                    continue
                grid = np.where(index >= 0, att[layer, head][np.maximum(index, 0)], 0.0)
                se, labels = _components(grid, threshold)
                if exclude_bottom_row and np.isfinite(se) and (labels[-1] > 0).all():
                    continue
                entropies.append((se, layer, head))
        entropies.sort()
        for se, layer, head in entropies[:per_sample]:
            if np.isfinite(se):
                counts[layer, head] += 1
    freq = np.asarray(counts) / len(runs)
    order = np.argsort(-freq.reshape(-1), kind="stable")[:top]
    layers = runs[0].layers
    return [(int(layers[i // freq.shape[1]]), int(i % freq.shape[1])) for i in order], freq
