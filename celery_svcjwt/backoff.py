"""Pure backoff arithmetic: how long to wait after the n-th consecutive failure."""

from __future__ import annotations

__all__ = ["backoff_delay"]


def backoff_delay(failures: int, base: float, cap: float, rand: float) -> float:
    """Exponential backoff with "equal jitter" after ``failures`` consecutive failures.

    The ceiling doubles from ``base`` up to ``cap``; the delay is drawn from
    the upper half of it (``rand`` in [0, 1)), so a fleet of processes that
    failed together spreads its next attempts instead of retrying in step,
    while none retries sooner than half the ceiling.
    """
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 62))
    return ceiling / 2.0 + ceiling / 2.0 * rand
