"""A budget for an upstream that counts its window on its own clock, taken in slices (pure).

Our limiter's windows are aligned on Redis's clock (:mod:`.limiter`); an upstream that starts
its own window when it likes (the referral program: 600 calls in "a minute") may see the end
of one of our windows and the start of the next inside one of its own, so a single window of
``calls`` could let ``2 * calls`` into it. Guarantee of :func:`sliced_budget`: the budget taken
in ``n`` windows of ``window_seconds / n`` (``n`` = ``slices``, fewer when ``calls`` is below it,
``calls // n`` each), any span of ``window_seconds`` the upstream counts overlaps at most
``n + 1`` of ours, so it sees at most ``calls * (1 + 1/n)`` calls granted (594 for 540 in ten
slices, under the program's 600), and never more than ``calls`` in any of our windows together.
"""

from __future__ import annotations

#: The slices a window is taken in by default.
DEFAULT_SLICES = 10


def sliced_budget(calls: int, window_seconds: float, *, slices: int = DEFAULT_SLICES) -> tuple[int, float]:
    """``(limit, window_seconds)`` of our limiter for ``calls`` per upstream ``window_seconds``."""
    if calls < 1 or slices < 1 or window_seconds <= 0:
        raise ValueError("calls and slices must be at least 1 and window_seconds positive")
    count = min(slices, calls)
    return calls // count, window_seconds / count


def worst_span(calls: int, window_seconds: float, *, slices: int = DEFAULT_SLICES) -> int:
    """The most calls :func:`sliced_budget` can grant within any span of ``window_seconds``."""
    limit, window = sliced_budget(calls, window_seconds, slices=slices)
    return (round(window_seconds / window) + 1) * limit
