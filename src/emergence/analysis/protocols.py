"""Named analysis protocols: which units are scored, how an absent object is scored, and which unit is the "when".

Two protocols, each written down step by step in ``docs/protocols.md``:

``"emergence"`` (the default; this project's definitions)
    units of the user's choice (words by default); an empty ground truth (absent object) counts a mask correct when
    it covers less than half the image; the **emergence unit** is the FIRST unit, in answer order, whose best mask
    reaches IoU >= ``tau``; the **best** unit is the first of those with the highest IoU.
``"pixfoundation"`` (PixFoundation's "when does grounding emerge" study, MSiam/PixFoundation at 20027b0)
    noun chunks only (spaCy; no fallback to words); IoU as the reference's ``compute_iou`` (an empty ground truth
    scores 1 only against an empty mask); the **when unit** is the phrase holding the highest-IoU mask over all
    phrases x masks, ties going to the LAST pair in (phrase, mask) order (the reference's ``>=`` over files named
    ``{image}_{phrase:03d}_{mask:03d}.png``), with no threshold; its position is the phrase's first character / the
    answer's length, in ten bins ``[10 i, 10 (i + 1))`` percent; samples whose object is absent or whose annotation
    is empty have no when unit (the reference skips them).

Both protocols exclude absent and unannotated samples from every emergence statistic of a sweep report and print
their counts apart; the mIoU rule of each for those samples is in ``docs/protocols.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Protocol", "PROTOCOLS", "get_protocol", "pixfoundation_bin", "last_best"]


@dataclass(frozen=True)
class Protocol:
    """One protocol's definitions.

    Attributes:
        name: ``"emergence"`` or ``"pixfoundation"``.
        units: the unit kind the protocol requires (``None``: the user's choice).
        when: ``"first_at_tau"`` (the first unit with IoU >= tau) or ``"best_last"`` (the highest-IoU unit x mask,
            last of ties, no threshold).
        absent: IoU against an empty ground truth: ``"under_half"`` (1 when the mask covers under half the image)
            or ``"empty_only"`` (1 only for an empty mask).
        ties: which of the units tied at the best IoU is the best unit: ``"first"`` or ``"last"``.
    """

    name: str
    units: str | None
    when: str
    absent: str
    ties: str


PROTOCOLS: dict[str, Protocol] = {
    "emergence": Protocol("emergence", None, "first_at_tau", "under_half", "first"),
    "pixfoundation": Protocol("pixfoundation", "phrases", "best_last", "empty_only", "last"),
}


def get_protocol(name: str | Protocol) -> Protocol:
    """The protocol named ``name`` (a :class:`Protocol` is returned as is).

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(f"protocol={name!r} is not one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def pixfoundation_bin(char_start: int, answer_length: int) -> int:
    """PixFoundation's bin of a unit starting at ``char_start`` in an answer of ``answer_length`` characters: the
    reference computes ``loc = start / length * 100`` in floating point and counts it in bin ``i`` when
    ``10 i <= loc < 10 (i + 1)``; this does the same arithmetic, so boundary cases land where the reference puts
    them. Returns ``-1`` where the reference counts the unit in no bin (``loc >= 100``; not reachable for a start
    inside the answer)."""
    if answer_length <= 0:
        raise ValueError(f"answer length must be positive, got {answer_length}")
    loc = float(char_start) / answer_length * 100
    for i in range(10):
        if i * 10 <= loc < (i + 1) * 10:
            return i
    return -1


def last_best(ious: np.ndarray) -> tuple[int, int]:
    """``(unit, mask)`` of the highest value of ``ious [U, K]``, ties to the LAST pair in unit-major order (the
    reference's running ``>=`` from an initial best of 0; all-zero IoUs give the very last pair).

    Raises:
        ValueError: no unit.
    """
    ious = np.asarray(ious, np.float64)
    if ious.ndim != 2 or ious.shape[0] == 0 or ious.shape[1] == 0:
        raise ValueError(f"last_best needs ious of shape [U >= 1, K >= 1], got {ious.shape}")
    flat = ious.reshape(-1)
    best = 0.0
    index = -1
    for i, value in enumerate(flat):  # the reference's loop; NaN never wins (>= is False)
        if value >= best:
            best, index = value, i
    if index < 0:  # every IoU NaN: the reference keeps none
        raise ValueError("every IoU is NaN: no unit can be chosen")
    return divmod(index, ious.shape[1])
