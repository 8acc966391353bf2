"""Exact, low-memory capture of language-model attention over visual tokens.

How it works
------------
Every transformers model resolves its attention function at call time with
``ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)``. Inside
:class:`AttentionCapture` we register, under the model's *own* backend key (``"sdpa"``, ``"eager"``,
``"flash_attention_2"``, ...), a wrapper that

1. calls the real backend unchanged for the layer output (so generations are identical to plain ``generate``), and
2. for the language-model attention modules only, recomputes ``softmax(q k^T * scale + mask)`` for the ONE query row
   that is needed (the last position of the forward pass), over all keys, and keeps the slice at the visual key
   positions.

The model's mask creation is untouched (we do not switch ``config._attn_implementation``), so padding, sliding
windows, bidirectional image prefixes and flash-attention kwargs are exactly those of the backend. The extra cost per
layer and step is one ``q . K^T`` row product; the memory kept per step is ``layers x heads x visual_tokens``.

The registration is scoped: on exit (normal or exception) the interface mapping is restored exactly.

Fallback for modules that never call the attention interface (remote code that computes attention by hand, or any
model forced through it): ``mechanism="hooks"`` registers, for the capture's lifetime only, forward hooks on the
captured attention modules. A pre-hook asks the module for its attention weights (``output_attentions=True`` when its
``forward`` takes it); the forward hook keeps the needed query rows at the visual key columns and drops the full
weights from the module's output at once, so only ``layers x heads x visual_tokens`` per step outlives the layer. The
module computes the full ``[heads, q_len, kv_len]`` weights of each pass itself (eager attention), which is what
this path costs over the main one (``bench/capture_overhead.py --variants hooks``); probabilities are the module's,
in its dtype (exact in float32). Inside a hooks capture the captured modules return ``None`` for their weights, so a
caller's own ``output_attentions`` gets nothing for those layers.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import nn

from ..errors import CaptureError, UnsupportedModelError

__all__ = ["AttentionCapture", "KeepMode", "Mechanism", "attention_edit", "calls_attention_interface", "eager_mask",
           "find_cache", "language_model_attention_modules", "lm_config", "model_eager_function",
           "num_attention_heads", "row_attention_probs"]

KeepMode = Literal["heads", "layers", "mean"]
_KEEP_MODES = ("heads", "layers", "mean")
Mechanism = Literal["interface", "hooks"]
_MECHANISMS = ("interface", "hooks")
_MISSING = object()


def language_model_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of ``model``'s language model, in layer order, as its adapter selects them
    (:meth:`emergence.adapters.Adapter.attention_modules`).

    Raises:
        UnsupportedModelError: no language-model attention module was found.
    """
    from ..adapters import adapter_for

    return adapter_for(model).attention_modules(model)


def find_cache(kwargs: dict[str, Any]) -> Any:
    """The KV cache among a module call's keyword arguments, found by what it is (a transformers ``Cache``), not by
    its name: transformers up to 5.23 passes it as ``past_key_values=``, 5.24 and later as ``cache=``. ``None`` when
    the call carries no cache (``use_cache=False``)."""
    from transformers.cache_utils import Cache

    for name in ("cache", "past_key_values", "past_key_value"):  # the names used so far, in the newest-first order
        value = kwargs.get(name)
        if isinstance(value, Cache):
            return value
    return next((value for value in kwargs.values() if isinstance(value, Cache)), None)


def num_attention_heads(module: nn.Module, model: nn.Module) -> int:
    """The number of query heads of one attention module (its own attribute or config, else the language model's)."""
    for name in ("num_heads", "num_attention_heads"):
        value = getattr(module, name, None) or getattr(getattr(module, "config", None), name, None)
        if isinstance(value, int):
            return value
    return int(lm_config(model).num_attention_heads)


