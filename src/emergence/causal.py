"""Causal checks: is the attention we read the attention the model uses?

Two interventions, each a scoped context manager that leaves the model exactly as it was on exit:

- :func:`ablate_heads` zeroes chosen heads' contribution (their slice of the input of the attention module's output
  projection, ``o_proj`` / ``dense`` / ``out_proj``), or replaces it by its mean over reference inputs
  (:func:`head_means`), so the rest of the network never sees what those heads read;
- :func:`knockout` blocks attention from every text position after the image to chosen visual tokens (all layers and
  heads, or the layers / heads given), through the model's own attention function: the mask of those keys becomes
  ``-inf`` for those queries, so the softmax renormalises over the rest.

:func:`answer_effects` measures one intervention on one run: one teacher-forced forward over the prompt and the run's
own answer gives, under the intervention, every answer token's log-probability and the attention rows that predict
each token (captured exactly as in :meth:`emergence.Probe.generate`); :func:`free_answer` generates anew under it.
:func:`emergence.studies.causal.evaluate_causal` runs the whole study on the model organism (top localization heads
vs random vs lowest; knockout inside vs outside the objects), and ``emergence organism causal`` is its command.

Both interventions act through PyTorch hooks and transformers' attention interface (the project's own scoped
mechanisms). Inside nnsight, write the intervention there and record it with :meth:`emergence.Probe.capture`: a head
ablation written as an nnsight intervention gives the same run as :func:`ablate_heads` (``tests/test_nnsight.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .capture.engine import AttentionCapture, attention_edit, calls_attention_interface, num_attention_heads
from .capture.replay import run_inputs, teacher_forced
from .errors import CaptureError, UnsupportedModelError

__all__ = ["ablate_heads", "answer_effects", "answer_log_probs", "free_answer", "head_means", "knockout",
           "run_inputs"]


#: names of an attention module's output projection, which reads the heads' outputs concatenated ``[..., H * D]``
#: (Llama-style ``o_proj``; Persimmon / Fuyu, Phi ``dense``; CLIP-style ``out_proj``)
OUTPUT_PROJECTIONS = ("o_proj", "dense", "out_proj")


def output_projection(module: nn.Module) -> nn.Module:
    """The attention module's output projection (the first of :data:`OUTPUT_PROJECTIONS` it has).

    Raises:
        UnsupportedModelError: it has none (a fused projection cannot be cut by head).
    """
    for name in OUTPUT_PROJECTIONS:
        proj = getattr(module, name, None)
        if isinstance(proj, nn.Module):
            return proj
    raise UnsupportedModelError(f"{type(module).__name__} has no output projection ({', '.join(OUTPUT_PROJECTIONS)}): "
                                "its heads cannot be ablated one by one here")


def _modules(probe_or_model: Any) -> tuple[nn.Module, list[nn.Module]]:
    model = getattr(probe_or_model, "model", probe_or_model)
    modules = getattr(probe_or_model, "attention_modules", None)
    if modules is None:
        from .adapters import adapter_for

        modules = adapter_for(model).attention_modules(model)
    return model, list(modules)


@contextlib.contextmanager
def ablate_heads(probe_or_model: Any, heads: Sequence[tuple[int, int]], mode: str = "zero",
                 means: dict[int, torch.Tensor] | None = None) -> Iterator[None]:
    """Remove the contribution of ``heads`` (``(layer, head)`` pairs, language-model layer indices) while inside.

    The attention module's output projection (``o_proj``, ``dense`` or ``out_proj``) receives the heads' outputs
    concatenated ``[..., H * D]``; a scoped pre-hook sets each chosen head's ``D`` columns, before the projection,
    to 0 (``mode="zero"``) or to their mean over reference inputs (``mode="mean"``, ``means`` from
    :func:`head_means`: layer -> ``[H * D]``).

    Raises:
        UnsupportedModelError: an attention module has no output projection (a fused one cannot be cut by head).
        ValueError: a layer or head index that the model does not have; ``mode="mean"`` without that layer's mean.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode={mode!r} is not 'zero' or 'mean'")
    model, modules = _modules(probe_or_model)
    by_layer = {m.layer_idx: m for m in modules}
    chosen: dict[int, list[int]] = {}
    for layer, head in heads:
        module = by_layer.get(int(layer))
        if module is None:
            raise ValueError(f"layer {layer} is not a captured language-model layer ({sorted(by_layer)})")
        n_heads = num_attention_heads(module, model)
        if not 0 <= int(head) < n_heads:
            raise ValueError(f"head {head} of layer {layer} does not exist (0..{n_heads - 1})")
        chosen.setdefault(int(layer), []).append(int(head))
    if mode == "mean":
        missing = sorted(set(chosen) - set(means or {}))
        if missing:
            raise ValueError(f"mode='mean' needs means for layers {missing}: compute them with head_means(...)")
    handles = []
    try:
        for layer, hs in chosen.items():
            module = by_layer[layer]
            proj = output_projection(module)
            n_heads = num_attention_heads(module, model)
            dim = proj.in_features // n_heads if hasattr(proj, "in_features") else module.head_dim
            cols = torch.cat([torch.arange(h * dim, (h + 1) * dim) for h in hs])

            fill = None if mode == "zero" else means[layer]  # type: ignore[index]
            width = n_heads * dim
            if fill is not None and tuple(fill.shape) != (width,):
                raise ValueError(f"means[{layer}] has shape {tuple(fill.shape)}, but layer {layer}'s heads feed "
                                 f"[{width}] values to its output projection: compute the means with "
                                 "head_means(probe, runs) on this model")

            def replace(_m: nn.Module, args: tuple[Any, ...], cols: torch.Tensor = cols,
                        fill: torch.Tensor | None = fill) -> tuple[Any, ...]:
                x = args[0].clone()
                idx = cols.to(x.device)
                x[..., idx] = 0 if fill is None else fill.to(x.device, x.dtype)[idx]
                return (x, *args[1:])

            handles.append(proj.register_forward_pre_hook(replace))
        yield
    finally:
        for handle in handles:
            handle.remove()


