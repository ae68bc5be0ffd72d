"""Step 2: pack whole journeys into requests under the API's limits.

Two limits bind a batch: journeys and sessions. Journey sizes are small integers (at most
``max_journey_sessions``), so journeys are placed one size class at a time with numpy, and
the cost is O(size classes x rounds x batches), never a Python loop per journey. A balanced
(worst-fit decreasing) packing into the lower-bound number of batches usually succeeds; it
beats first-fit decreasing when both limits bind, because first fit crowds the large journeys
into few batches and leaves the one-session journeys limited by the journey count.
"""

from __future__ import annotations

import math

import numpy as np
import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.database import bulk_insert
from growthflow.errors import ConfigError


def lower_bound(sizes: np.ndarray, max_journeys: int, max_sessions: int) -> int:
    """No packing can use fewer batches than this."""
    if len(sizes) == 0:
        return 0
    return max(math.ceil(len(sizes) / max_journeys), math.ceil(int(sizes.sum()) / max_sessions))


def pack(sizes: np.ndarray, max_journeys: int, max_sessions: int) -> np.ndarray:
    """Batch number (0-based, dense) for each journey of the given session counts.

    Tries a balanced packing into the lower-bound number of batches first, then into a few
    more, and falls back to first-fit decreasing; returns whichever uses fewer batches.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if max_journeys < 1 or max_sessions < 1:
        raise ConfigError("batch limits must be at least 1")
    if len(sizes) == 0:
        return np.empty(0, dtype=np.int64)
    if sizes.min() < 1:
        raise ValueError("journeys must have at least one session")
    if sizes.max() > max_sessions:
        raise ConfigError(
            f"a journey of {int(sizes.max())} sessions exceeds max_sessions={max_sessions}; "
            "lower max_journey_sessions or raise max_sessions"
        )
    order = np.argsort(-sizes, kind="stable")
    classes = _size_classes(sizes[order])
    best = _first_fit_decreasing(classes, max_journeys, max_sessions)
    n_best = int(best.max()) + 1
    bound = lower_bound(sizes, max_journeys, max_sessions)
    step = max(1, bound // 200)
    for n_batches in range(bound, n_best, step):
        balanced = _balanced(classes, n_batches, max_journeys, max_sessions)
        if balanced is not None:
            best = balanced
            break
    assignment = np.empty_like(best)
    assignment[order] = best
    return _dense(assignment)


def _size_classes(sorted_sizes: np.ndarray) -> list[tuple[int, int, int]]:
    """(size, first index, count) for each run of equal sizes in a decreasing array."""
    neg, first, count = np.unique(-sorted_sizes, return_index=True, return_counts=True)
    return [(int(-n), int(f), int(c)) for n, f, c in zip(neg, first, count, strict=True)]


def _dense(assignment: np.ndarray) -> np.ndarray:
    """Renumber batches 0..n-1 (a balanced packing may leave a batch empty)."""
    _, dense = np.unique(assignment, return_inverse=True)
    return dense.astype(np.int64)


def _first_fit_decreasing(
    classes: list[tuple[int, int, int]], max_journeys: int, max_sessions: int
) -> np.ndarray:
    total = sum(count for _, _, count in classes)
    out = np.empty(total, dtype=np.int64)
    room_sessions = np.empty(0, dtype=np.int64)  # per open batch
    room_journeys = np.empty(0, dtype=np.int64)
    for size, first, count in classes:
        fits = np.minimum(room_sessions // size, room_journeys)
        capacity = np.cumsum(fits)
        placed_in_open = int(min(count, capacity[-1] if len(capacity) else 0))
        # First fit of identical items: item t goes to the first batch whose cumulative
        # capacity exceeds t.
        targets = np.searchsorted(capacity, np.arange(placed_in_open), side="right")
        rest = count - placed_in_open
        if rest:
            per_new = min(max_journeys, max_sessions // size)
            n_new = math.ceil(rest / per_new)
            targets = np.concatenate([targets, len(room_sessions) + np.arange(rest) // per_new])
            room_sessions = np.concatenate([room_sessions, np.full(n_new, max_sessions)])
            room_journeys = np.concatenate([room_journeys, np.full(n_new, max_journeys)])
        taken = np.bincount(targets, minlength=len(room_sessions))
        room_sessions -= taken * size
        room_journeys -= taken
        out[first : first + count] = targets
    return out


def _balanced(
    classes: list[tuple[int, int, int]], n_batches: int, max_journeys: int, max_sessions: int
) -> np.ndarray | None:
    """Worst-fit decreasing into exactly ``n_batches``, or None when something does not fit.

    Each round hands one journey of the current size to every batch that can take it, the
    emptiest first, so session loads and journey counts stay level and the small journeys
    at the end fill the remaining room evenly.
    """
    total = sum(count for _, _, count in classes)
    out = np.empty(total, dtype=np.int64)
    room_sessions = np.full(n_batches, max_sessions, dtype=np.int64)
    room_journeys = np.full(n_batches, max_journeys, dtype=np.int64)
    for size, first, count in classes:
        done = 0
        while done < count:
            eligible = np.flatnonzero((room_sessions >= size) & (room_journeys >= 1))
            if len(eligible) == 0:
                return None
            eligible = eligible[np.argsort(-room_sessions[eligible], kind="stable")]
            take = eligible[: count - done]
            out[first + done : first + done + len(take)] = take
            room_sessions[take] -= size
            room_journeys[take] -= 1
            done += len(take)
    return out


def plan_batches(
    engine: sa.Engine, run_id: str, *, max_journeys: int = 100, max_sessions: int = 3000
) -> list[int]:
    """Write the run's batch plan to ``gf_batches`` (replacing any) and return batch numbers."""
    j = schema.journeys
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(j.c.journey_no, j.c.n_sessions)
            .where(j.c.run_id == run_id, j.c.n_sessions > 0)
            .order_by(j.c.journey_no)
        ).all()
        journey_no = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        sizes = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        assignment = pack(sizes, max_journeys, max_sessions)
        conn.execute(sa.delete(schema.batches).where(schema.batches.c.run_id == run_id))
        written = bulk_insert(
            conn,
            schema.batches,
            zip([run_id] * len(rows), assignment.tolist(), journey_no.tolist(), strict=True),
        )
        if written and conn.dialect.name == "postgresql":  # per-batch lookups need fresh stats
            conn.execute(sa.text("ANALYZE gf_batches"))
    return sorted(set(assignment.tolist()))
