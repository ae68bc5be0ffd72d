"""The Markov chain attribution model: removal effects, solved exactly.

States are the last ``order`` channels of a path (fewer at its start) plus three absorbing or
initial ones: start, conversion and null. Every path counts (conversions + nulls) times along
its transitions; its last state goes to conversion ``conversions`` times and to null ``nulls``
times. The conversion probability from start is the chain's absorption probability, the
solution of the sparse linear system (I - Q) x = r (Q: transient-to-transient probabilities,
r: each state's probability to convert next): no simulation, no powers of the transition
matrix, no inverse. Small systems are factorised (sparse LU); large ones are solved by GMRES to
machine precision, checked by their residual. The system is never singular: every state lies
on an observed path, which leaves it for an absorbing state with positive probability.

A channel's removal effect is the relative drop of that probability when every state holding
the channel leads to null instead: those states are dropped from the system (their x is 0).
The same chain with each path's revenue as its reward gives the revenue removal effects. A
state's self-loop (a channel repeated) changes no absorption probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import gmres, splu

from growthflow.attribution.paths import MICROS, Paths, credit_shares
from growthflow.errors import ConfigError

MAX_ORDER = 4
# Up to this many states, a sparse LU factorisation. Above, the chain's graph (every state
# leads to states sharing all but one of its channels) fills the factors in: GMRES reaches
# machine precision in a few dozen products with the sparse matrix instead (order 4 on 100k
# paths: 0.03 s against 0.6-0.8 s per solve), its residual is checked, and LU takes over if it
# did not converge.
DIRECT_STATES = 2_000
RESIDUAL = 1e-12  # relative to the right-hand side: what an iterative solution must meet
DENSE_KEYS = 1 << 24  # state keys below this are numbered with a lookup table, not a sort


@dataclass
class MarkovResult:
    order: int
    channels: list[str]
    conversion_probability: float  # from start, with every channel
    removal_effect: np.ndarray  # per channel, on the conversion probability
    revenue_removal_effect: np.ndarray  # per channel, on the expected revenue
    states: list[tuple[int, ...]]  # the transient states, as channel codes
    transitions: tuple[np.ndarray, np.ndarray, np.ndarray]  # (from, to, count); see below
    # from/to index ``states``; -1 is start (from), -2 conversion and -3 null (to)

    def credit(self, conversions: float, revenue: float) -> tuple[np.ndarray, np.ndarray]:
        """Each channel's share of ``conversions`` and of ``revenue``."""
        return (
            credit_shares(self.removal_effect) * conversions,
            credit_shares(self.revenue_removal_effect) * revenue,
        )


START, CONVERSION, NULL = -1, -2, -3


def _state_keys(paths: Paths, order: int) -> np.ndarray:
    """One int64 per position: the last ``order`` channels up to it, within its path."""
    base = len(paths.channels) + 1
    if base**order >= 2**62:
        raise ConfigError(
            f"{len(paths.channels)} channels are too many for a Markov chain of order {order}"
        )
    n = len(paths.codes)
    path_start = np.repeat(paths.offsets[:-1], paths.lengths)
    position = np.arange(n)
    keys = np.zeros(n, dtype=np.int64)
    for back in range(order):  # digit `back` is the channel `back` positions earlier, or 0
        source = position - back
        present = source >= path_start
        digit = np.where(present, paths.codes[np.where(present, source, 0)] + 1, 0)
        keys += digit * base**back
    return keys


def _decode(key: int, base: int) -> tuple[int, ...]:
    codes = []
    while key:
        key, digit = divmod(key, base)
        codes.append(digit - 1)
    return tuple(reversed(codes))  # oldest channel first


def _solve(system: sparse.csr_matrix, rhs: np.ndarray, direct_states: int) -> np.ndarray:
    """x with system @ x = rhs (one column per right-hand side)."""

    def direct() -> np.ndarray:
        return splu(system.tocsc(), permc_spec="MMD_ATA").solve(np.ascontiguousarray(rhs))

    if system.shape[0] <= direct_states:
        return direct()
    x = np.zeros_like(rhs)
    for j in range(rhs.shape[1]):
        b = rhs[:, j]
        scale = np.abs(b).max()
        if scale == 0:
            continue
        x[:, j], info = gmres(system, b, rtol=1e-14, atol=0.0, restart=100, maxiter=50)
        if info != 0 or np.abs(system @ x[:, j] - b).max() > RESIDUAL * scale:
            return direct()
    return x


