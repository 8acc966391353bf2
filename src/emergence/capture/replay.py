"""Replay: the inputs of a recorded run re-processed, and one teacher-forced forward over its prompt + answer.

Shared by the causal helpers (:mod:`emergence.causal`) and the gradient map (:mod:`emergence.maps`).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["run_inputs", "teacher_forced"]


def run_inputs(probe: Any, run: Any) -> dict[str, Any]:
    """The model inputs of ``run``'s image and prompt, re-processed by ``probe`` (checked against the run's prompt
    ids). Pass them to :func:`emergence.causal.answer_effects`, :func:`~emergence.causal.answer_log_probs` and
    :func:`~emergence.causal.free_answer` to process once.

    Raises:
        ValueError: the run holds no single image, or re-processing gives other prompt ids.
    """
    inputs = probe._model_inputs(probe.prepare(run.image, run.prompt)) if run.image is not None else None
    if inputs is None or not torch.equal(inputs["input_ids"][0].cpu(), run.prompt_ids):
        raise ValueError("re-processing the run's image and prompt no longer gives the run's prompt ids; pass a "
                         "one-image run made by this probe")
    return inputs


def teacher_forced(probe: Any, run: Any, inputs: dict[str, Any] | None = None
                    ) -> tuple[dict[str, Any], torch.Tensor]:
    """``(inputs over prompt + the run's answer, [T] positions of the rows that predict each answer token)``: the
    one forward over prompt + answer that causal effects, log-probabilities and gradient maps share.

    Raises:
        CaptureError: the answer holds a media placeholder token (:meth:`emergence.Probe.teacher_forced_inputs`).
    """
    inputs = run_inputs(probe, run) if inputs is None else inputs
    prompt_len = inputs["input_ids"].shape[1]
    sequences = torch.cat([inputs["input_ids"], run.token_ids[None].to(inputs["input_ids"].device)], dim=1)
    return probe.teacher_forced_inputs(inputs, sequences), torch.arange(prompt_len - 1, sequences.shape[1] - 1)
