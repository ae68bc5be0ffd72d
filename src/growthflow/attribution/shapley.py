"""The Shapley value attribution model, exact over every coalition.

A path's coalition is the set of its channels. The value of a coalition S is a conversion rate:
- ``exact`` (default): of the paths whose channel set is exactly S (0 when there is none);
- ``subset``: of the paths whose channel set is contained in S.
Channel i's Shapley value is  sum over S without i of  |S|! (n-|S|-1)! / n!  (v(S+i) - v(S)),
computed over all 2^n coalitions at once with numpy (2^20 values are 8 MB). Above
``MAX_PLAYERS`` channels the least frequent are merged into ``(other)`` first.

The same with each path's revenue per path as the value gives the revenue Shapley values.
Shapley values can be negative (a channel whose paths convert worse than those without it):
such a channel gets no credit, and the credit is shared among the positive ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import factorial
from typing import Literal

import numpy as np

from growthflow.attribution.paths import MICROS, Paths, credit_shares

MAX_PLAYERS = 20
OTHER = "(other)"
ValueKind = Literal["exact", "subset"]


@dataclass
class ShapleyResult:
    channels: list[str]  # the players, (other) last when channels were merged
    shapley_value: np.ndarray  # per player, of the conversion rate
    revenue_shapley_value: np.ndarray  # per player, of the revenue per path
    merged: list[str] = field(default_factory=list)  # channels merged into (other)
    player_of: np.ndarray | None = None  # channel code -> player index

    def credit(self, conversions: float, revenue: float) -> tuple[np.ndarray, np.ndarray]:
        return (
            credit_shares(self.shapley_value) * conversions,
            credit_shares(self.revenue_shapley_value) * revenue,
        )


def _players(paths: Paths, max_players: int) -> tuple[list[str], np.ndarray, list[str]]:
    """The players and each channel code's player: above ``max_players`` channels, the
    least frequent (fewest paths, weighted by their count; ties by name) share (other)."""
    n = len(paths.channels)
    if n <= max_players:
        return list(paths.channels), np.arange(n), []
    weight = paths.conversions + paths.nulls
    path_of = np.repeat(np.arange(paths.n_paths), paths.lengths)
    pairs = np.unique(np.c_[path_of, paths.codes], axis=0)  # each channel once per path
    frequency = np.bincount(pairs[:, 1], weights=weight[pairs[:, 0]], minlength=n)
    order = sorted(range(n), key=lambda c: (-frequency[c], paths.channels[c].encode()))
    kept = sorted(order[: max_players - 1])
    player_of = np.full(n, max_players - 1)
    player_of[kept] = np.arange(len(kept))
    names = [paths.channels[c] for c in kept] + [OTHER]
    merged = sorted((paths.channels[c] for c in order[max_players - 1 :]), key=str.encode)
    return names, player_of, merged


def _popcount(n_players: int) -> np.ndarray:
    counts = np.zeros(1 << n_players, dtype=np.int64)
    for bit in range(n_players):
        counts += (np.arange(1 << n_players) >> bit) & 1
    return counts


def _subset_sums(values: np.ndarray, n_players: int) -> np.ndarray:
    """f(S) = sum over T contained in S of values(T) (the zeta transform), in place order."""
    f = values.copy()
    for bit in range(n_players):
        step = 1 << bit
        view = f.reshape(-1, 2 * step)  # blocks: [without bit | with bit]
        view[:, step:] += view[:, :step]
    return f


def shapley_values(v: np.ndarray, n_players: int) -> np.ndarray:
    """Exact Shapley values of the game ``v`` (indexed by coalition bitmask)."""
    size = _popcount(n_players)
    n = n_players
    weights = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    out = np.zeros(n_players)
    everyone = np.arange(1 << n_players)
    for i in range(n_players):
        without = everyone[(everyone >> i) & 1 == 0]
        out[i] = np.dot(weights[size[without]], v[without | (1 << i)] - v[without])
    return out


def shapley_model(
    paths: Paths, value: ValueKind = "exact", max_players: int = MAX_PLAYERS
) -> ShapleyResult:
    names, player_of, merged = _players(paths, max_players)
    n = len(names)
    if n == 0:
        return ShapleyResult([], np.zeros(0), np.zeros(0), merged, player_of)
    bits = (np.int64(1) << player_of[paths.codes]).astype(np.int64)
    masks = np.bitwise_or.reduceat(bits, paths.offsets[:-1]) if len(bits) else bits
    size = 1 << n
    conversions = np.bincount(masks, weights=paths.conversions, minlength=size)
    count = np.bincount(masks, weights=paths.conversions + paths.nulls, minlength=size)
    revenue = np.bincount(masks, weights=paths.revenue_micros / MICROS, minlength=size)
    if value == "subset":
        conversions, count, revenue = (_subset_sums(a, n) for a in (conversions, count, revenue))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(count > 0, conversions / count, 0.0)
        revenue_rate = np.where(count > 0, revenue / count, 0.0)
    return ShapleyResult(
        names,
        shapley_values(rate, n),
        shapley_values(revenue_rate, n),
        merged,
        player_of,
    )