def head_means(probe: Any, runs: Sequence[Any]) -> dict[int, torch.Tensor]:
    """Each captured layer's mean output-projection input ``[H * D]`` (every head's output) over all positions of one
    teacher-forced forward per run (its prompt and answer): the reference for ``ablate_heads(mode="mean")``."""
    sums: dict[int, torch.Tensor] = {}
    counts = 0
    handles = []

    def make(layer: int) -> Any:
        def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
            flat = args[0].detach().float().reshape(-1, args[0].shape[-1])
            sums[layer] = sums.get(layer, 0) + flat.sum(0).cpu()
        return hook

    try:
        for module in probe.attention_modules:
            handles.append(output_projection(module).register_forward_pre_hook(make(module.layer_idx)))
        for run in runs:
            full, _ = teacher_forced(probe, run)
            with torch.no_grad(), probe.upstream_fixes():
                probe.model(**full, use_cache=False)
            counts += full["input_ids"].shape[1]
    finally:
        for handle in handles:
            handle.remove()
    if not counts:
        raise ValueError("head_means needs at least one run")
    return {layer: total / counts for layer, total in sums.items()}


@contextlib.contextmanager
def knockout(probe_or_model: Any, keys: Sequence[int] | torch.Tensor, from_position: int,
             layers: Sequence[int] | None = None, heads: Sequence[tuple[int, int]] | None = None) -> Iterator[None]:
    """Block attention from every query at sequence position ``>= from_position`` to the key positions ``keys``
    in the given language-model ``layers`` (default all), or only in the given ``heads`` (``(layer, head)``
    pairs; the other heads of those layers are untouched), while inside.

    A capture of the same modules records the knocked-out attention (the mask the model used), whether it was
    entered before or inside the knockout; knockouts, captures and gradient maps of other models may run in other
    threads at the same time (they all go through the capture's dispatcher).

    Raises:
        ValueError: a negative key position or ``from_position``, or a head outside ``0..heads-1``.
        CaptureError: the model's attention does not go through transformers' attention interface, a layer uses
            a sliding-window cache, a query would have every key blocked, or (on leaving the block) some key or
            ``from_position`` lay beyond every sequence the knockout saw, so it blocked nothing there.
    """
    model, modules = _modules(probe_or_model)
    if layers is not None and heads is not None:
        raise ValueError("pass layers or heads, not both")
    if isinstance(from_position, bool) or not isinstance(from_position, int) or from_position < 0:
        raise ValueError(f"from_position={from_position!r}: give the sequence position (>= 0) of the first query to "
                         "block; negative positions are not counted from the end")
    per_layer: dict[int, list[int]] = {}
    n_heads = num_attention_heads(modules[0], model) if modules else 0
    for layer, head in heads or ():
        if not 0 <= int(head) < n_heads:
            raise ValueError(f"heads: ({layer}, {head}) names head {head}, but the layers have heads 0..{n_heads - 1} "
                             "(negative indices are not counted from the end)")
        per_layer.setdefault(int(layer), []).append(int(head))
    if layers is not None or heads is not None:
        wanted = {int(i) for i in layers} if layers is not None else set(per_layer)
        missing = sorted(wanted - {m.layer_idx for m in modules})
        if missing:
            raise ValueError(f"layers {missing} are not captured language-model layers")
        modules = [m for m in modules if m.layer_idx in wanted]
    if not all(calls_attention_interface(m) for m in modules):
        raise CaptureError("knockout edits the attention mask through transformers' attention interface, which these "
                           "attention modules never call")
    key_idx = torch.as_tensor(keys, dtype=torch.long).flatten()
    if key_idx.numel() == 0 or int(key_idx.min()) < 0:
        raise ValueError(f"keys must be key positions >= 0 (got {key_idx.tolist()[:8]}); negative positions are not "
                         "counted from the end")

    longest = [0]  # the longest sequence a pass of the knockout saw

    def blocked(module, query, key, attention_mask, kwargs):
        if kwargs.get("sliding_window"):
            raise CaptureError("knockout does not support sliding-window attention layers")
        longest[0] = max(longest[0], key.shape[2])
        return _blocked_mask(attention_mask, query, key, key_idx, from_position, per_layer.get(module.layer_idx))

    with attention_edit(model, modules, mask=blocked):
        yield
    if longest[0] and (int(key_idx.max()) >= longest[0] or from_position >= longest[0]):
        raise CaptureError(f"knockout: key positions up to {int(key_idx.max())} and from_position={from_position} "
                           f"must lie inside the sequence (at most {longest[0]} positions were seen); it blocked "
                           "nothing there, so the results inside it are not a knockout's")


