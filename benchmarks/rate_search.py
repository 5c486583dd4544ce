"""How the bench searches the highest offered rate the workers sustain: a plain decision over
the outcomes of the steps offered so far."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["next_offered_rate", "sustained_rate"]


def next_offered_rate(outcomes: Mapping[float, Sequence[bool]], last: float, min_steps: int) -> float | None:
    """The next rate to offer while searching the highest sustained one, or None when found.

    ``outcomes`` maps each rate offered so far to whether the workers kept up, per step at it;
    ``last`` was offered last. The search goes up 15% after a sustained step and down 20%
    after a failed one, and bisects once bracketed. One step can keep up by luck on a shared
    machine (a rate that then fails at 80% of it), so after ``min_steps`` steps the best
    candidate, the highest rate that kept up in every step at it, is offered again until one
    has held twice: that is :func:`sustained_rate`.
    """
    best = sustained_rate(outcomes)
    failed = min((rate for rate, kept in outcomes.items() if not all(kept)), default=float("inf"))
    if best and sum(map(len, outcomes.values())) >= min_steps:
        return None if len(outcomes[best]) >= 2 else best
    if best and failed < float("inf"):
        return (best + failed) / 2
    rate = last * 1.15 if all(outcomes[last]) else last * 0.8
    if rate < 10:
        raise RuntimeError("the workers kept up with no offered rate down to 10 events/s")
    return rate


def sustained_rate(outcomes: Mapping[float, Sequence[bool]]) -> float:
    """The highest rate that kept up in every step offered at it (0 if none did)."""
    return max((rate for rate, kept in outcomes.items() if all(kept)), default=0.0)