def lm_config(model: nn.Module) -> Any:
    """The language model's config (the decoder's, else the model's)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    return getattr(decoder, "config", None) or model.config


def row_attention_probs(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    rows: torch.Tensor | None,
    columns: torch.Tensor | slice,
    kwargs: dict[str, Any],
) -> torch.Tensor:
    """Attention probabilities of some query rows, restricted to some key columns.

    Computes ``softmax(q_rows . K^T * scale + mask)`` over ALL keys in float32 (the softmax needs every key), then
    returns only ``columns``. Grouped-query attention is handled without repeating the key heads.

    Args:
        module: the attention module (for ``scaling`` and ``num_key_value_groups`` fallbacks).
        query: ``[batch, heads, q_len, head_dim]``.
        key: ``[batch, kv_heads, kv_len, head_dim]`` (cache included).
        attention_mask: ``None`` (causal), boolean ``[batch, 1|heads, q_len, >=kv_len]`` (True = attend) or additive
            float of the same shape.
        rows: ``[R]`` long tensor of indices into ``q_len``; ``None`` = the last row only (the fast path of decoding).
        columns: ``[V]`` long tensor of key positions to keep, or a ``slice`` of them (contiguous block, no copy).
        kwargs: the keyword arguments the model passed to its attention function (``scaling``, ``softcap``,
            ``sliding_window``, ``s_aux``).

    Returns:
        ``[batch, heads, R, V]`` float32 probabilities.
    """
    batch, heads, q_len, dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    if heads % kv_heads:
        raise CaptureError(f"query heads ({heads}) is not a multiple of key/value heads ({kv_heads})")
    scaling = kwargs.get("scaling")
    if scaling is None:
        scaling = getattr(module, "scaling", None) or dim**-0.5
    q = query[:, :, -1:] if rows is None else query.index_select(2, rows)
    n_rows = q.shape[2]
    q = q.float() * scaling
    # [B, KVH, rep * R, D] @ [B, KVH, D, S]: query heads of one key/value group share its keys (no repeat_kv)
    q = q.reshape(batch, kv_heads, (heads // kv_heads) * n_rows, dim)
    logits = torch.matmul(q, key.float().transpose(-1, -2)).view(batch, heads, n_rows, kv_len)
    softcap = kwargs.get("softcap")
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap

    if attention_mask is None:
        # Causal without a materialised mask (sdpa's is_causal path, flash): row r sits at kv_len - q_len + r.
        # The last row of a pass sees every key unless a sliding window cuts it.
        window = kwargs.get("sliding_window")
        if rows is not None or (window and kv_len > window):
            row_idx = torch.tensor([q_len - 1], device=logits.device) if rows is None else rows
            q_pos = (kv_len - q_len + row_idx)[:, None]  # [R, 1]
            positions = torch.arange(kv_len, device=logits.device)[None, :]
            blocked = positions > q_pos
            if window:
                blocked |= positions <= q_pos - window
            logits = logits.masked_fill(blocked, float("-inf"))
    elif isinstance(attention_mask, torch.Tensor) and attention_mask.ndim == 4:
        mask = attention_mask[:, :, -1:, :kv_len] if rows is None else attention_mask[:, :, :, :kv_len].index_select(
            2, rows.to(attention_mask.device)
        )
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask.float()
    else:
        raise CaptureError(
            f"Unsupported attention mask for capture: {type(attention_mask).__name__} with shape "
            f"{getattr(attention_mask, 'shape', None)}. Use attn_implementation='sdpa' or 'eager'."
        )

    sinks = kwargs.get("s_aux")
    if sinks is not None:  # attention sinks (gpt-oss style): one extra logit per head in the denominator
        sink_logits = sinks.float().reshape(1, heads, 1, 1).expand(batch, heads, n_rows, 1)
        lse = torch.logsumexp(torch.cat([logits, sink_logits], dim=-1), dim=-1, keepdim=True)
        return torch.exp(_take(logits, columns) - lse)
    return _take(torch.softmax(logits, dim=-1), columns)


def eager_mask(attention_mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor,
               kwargs: dict[str, Any]) -> torch.Tensor:
    """The attention mask in the form eager attention adds to its logits: float ``[B|1, 1|H, q_len, kv_len]`` in
    ``query``'s dtype, 0 where a query attends and the dtype's minimum where it does not. A model loaded with another
    backend builds its masks for that backend: ``None`` for plainly causal attention under sdpa / flash (made causal
    here, the sliding window in ``kwargs`` honoured), boolean under sdpa (True = attend); float masks pass through.
    Calling a model's eager function with such a mask as it is would silently drop the masking."""
    if attention_mask is not None and attention_mask.is_floating_point():
        return attention_mask
    q_len, kv_len = query.shape[2], key.shape[2]
    if attention_mask is None:
        q_pos = (kv_len - q_len + torch.arange(q_len, device=query.device))[:, None]
        k_pos = torch.arange(kv_len, device=query.device)[None, :]
        allowed = k_pos <= q_pos
        window = kwargs.get("sliding_window")
        if window:
            allowed &= k_pos > q_pos - window
        allowed = allowed[None, None]
    elif attention_mask.dtype == torch.bool:
        allowed = attention_mask
    else:
        raise CaptureError(f"an attention mask of dtype {attention_mask.dtype} cannot be given to eager attention")
    blocked = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device)
    return blocked.masked_fill(~allowed, torch.finfo(query.dtype).min)