def _blocked_mask(mask: Any, query: torch.Tensor, key: torch.Tensor, keys: torch.Tensor, start: int,
                  heads: list[int] | None = None) -> torch.Tensor:
    """The attention mask with the (query >= start, key in keys) entries blocked, in every head or only in
    ``heads`` (the mask then gains a head dimension); ``None`` (causal) made explicit."""
    q_len, kv_len = query.shape[2], key.shape[2]
    device = query.device
    q_pos = kv_len - q_len + torch.arange(q_len, device=device)  # full caches: key index = sequence position
    block = torch.zeros(q_len, kv_len, dtype=torch.bool, device=device)
    keys = keys.to(device)
    block[(q_pos >= start).nonzero().flatten()[:, None], keys[keys < kv_len][None, :]] = True
    if heads is not None:
        chosen = torch.zeros(query.shape[1], dtype=torch.bool, device=device)
        chosen[torch.as_tensor(heads, device=device)] = True
        block = block[None] & chosen[:, None, None]  # [H, q, kv]
    if mask is None:
        causal = torch.arange(kv_len, device=device)[None, :] <= q_pos[:, None]
        allowed = causal & ~block
        _check_rows(allowed)
        return allowed[None] if allowed.ndim == 3 else allowed[None, None]
    if not (isinstance(mask, torch.Tensor) and mask.ndim == 4):
        raise CaptureError(f"knockout cannot edit an attention mask of type {type(mask).__name__}; use "
                           "attn_implementation='sdpa' or 'eager'")
    mask = mask[..., :kv_len]
    if block.ndim == 3:
        mask = mask.expand(-1, block.shape[0], -1, -1)
    if mask.dtype == torch.bool:
        edited = mask & ~block
        _check_rows(edited)
        return edited
    edited = mask.masked_fill(block, torch.finfo(mask.dtype).min)
    _check_rows(edited > torch.finfo(mask.dtype).min / 2)
    return edited


