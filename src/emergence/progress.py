"""One progress line on stderr (bar, count, rate, ETA, and a note), shared by sweeps and training."""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressLine"]


class ProgressLine:
    """A one-line progress display, redrawn in place.

    Args:
        total: units of work in all.
        done: units already done when the line starts (a resumed run); the rate counts only new ones.
        unit: what is counted (``"items"``, ``"steps"``).
        per: the rate's time unit, ``"s"`` or ``"h"``.
        enabled: ``False`` prints nothing.
    """

    def __init__(self, total: int, done: int = 0, unit: str = "items", per: str = "s", enabled: bool = True) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.unit, self.per, self.enabled = unit, per, enabled
        self.t0 = time.perf_counter()
        self._draw("")

    def update(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more units and redraw (``note`` follows the ETA, e.g. a loss)."""
        self.done += n
        self._draw(note)

    def _draw(self, note: str) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        frac = self.done / self.total if self.total else 1.0
        shown = rate * 3600 if self.per == "h" else rate
        text = f"\r[{'#' * int(30 * frac):<30}] {self.done}/{self.total} {self.unit} {shown:.2f}/{self.per} " \
               f"ETA {eta / 60:.1f} min"
        print(text + (f" {note}" if note else ""), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the line."""
        if self.enabled:
            print(file=sys.stderr)