def _ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``'0..2, 5'``."""
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in out)


def _text_start_hook(capture: AttentionCapture) -> Any:
    """A scoped forward pre-hook on the language model that stores, as each pass starts, how many text positions the
    cache already holds (the pass's first query row): cross-attention calls see only vision keys, not the text."""
    model = capture.model
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    config = lm_config(model)
    cross = set(getattr(config, "cross_attention_layers", None) or ())
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    text_layer = next((i for i in range(layers) if i not in cross), 0)  # a self-attention layer of the cache

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        cache = find_cache(kwargs)
        capture._text_start = int(cache.get_seq_length(text_layer)) if cache is not None else 0

    return decoder.register_forward_pre_hook(hook, with_kwargs=True)


def _weight_hooks(capture: AttentionCapture) -> list[Any]:
    """Scoped hooks on each captured module (``mechanism="hooks"``): ask for the weights, keep the needed rows, drop
    the weights from the output."""
    handles: list[Any] = []

    def ask(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if _takes_output_attentions(module):
            kwargs["output_attentions"] = True
        return args, kwargs

    def keep(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        if not capture._active:
            return output
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if not (isinstance(weights, torch.Tensor) and weights.ndim == 4):
            raise CaptureError(
                f"{type(module).__name__} (layer {getattr(module, 'layer_idx', '?')}) returned no attention weights "
                "for the hooks capture: load the model with attn_implementation='eager', or make the module's forward "
                "return (output, weights [batch, heads, q_len, kv_len], ...)"
            )
        capture._record_weights(capture._slot[id(module)], weights)
        return (output[0], None, *output[2:])  # the full weights are freed now, not kept by the caller

    try:
        for module in capture._modules:
            if id(module) not in capture._slot:
                continue
            handles.append(module.register_forward_pre_hook(ask, with_kwargs=True))
            handles.append(module.register_forward_hook(keep, with_kwargs=True))
    except BaseException:
        for handle in handles:
            handle.remove()
        raise
    return handles


_CALLS_INTERFACE: dict[type, bool] = {}


def calls_attention_interface(module: nn.Module) -> bool:
    """Whether ``module``'s forward goes through transformers' attention interface (its source names
    ``ALL_ATTENTION_FUNCTIONS``), which the main capture path needs; remote-code classes that compute attention by
    hand do not (capture those with ``mechanism="hooks"``). Unreadable source counts as calling it."""
    cls = type(module)
    found = _CALLS_INTERFACE.get(cls)
    if found is None:
        try:
            found = "ALL_ATTENTION_FUNCTIONS" in inspect.getsource(cls.forward)
        except (OSError, TypeError):
            found = True
        _CALLS_INTERFACE[cls] = found
    return found


def _takes_output_attentions(module: nn.Module) -> bool:
    try:
        return "output_attentions" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def _take(x: torch.Tensor, columns: torch.Tensor | slice) -> torch.Tensor:
    """``x[..., columns]``; ``columns`` ``[B, V]`` picks each batch element's own columns of ``x`` ``[B, ..., K]``."""
    if isinstance(columns, slice):
        return x[..., columns]
    if columns.ndim == 2:
        index = columns.view(columns.shape[0], *([1] * (x.ndim - 2)), columns.shape[1])
        return x.gather(-1, index.expand(*x.shape[:-1], columns.shape[1]))
    return x.index_select(-1, columns)


_DEFAULT_IN_SOURCE = re.compile(r"get_interface\(\s*[\w.]+\s*,\s*(\w+)\s*\)")
_EAGER_BY_CLASS: dict[type, Callable[..., Any]] = {}


def model_eager_function(module: nn.Module) -> Callable[..., Any]:
    """What ``module`` runs for ``'eager'``: the default its ``forward`` hands to
    ``ALL_ATTENTION_FUNCTIONS.get_interface(...)`` (read from its source: some classes pass their own, e.g. Llama 4's
    vision attention passes ``vision_eager_attention_forward``), else the ``eager_attention_forward`` defined next to
    its class."""
    cls = type(module)
    found = _EAGER_BY_CLASS.get(cls)
    if found is not None:
        return found
    for klass in cls.__mro__:
        forward = klass.__dict__.get("forward")
        if forward is None:
            continue
        try:
            match = _DEFAULT_IN_SOURCE.search(inspect.getsource(forward))
        except (OSError, TypeError):
            match = None
        fn = getattr(sys.modules.get(klass.__module__), match.group(1), None) if match else None
        if callable(fn):
            _EAGER_BY_CLASS[cls] = fn
            return fn
        break  # the forward that runs names no default: fall back to the module-level function
    for klass in cls.__mro__:
        fn = getattr(sys.modules.get(klass.__module__), "eager_attention_forward", None)
        if fn is not None:
            _EAGER_BY_CLASS[cls] = fn
            return fn
    raise UnsupportedModelError(
        f"{cls.__name__} has no eager_attention_forward next to its class; capture it with "
        "attn_implementation='sdpa' instead."
    )


class _Edit:
    """An intervention on the attention of some modules, registered with the dispatcher (:func:`attention_edit`)."""

    def __init__(self, model: nn.Module, modules: Sequence[nn.Module], mask: Callable[..., Any] | None,
                 run: Callable[..., Any] | None) -> None:
        self.model, self._modules, self.mask, self.run = model, list(modules), mask, run
        self.backend: str = getattr(lm_config(model), "_attn_implementation", None) or "eager"
        self._thread: int | None = None


class _Dispatcher:
    """The one function per backend key that transformers calls while any capture or attention edit is active.

    EVERY change the toolkit makes to ``ALL_ATTENTION_FUNCTIONS`` goes through here: captures
    (:class:`AttentionCapture`) and edits (:func:`attention_edit`: the knockout's mask edits, the gradient map's
    eager weights) register with it, and while at least one of them uses a backend key a single dispatch function is
    registered under that key. For the calling attention module (found by module identity, so it works from any
    thread, e.g. a streamer's generation thread) it applies the module's edits (each mask edit in order of entry,
    then the last entered replacement of the backend), calls the backend that was registered before the first user,
    and hands the call, with the mask that was used, to the captures that own the module. So a capture records the
    attention the model used whatever the order in which captures and edits were entered.
    Captures and edits of one model may nest within one thread; those of a model that another thread is using are
    refused, since the two could not tell their forward passes apart. Registration is reference-counted: the
    original mapping is restored exactly when the last user of a key exits, in whatever order users exit.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owners: dict[int, list[AttentionCapture]] = {}
        self._edits: dict[int, list[_Edit]] = {}
        self._users: dict[str, int] = {}
        self._previous: dict[str, Any] = {}

    def _check_thread(self, user: AttentionCapture | _Edit) -> None:
        user._thread = threading.get_ident()
        for m in user._modules:
            for other in (*self._owners.get(id(m), ()), *self._edits.get(id(m), ())):
                if other._thread != user._thread:
                    raise CaptureError(
                        f"{type(user.model).__name__} is already being captured or edited (an AttentionCapture, a "
                        "knockout or a gradient map) in another thread; use one model per thread at a time, or load "
                        "a second copy of the model for concurrent work"
                    )

    def _register(self, backend: str) -> None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        if self._users.get(backend, 0) == 0:
            previous = ALL_ATTENTION_FUNCTIONS._local_mapping.get(backend, _MISSING)
            self._previous[backend] = previous
            target = previous if previous is not _MISSING else ALL_ATTENTION_FUNCTIONS._global_mapping.get(backend)
            ALL_ATTENTION_FUNCTIONS[backend] = self._make_dispatch(target)
        self._users[backend] = self._users.get(backend, 0) + 1

    def _unregister(self, backend: str) -> None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        left = self._users.get(backend, 0) - 1
        if left > 0:
            self._users[backend] = left
            return
        self._users.pop(backend, None)
        previous = self._previous.pop(backend, _MISSING)
        if previous is _MISSING:
            ALL_ATTENTION_FUNCTIONS._local_mapping.pop(backend, None)
        else:
            ALL_ATTENTION_FUNCTIONS._local_mapping[backend] = previous

    def attach(self, user: AttentionCapture | _Edit) -> None:
        with self._lock:
            self._check_thread(user)
            self._register(user.backend)
            table = self._edits if isinstance(user, _Edit) else self._owners
            for m in user._modules:
                table.setdefault(id(m), []).append(user)  # type: ignore[arg-type]

    def detach(self, user: AttentionCapture | _Edit) -> None:
        with self._lock:
            table = self._edits if isinstance(user, _Edit) else self._owners
            for m in user._modules:
                left = [u for u in table.get(id(m), ()) if u is not user]
                if left:
                    table[id(m)] = left  # type: ignore[assignment]
                else:
                    table.pop(id(m), None)
            self._unregister(user.backend)

    def _make_dispatch(self, backend_fn: Callable[..., Any] | None) -> Callable[..., Any]:
        owners, edits = self._owners, self._edits

        def capture_attention(module, query, key, value, attention_mask, *args, **kwargs):
            fn = backend_fn if backend_fn is not None else model_eager_function(module)
            for edit in edits.get(id(module), ()):
                if edit.mask is not None:
                    attention_mask = edit.mask(module, query, key, attention_mask, kwargs)
                if edit.run is not None:
                    fn = edit.run
            output = fn(module, query, key, value, attention_mask, *args, **kwargs)
            for capture in owners.get(id(module), ()):
                slot = capture._slot.get(id(module))
                if slot is not None and capture._active:
                    capture._record(slot, module, query, key, attention_mask, kwargs)
            return output

        return capture_attention


_dispatcher = _Dispatcher()


@contextlib.contextmanager
def attention_edit(model: nn.Module, modules: Sequence[nn.Module], mask: Callable[..., Any] | None = None,
                   run: Callable[..., Any] | None = None) -> Iterator[None]:
    """While inside, the attention of ``modules`` (attention modules of ``model`` that call transformers' attention
    interface) is edited through the capture dispatcher, the one place that changes transformers' attention
    registry:

    - ``mask(module, query, key, attention_mask, kwargs) -> attention_mask``: the mask the backend (and any capture
      of these modules) then uses;
    - ``run(module, query, key, value, attention_mask, *args, **kwargs) -> (output, weights)``: replaces the backend
      for these modules.

    Edits and captures may be entered in any order and nest; a model edited or captured in another thread is
    refused. Nothing stays registered after the block.
    """
    edit = _Edit(model, modules, mask, run)
    _dispatcher.attach(edit)
    try:
        yield
    finally:
        _dispatcher.detach(edit)


class AttentionCapture:
    """Context manager that records language-model attention over visual keys during forward passes.

    Every forward pass of the model inside the context is one *step*. By default the recorded row of a step is the
    last query position of that pass (during ``generate``: at step 0 the last prompt position, then each newly fed
    token), which is the row that PREDICTS the next token. With ``query_positions`` set, every pass records the rows at
    those absolute sequence positions instead (used for the "self" convention on one full forward). Per step, row
    and captured layer, the probabilities over ``visual_positions`` are reduced according to ``keep`` and stored.

    Args:
        model: a loaded transformers model (any ``*ForConditionalGeneration`` / ``*ForImageTextToText``).
        visual_positions: ``[V]`` sequence positions of the visual tokens (keys to keep); for a batch whose items
            hold different visual tokens (left-padded prompts, images of different sizes), one sequence per batch
            element: each element keeps its own ``V_b`` keys (stored up to the batch's largest ``V``;
            :meth:`maps` returns each element's own).
        keep: ``"heads"`` -> ``[rows, L, H, V]``; ``"layers"`` -> ``[rows, L, V]`` (head mean);
            ``"mean"`` -> ``[rows, V]`` (layer and head mean). ``rows`` = steps x rows per step.
        layers: language-model layer indices to capture (default: all).
        storage_dtype: dtype of the stored maps (float16 by default; probabilities are computed in float32).
        storage_device: where stored maps live (CPU by default; moved in chunks to avoid per-layer syncs).
        flush_every: steps kept on the model's device before a chunk is moved to ``storage_device``.
        query_positions: absolute positions of the query rows to record in every pass (default: the last one).
        modules: the language model's self-attention modules in layer order (default: as the model's adapter
            selects them, :meth:`emergence.adapters.Adapter.attention_modules`).
        cross_attention: the ``modules`` are cross-attention layers (Mllama / Llama-3.2-Vision): their keys are the
            vision tokens, so ``visual_positions`` index those keys (not the text sequence), and each pass's text
            position (for ``query_positions``) is read from the language model's cache as the pass starts. Default:
            the adapter's :attr:`~emergence.adapters.Adapter.cross_attention` when ``modules`` is not given, else
            whether the modules' class names say ``CrossAttention``.
        mechanism: ``"interface"`` (default: through transformers' attention functions, any backend, probabilities
            recomputed in float32 for the needed rows only) or ``"hooks"`` (forward hooks read the attention weights
            the modules themselves return: for modules that compute attention by hand, or with
            ``attn_implementation="eager"``; see the module docstring for its cost).

    Example:
        >>> with AttentionCapture(model, visual_positions) as cap:   # doctest: +SKIP
        ...     model.generate(**inputs, max_new_tokens=8)
        >>> cap.maps().shape                                          # doctest: +SKIP
        torch.Size([8, 32, 32, 576])
    """

    def __init__(
        self,
        model: nn.Module,
        visual_positions: torch.Tensor | Sequence[int],
        keep: KeepMode = "heads",
        layers: Sequence[int] | None = None,
        storage_dtype: torch.dtype = torch.float16,
        storage_device: torch.device | str = "cpu",
        flush_every: int = 32,
        query_positions: torch.Tensor | Sequence[int] | None = None,
        modules: Sequence[nn.Module] | None = None,
        cross_attention: bool | None = None,
        mechanism: Mechanism = "interface",
    ) -> None:
        if keep not in _KEEP_MODES:
            raise ValueError(f"keep={keep!r} is not one of {_KEEP_MODES}")
        if mechanism not in _MECHANISMS:
            raise ValueError(f"mechanism={mechanism!r} is not one of {_MECHANISMS}")
        self.mechanism: Mechanism = mechanism
        if not (isinstance(storage_dtype, torch.dtype) and storage_dtype.is_floating_point):
            raise ValueError(f"storage_dtype={storage_dtype} cannot hold probabilities in [0, 1]; use a floating dtype "
                             "(torch.float16, torch.bfloat16 or torch.float32)")
        self.model = model
        self.keep: KeepMode = keep
        if cross_attention is None:
            if modules is None:
                from ..adapters import adapter_for

                cross_attention = bool(getattr(adapter_for(model), "cross_attention", False))
            else:
                cross_attention = any("CrossAttention" in type(m).__name__ for m in modules)
        modules = list(modules) if modules is not None else language_model_attention_modules(model)
        named_cross = {"CrossAttention" in type(m).__name__ for m in modules}
        if len(named_cross) > 1:
            raise CaptureError("the modules mix cross-attention and self-attention layers, whose keys differ (vision "
                               "tokens vs the text sequence); capture each kind in its own AttentionCapture")
        if any(not isinstance(getattr(m, "layer_idx", None), int) for m in modules):
            raise UnsupportedModelError("every captured attention module needs an integer `layer_idx`; the adapter's "
                                        "attention_modules(model) returned one without it")
        all_layers = [m.layer_idx for m in modules]
        if layers is None:
            layers = all_layers
        layers = [int(i) for i in layers]
        if not layers:
            raise ValueError(f"layers=[] selects no layer to capture; pass None for all {len(all_layers)} layers or "
                             f"a non-empty list of indices in 0..{len(all_layers) - 1}")
        bad = [i for i in layers if i not in all_layers]
        if bad:
            raise ValueError(f"layers={bad} are not captured language-model layers; valid are {_ranges(all_layers)}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers={layers} contains duplicates")
        self.layers: list[int] = layers
        self._slot = {id(m): layers.index(m.layer_idx) for m in modules if m.layer_idx in layers}
        self._item_tokens: list[int] | None = None  # a batch with per-element visual positions: each one's V_b
        per_item = isinstance(visual_positions, (list, tuple)) and len(visual_positions) > 0 and all(
            getattr(p, "ndim", None) == 1 or isinstance(p, (list, tuple)) for p in visual_positions)
        if per_item:
            items = [torch.as_tensor(np_positions, dtype=torch.long).flatten() for np_positions in visual_positions]
            if any(p.numel() == 0 for p in items):
                raise CaptureError("a batch element has no visual tokens to attend to")
            self._item_tokens = [int(p.numel()) for p in items]
            width = max(self._item_tokens)
            # shorter elements repeat their last position: computed like the others, cut off by maps()
            positions = torch.stack([torch.cat([p, p[-1:].expand(width - p.numel())]) for p in items])  # [B, V]
        else:
            positions = torch.as_tensor(visual_positions, dtype=torch.long).flatten()
        if positions.numel() == 0:
            raise CaptureError("visual_positions is empty: the inputs contain no visual tokens to attend to")
        self.visual_positions = positions
        self._max_position = int(positions.max())
        first = int(positions.reshape(-1)[0])
        contiguous = positions.ndim == 1 and bool(torch.equal(positions, torch.arange(first, first + positions.numel())))
        self._block: slice | None = slice(first, first + positions.numel()) if contiguous else None
        self.storage_dtype = storage_dtype
        self.storage_device = torch.device(storage_device)
        self.flush_every = max(1, int(flush_every))
        self.query_positions = (
            None if query_positions is None else torch.as_tensor(query_positions, dtype=torch.long).flatten()
        )
        self.backend: str = getattr(lm_config(model), "_attn_implementation", None) or "eager"
        if self.backend.startswith("flex") and mechanism == "interface":
            raise UnsupportedModelError(
                "attn_implementation='flex_attention' is not supported by the capture (its BlockMask cannot be read "
                "row by row); load the model with attn_implementation='sdpa' or 'eager'."
            )
        self._columns: dict[torch.device, torch.Tensor | slice] = {}
        self._abs_end: dict[int, int] = {}
        self._step: list[torch.Tensor | None] = [None] * len(layers)
        self._filled = 0
        self._pending: list[torch.Tensor] = []
        self._chunks: list[torch.Tensor] = []
        self._modules = modules
        self._active = False
        self._thread: int | None = None
        self.cross_attention = bool(cross_attention)
        self._text_start = 0  # cross-attention: text position of the current pass's first query row
        self._hook: Any = None
        self._module_hooks: list[Any] = []

    # ------------------------------------------------------------------ registration
    def __enter__(self) -> AttentionCapture:
        if self.mechanism == "hooks":
            self._module_hooks = _weight_hooks(self)
        else:
            _dispatcher.attach(self)
        if self.cross_attention:
            try:
                self._hook = _text_start_hook(self)
            except BaseException:
                self._detach()
                raise
        self._active = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._active = False
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._detach()
        self._flush()

    def _detach(self) -> None:
        if self.mechanism == "hooks":
            for handle in self._module_hooks:
                handle.remove()
            self._module_hooks = []
        else:
            _dispatcher.detach(self)

    # ------------------------------------------------------------------ recording
    def _pass(self, slot: int, q_len: int, kv_len: int) -> tuple[int, int]:
        """Where this pass sits: ``(sequence position of its first query row, offset of key index 0)``.

        Self-attention: a pass over a fresh sequence returns keys for exactly its queries; afterwards each pass
        extends the sequence by ``q_len``. Sliding-window caches return only the last keys, so key index i is
        position ``end - kv_len + i`` (for full caches ``end == kv_len``, offset 0). Cross-attention: the keys are the
        vision tokens (offset 0) and the text position comes from the cache (:func:`_text_start_hook`).
        """
        if self.cross_attention:
            if self._max_position >= kv_len:
                raise CaptureError(
                    f"visual position {self._max_position} is beyond the {kv_len} cross-attention keys (vision "
                    "tokens); the inputs given to the model do not match the visual_positions"
                )
            return self._text_start, 0
        previous = self._abs_end.get(slot)
        end = q_len if kv_len == q_len else (kv_len - q_len if previous is None else previous) + q_len
        self._abs_end[slot] = end
        if self._max_position >= end and previous is not None and kv_len == q_len:
            raise CaptureError(
                f"the attention module of layer {self.layers[slot]} did not extend its KV cache: after a pass that "
                f"ended at position {previous}, a pass of {q_len} queries saw only its own {kv_len} keys. Its forward "
                "ignores the cache it was given (transformers 5.24 passes it as `cache=`, earlier versions as "
                "`past_key_values=`: read the transformers Cache among the keyword arguments, e.g. with "
                "emergence.capture.find_cache(kwargs))"
            )
        if self._max_position >= end:
            raise CaptureError(
                f"visual position {self._max_position} is beyond the sequence length {end}; the inputs given to "
                "the model do not match the visual_positions"
            )
        return end - q_len, end - kv_len

    def _rows(self, device: torch.device, start: int, q_len: int) -> torch.Tensor | None:
        """Indices into this pass's queries of the rows to record (``None``: the last row)."""
        if self.query_positions is None:
            return None
        rows = self.query_positions.to(device) - start
        if int(rows.min()) < 0 or int(rows.max()) >= q_len:
            raise CaptureError(
                f"query_positions {self.query_positions.tolist()} are not all inside this forward pass "
                f"(positions {start}..{start + q_len - 1})"
            )
        return rows

    def _record(self, slot: int, module, query, key, attention_mask, kwargs) -> None:
        """The interface path: recompute the needed rows' probabilities from ``query`` and ``key``."""
        q_len = query.shape[2]
        start, offset = self._pass(slot, q_len, key.shape[2])
        rows = self._rows(query.device, start, q_len)
        columns = self._columns.get(key.device)
        if columns is None:
            columns = self._columns[key.device] = self.visual_positions.to(key.device)
        if offset == 0:
            if self._block is not None:
                columns = self._block  # contiguous visual block: a view instead of a gather
            probs = row_attention_probs(module, query, key, attention_mask, rows, columns, kwargs)  # [B, H, R, V]
        elif columns.ndim == 2:  # a batch's own columns, some left a sliding window: probability 0 there
            local = columns - offset
            every = row_attention_probs(module, query, key, attention_mask, rows, slice(None), kwargs)  # [B, H, R, K]
            probs = _take(every, local.clamp_min(0)) * (local >= 0)[:, None, None, :]
        else:  # visual keys that left a sliding window get probability 0 (they are masked for this query)
            local = columns - offset
            inside = local >= 0
            n_rows = 1 if rows is None else rows.numel()
            probs = query.new_zeros((query.shape[0], query.shape[1], n_rows, columns.numel()), dtype=torch.float32)
            if bool(inside.any()):
                probs[..., inside] = row_attention_probs(module, query, key, attention_mask, rows, local[inside], kwargs)
        self._keep(slot, probs)

    def _record_weights(self, slot: int, weights: torch.Tensor) -> None:
        """The hooks path: ``weights`` ``[B, H, q_len, kv_len]`` are the module's own attention probabilities of
        this pass; keep the needed rows at the visual columns."""
        q_len = weights.shape[2]
        start, offset = self._pass(slot, q_len, weights.shape[3])
        rows = self._rows(weights.device, start, q_len)
        picked = weights[:, :, -1:] if rows is None else weights.index_select(2, rows)
        columns = self.visual_positions.to(weights.device) - offset
        inside = columns >= 0  # keys that left a sliding window: probability 0
        if columns.ndim == 2:
            probs = _take(picked.float(), columns.clamp_min(0)) * inside[:, None, None, :]
        else:
            probs = picked.new_zeros((*picked.shape[:3], columns.numel()), dtype=torch.float32)
            probs[..., inside] = picked.index_select(3, columns[inside]).float()
        self._keep(slot, probs)

    def _keep(self, slot: int, probs: torch.Tensor) -> None:
        """Store one layer's ``[B, H, R, V]`` probabilities of this step; a complete step is reduced and queued."""
        probs = probs.transpose(1, 2)  # [B, R, H, V]
        if self.keep != "heads":
            probs = probs.mean(dim=2)  # [B, R, V]; "mean" also averages over layers once the step is complete
        if self._step[slot] is None:
            self._filled += 1
        self._step[slot] = probs
        if self._filled == len(self._step):
            step = torch.stack(self._step, dim=2)  # [B, R, L, ...]
            if self.keep == "mean":
                step = step.mean(dim=2)
            self._pending.append(step.to(self.storage_dtype))
            self._step = [None] * len(self._step)
            self._filled = 0
            if len(self._pending) >= self.flush_every:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            chunk = torch.cat(self._pending, dim=1)  # [B, steps * R, ...]
            self._chunks.append(chunk.to(self.storage_device, non_blocking=False))
            self._pending = []

    @property
    def num_steps(self) -> int:
        """Number of complete forward passes recorded so far."""
        rows = sum(c.shape[1] for c in self._chunks) + sum(p.shape[1] for p in self._pending)
        return rows if self.query_positions is None else rows // max(1, self.query_positions.numel())

    def maps(self, batch_index: int = 0) -> torch.Tensor:
        """The recorded maps of one batch element.

        Returns:
            ``[rows, L, H, V]`` (keep="heads"), ``[rows, L, V]`` (keep="layers") or ``[rows, V]`` (keep="mean"),
            in ``storage_dtype`` on ``storage_device``; ``rows`` = steps x recorded rows per step, in order.
            ``L`` follows ``self.layers``.
        """
        self._flush()
        if not self._chunks:
            hint = ("" if self.mechanism == "hooks" else
                    " If the model did run inside it, its attention modules never called transformers' attention "
                    "functions (remote code that computes attention by hand?): capture with mechanism='hooks', and "
                    "load transformers classes with attn_implementation='eager' for it")
            raise CaptureError("no forward pass was recorded: run the model inside the `with AttentionCapture(...)` "
                               "block." + hint)
        maps = torch.cat(self._chunks, dim=1)[batch_index]
        if self._item_tokens is not None:
            maps = maps[..., : self._item_tokens[batch_index]]
        return maps