def markov_model(
    paths: Paths, order: int = 1, *, direct_states: int = DIRECT_STATES
) -> MarkovResult:
    if not 1 <= order <= MAX_ORDER:
        raise ConfigError(f"the Markov order must be 1 to {MAX_ORDER}, not {order}")
    n_channels = len(paths.channels)
    keys = _state_keys(paths, order)
    space = (n_channels + 1) ** order
    if space <= DENSE_KEYS:  # a lookup table instead of a sort
        seen = np.zeros(space, dtype=bool)
        seen[keys] = True
        state_keys = np.flatnonzero(seen)
        state = (np.cumsum(seen) - 1)[keys]
    else:
        state_keys, state = np.unique(keys, return_inverse=True)
    n_states = len(state_keys)
    weight = paths.conversions + paths.nulls  # every distinct path stands for this many
    lengths = paths.lengths
    per_position = np.repeat(weight, lengths)
    last = paths.offsets[1:] - 1
    first = paths.offsets[:-1]
    inner = np.ones(len(keys), dtype=bool)
    inner[last] = False  # positions with a next position in their path
    from_inner = state[inner]
    to_inner = state[np.flatnonzero(inner) + 1]
    between = sparse.coo_matrix(
        (per_position[inner].astype(np.float64), (from_inner, to_inner)),
        shape=(n_states, n_states),
    ).tocsr()
    between.sum_duplicates()
    to_conversion = np.bincount(state[last], weights=paths.conversions, minlength=n_states)
    to_null = np.bincount(state[last], weights=paths.nulls, minlength=n_states)
    revenue_at = np.bincount(
        state[last], weights=paths.revenue_micros.astype(np.float64), minlength=n_states
    )
    out = np.asarray(between.sum(axis=1)).ravel() + to_conversion + to_null
    starts = np.bincount(state[first], weights=weight, minlength=n_states)
    total = starts.sum()

    # The channels each state holds: a (state x channel) table of booleans.
    base = n_channels + 1
    holds = np.zeros((n_states, n_channels), dtype=bool)
    remaining = state_keys.copy()
    for _ in range(order):
        digit = remaining % base
        present = digit > 0
        holds[np.flatnonzero(present), digit[present] - 1] = True
        remaining //= base

    with np.errstate(divide="ignore", invalid="ignore"):
        q = sparse.diags(np.where(out > 0, 1.0 / out, 0.0)) @ between
        rhs = np.c_[to_conversion / out, revenue_at / MICROS / out]
    rhs = np.nan_to_num(rhs)
    pi = starts / total if total > 0 else starts

    def absorbed(keep: np.ndarray) -> np.ndarray:
        """(conversion probability, expected revenue) from start with only ``keep`` states."""
        idx = np.flatnonzero(keep)
        if not len(idx) or total == 0:
            return np.zeros(2)
        system = (sparse.identity(len(idx), format="csr") - q[idx][:, idx]).tocsr()
        return pi[idx] @ _solve(system, rhs[idx], direct_states)

    everything = absorbed(np.ones(n_states, dtype=bool))
    removed = np.array([absorbed(~holds[:, c]) for c in range(n_channels)]).reshape(-1, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        effects = np.where(everything > 0, (everything - removed) / everything, 0.0)
    effects = np.clip(effects, 0.0, 1.0)  # rounding: removal never raises the probability

    coo = between.tocoo()
    conv_states = np.flatnonzero(to_conversion)
    null_states = np.flatnonzero(to_null)
    start_states = np.flatnonzero(starts)
    transitions = (
        np.concatenate([np.full(len(start_states), START), coo.row, conv_states, null_states]),
        np.concatenate(
            [
                start_states,
                coo.col,
                np.full(len(conv_states), CONVERSION),
                np.full(len(null_states), NULL),
            ]
        ),
        np.concatenate(
            [starts[start_states], coo.data, to_conversion[conv_states], to_null[null_states]]
        ).astype(np.int64),
    )
    return MarkovResult(
        order=order,
        channels=list(paths.channels),
        conversion_probability=float(everything[0]),
        removal_effect=effects[:, 0],
        revenue_removal_effect=effects[:, 1],
        states=[_decode(int(k), base) for k in state_keys],
        transitions=transitions,
    )
