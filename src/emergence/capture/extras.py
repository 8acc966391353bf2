"""What map methods record besides attention, during or after a generation (:mod:`emergence.analysis.methods`).

- token activation maps: the language model's final hidden states, read by a hook during the generation
  (:func:`record_final_hidden`), kept as the logits of the needed classes only (:func:`tam_logits`);
- gradient-weighted attention: one teacher-forced forward through the model's eager attention with gradients and
  one backward pass per generated token (:func:`gradient_attention`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import CaptureError, UnsupportedModelError
from .engine import (
    attention_edit,
    calls_attention_interface,
    eager_mask,
    model_eager_function,
    num_attention_heads,
)
from .replay import teacher_forced

__all__ = ["class_logits", "eager_attention_weights", "gradient_attention", "record_final_hidden", "tam_context",
           "tam_logits"]


def tam_context(run: Any, rows: int) -> tuple[np.ndarray, np.ndarray]:
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


def tam_logits(probe: Any, passes: list[torch.Tensor], run: Any) -> dict[str, torch.Tensor]:
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
    ctx_ids = tam_context(run, rows)[1]
    classes = torch.as_tensor(sorted({int(i) for i in run.token_ids.tolist()} | {int(i) for i in ctx_ids}),
                              dtype=torch.long)
    return {"tam_logits": class_logits(probe.model, hidden, classes), "tam_classes": classes}


@contextlib.contextmanager
def eager_attention_weights(model: Any, modules: Sequence[Any]) -> Iterator[dict[int, torch.Tensor]]:
    """While inside, ``modules`` run the model's own eager attention and their probabilities ``[1, H, q, k]``
    (in the autograd graph) are kept by layer index; other modules are untouched."""
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
    if getattr(probe.adapter, "cross_attention", False):
        raise UnsupportedModelError("gradient maps are not available for cross-attention models (Mllama)")
    if run.convention != "predicting":
        raise ValueError("gradient maps follow the predicting convention; generate the run with it")
    full, rows = teacher_forced(probe, run, inputs)
    modules = [m for m in probe.attention_modules if m.layer_idx in set(run.layers)]
    vis = torch.as_tensor(run.layout.positions, dtype=torch.long)
    order = [run.layers.index(m.layer_idx) for m in modules]
    out = torch.zeros(len(run.token_ids), len(run.layers), num_attention_heads(modules[0], probe.model), len(vis))
    with torch.enable_grad(), eager_attention_weights(probe.model, modules) as kept, probe.upstream_fixes():
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
