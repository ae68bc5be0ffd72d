"""Batch packing: limits, whole journeys, and near-optimal batch counts."""

from __future__ import annotations

import numpy as np
import pytest

from growthflow.attribution.batches import lower_bound, pack
from growthflow.errors import ConfigError


def demo_like_sizes(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.58, 1, np.minimum(1 + rng.geometric(0.17, n), 40))


@pytest.mark.parametrize("n", [1, 7, 2_000, 20_000])
@pytest.mark.parametrize(
    "max_journeys,max_sessions", [(100, 3000), (100, 200), (50, 500), (100, 150), (3, 100), (1, 40)]
)
def test_packing_respects_limits_and_stays_within_2_percent(n, max_journeys, max_sessions):
    sizes = demo_like_sizes(n, seed=n)
    batch = pack(sizes, max_journeys, max_sessions)
    assert batch.shape == sizes.shape  # each journey is in exactly one batch: never split
    n_batches = int(batch.max()) + 1
    assert set(np.unique(batch)) == set(range(n_batches))  # dense numbering, no empty batch
    assert np.bincount(batch).max() <= max_journeys
    assert np.bincount(batch, weights=sizes).max() <= max_sessions
    assert (
        n_batches <= lower_bound(sizes, max_journeys, max_sessions) * 1.02 + 1e-9 or n_batches == 1
    )


def test_hard_instances_still_respect_limits():
    sizes = np.array([60, 60, 60, 41, 41, 41, 40, 40, 1, 1, 1])
    batch = pack(sizes, 3, 100)
    assert np.bincount(batch, weights=sizes).max() <= 100
    assert np.bincount(batch).max() <= 3


def test_empty_and_oversized_inputs():
    assert pack(np.array([], dtype=int), 100, 3000).size == 0
    with pytest.raises(ConfigError, match="exceeds max_sessions"):
        pack(np.array([5, 201]), 100, 200)