def _check_rows(allowed: torch.Tensor) -> None:
    """Refuse a knockout that leaves some query row with no key at all (its softmax would be uniform over keys it
    must not see, or NaN)."""
    if not bool(allowed.any(dim=-1).all()):
        raise CaptureError("knockout blocks every key of some query (the blocked keys are all it may attend to); "
                           "leave at least one key, e.g. the first token, unblocked")


def _picked_log_probs(logits: torch.Tensor, rows: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    log_probs = torch.log_softmax(logits[rows.to(logits.device)].float(), dim=-1)
    return log_probs.gather(1, token_ids.to(logits.device)[:, None])[:, 0].cpu()


def answer_log_probs(probe: Any, run: Any, inputs: dict[str, Any] | None = None) -> torch.Tensor:
    """``[T]`` float32: each of ``run``'s answer tokens' log-probability in one teacher-forced forward over its
    prompt and answer, under whatever intervention is active (no capture). ``inputs``: :func:`run_inputs`."""
    full, rows = teacher_forced(probe, run, inputs)
    with torch.no_grad(), probe.upstream_fixes():
        logits = probe.model(**full, use_cache=False).logits[0]
    return _picked_log_probs(logits, rows, run.token_ids)


def answer_effects(probe: Any, run: Any, keep: str = "heads", inputs: dict[str, Any] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One teacher-forced forward over ``run``'s prompt and answer, under whatever intervention is active: the
    attention rows that predict each answer token (over ``run.layout``'s visual tokens, the run's layers) and each
    answer token's log-probability. ``inputs``: :func:`run_inputs` (default: re-processed here).

    Returns:
        ``(attention [T, L, H, V] float32, log_probs [T] float32)``.
    """
    full, rows = teacher_forced(probe, run, inputs)
    with AttentionCapture(probe.model, run.layout.positions, keep=keep, layers=run.layers, query_positions=rows,
                          storage_dtype=torch.float32, modules=probe.attention_modules) as cap, torch.no_grad(), \
            probe.upstream_fixes():
        logits = probe.model(**full, use_cache=False).logits[0]
    return cap.maps(), _picked_log_probs(logits, rows, run.token_ids)


def free_answer(probe: Any, run: Any, max_new_tokens: int | None = None, inputs: dict[str, Any] | None = None
                ) -> list[int]:
    """Greedy generation for ``run``'s image and prompt under whatever intervention is active (no capture).
    ``inputs``: :func:`run_inputs` (default: re-processed here)."""
    inputs = run_inputs(probe, run) if inputs is None else inputs
    n = max_new_tokens or int(run.meta.get("max_new_tokens", len(run.token_ids)))
    pad = getattr(probe.tokenizer, "pad_token_id", None)
    kwargs = {"max_new_tokens": n, "do_sample": False, **({"pad_token_id": pad} if pad is not None else {})}
    with torch.no_grad(), probe.upstream_fixes():
        sequences = probe.adapter.generate(probe.model, inputs, **kwargs)
    return sequences[0, inputs["input_ids"].shape[1]:].tolist()
