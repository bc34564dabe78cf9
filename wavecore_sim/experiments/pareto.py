"""Pareto fronts and rank agreement: the formulas ``explore`` reports, on plain numbers.

* A point is on the Pareto front when no other point is at least as good in every
  objective and strictly better in one (all objectives are minimised). Points with equal
  objective vectors are all on the front, or none.
* Kendall's tau-b (Kendall, 1945) measures how well two orderings of the same items agree:
  ``(concordant - discordant) / sqrt((n0 - ties_a) * (n0 - ties_b))`` over the
  ``n0 = n (n - 1) / 2`` pairs, where a pair is concordant when both orderings put it the
  same way round and discordant when they disagree; a pair tied in either ordering is
  neither. 1 is the same order, -1 the reverse, about 0 no relation. ``explore --model
  both`` computes it between the analytical and the cycle-level seconds of the refereed
  points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices (ascending) of the non-dominated rows of ``points`` (objectives minimised)."""
    x = np.asarray(points, dtype=float)
    if x.size == 0:
        return []
    front = []
    for i in range(len(x)):
        no_worse = (x <= x[i]).all(axis=1)
        better = (x < x[i]).any(axis=1)
        if not (no_worse & better).any():
            front.append(i)
    return front


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b between two scores of the same items (see the module docstring);
    NaN for fewer than two items or when either score is constant."""
    if len(a) != len(b):
        raise ValueError("kendall_tau needs two scores of the same items")
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0:
                ties_a += 1
            if db == 0:
                ties_b += 1
            if da * db > 0:
                concordant += 1
            elif da * db < 0:
                discordant += 1
    pairs = n * (n - 1) // 2
    denominator = math.sqrt((pairs - ties_a) * (pairs - ties_b))
    if denominator == 0:
        return math.nan
    return (concordant - discordant) / denominator


def ranks(values: Sequence[float]) -> list[int]:
    """1-based rank of each value (1 = smallest); ties share the lowest rank."""
    order = sorted(values)
    return [order.index(v) + 1 for v in values]
