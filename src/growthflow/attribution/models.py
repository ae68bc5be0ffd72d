"""Step 3: attribution models, vectorised over whole batches of journeys.

A batch holds its journeys as flat numpy arrays (sessions in journey order, journey after
journey) plus ``offsets``; every model returns, per session, the phase values
``initializer, holder, closer`` (NaN for models without phases) and ``ihc``, which sums to 1
per journey. Models are registered by name in :data:`MODELS`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from growthflow.errors import ConfigError, describe_errors

PHASES = ("initializer", "holder", "closer")


# --- parameters ---------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Curve(_Strict):
    """Piecewise-linear membership over hours, flat outside the given points."""

    hours: list[float] = Field(min_length=1)
    membership: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Curve:
        if len(self.hours) != len(self.membership):
            raise ValueError("hours and membership need the same number of points")
        if any(b <= a for a, b in zip(self.hours, self.hours[1:], strict=False)):
            raise ValueError("hours must be strictly increasing")
        if any(not 0.0 <= m <= 1.0 for m in self.membership):
            raise ValueError("membership values must lie in [0, 1]")
        return self

    def __call__(self, hours: np.ndarray) -> np.ndarray:
        return np.interp(hours, self.hours, self.membership)


class PhaseWeights(_Strict):
    initializer: float = Field(ge=0)
    holder: float = Field(ge=0)
    closer: float = Field(ge=0)

    def as_array(self) -> np.ndarray:
        return np.array([self.initializer, self.holder, self.closer])


class ChannelWeights(_Strict):
    initializer: float = Field(default=1.0, ge=0)
    holder: float = Field(default=1.0, ge=0)
    closer: float = Field(default=1.0, ge=0)


class IhcParams(_Strict):
    phase_weights: PhaseWeights
    restart_after_hours: float = Field(gt=0)  # inf: a journey never starts again
    initializer: Curve
    closer: Curve
    holder_edge_power: float = Field(gt=0)  # phi(v) = v ** power in the holder's form
    channel_weights: dict[str, ChannelWeights] = Field(default_factory=dict)


class PositionBasedParams(_Strict):
    first: float = Field(ge=0, le=1)
    last: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> PositionBasedParams:
        if self.first + self.last > 1:
            raise ValueError("first + last must not exceed 1")
        return self


class TimeDecayParams(_Strict):
    half_life_hours: float = Field(gt=0)


class ModelParams(_Strict):
    ihc: IhcParams
    position_based: PositionBasedParams
    time_decay: TimeDecayParams


DEFAULT_PARAMS_FILE = "model_params.toml"


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_params(path: Path | None = None) -> ModelParams:
    """The shipped defaults, overridden key by key by the TOML file at ``path``."""
    text = resources.files("growthflow.attribution").joinpath(DEFAULT_PARAMS_FILE).read_text()
    data = tomllib.loads(text)
    if path is not None:
        try:
            data = _merge(data, tomllib.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ConfigError(f"parameter file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"parameter file {path} is not valid TOML: {exc}") from None
    try:
        return ModelParams.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid model parameters: {describe_errors(exc.errors())}") from None


# --- batches and results ---------------------------------------------------------------------
@dataclass(frozen=True)
class JourneyBatch:
    """Journeys of one request. Session arrays have one entry per session, in order."""

    batch_no: int
    conv_ids: np.ndarray  # (J,) str
    conv_ts: np.ndarray  # (J,) datetime64[s]
    offsets: np.ndarray  # (J + 1,) int: journey j is sessions offsets[j]:offsets[j+1]
    session_ids: np.ndarray  # (S,) str
    ts: np.ndarray  # (S,) datetime64[s]
    channel: np.ndarray  # (S,) str
    holder_engagement: np.ndarray  # (S,) int8
    closer_engagement: np.ndarray  # (S,) int8
    impression_interaction: np.ndarray  # (S,) int8

    @property
    def n_journeys(self) -> int:
        return len(self.conv_ids)

    @property
    def n_sessions(self) -> int:
        return len(self.session_ids)

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @cached_property
    def journey_of(self) -> np.ndarray:
        """(S,) journey index of each session."""
        return np.repeat(np.arange(self.n_journeys), self.lengths)

    @cached_property
    def position(self) -> np.ndarray:
        """(S,) 0-based position of each session in its journey."""
        return np.arange(self.n_sessions) - np.repeat(self.offsets[:-1], self.lengths)

    @cached_property
    def is_first(self) -> np.ndarray:
        return self.position == 0

    @cached_property
    def is_last(self) -> np.ndarray:
        return self.position == np.repeat(self.lengths, self.lengths) - 1

    @property
    def conversion(self) -> np.ndarray:
        """(S,) int8: 1 on the last session of each journey (the IHC API's ``conversion``)."""
        return self.is_last.astype(np.int8)

    def journey_sum(self, values: np.ndarray) -> np.ndarray:
        """(J, ...) sum of per-session ``values`` over each journey."""
        return np.add.reduceat(values, self.offsets[:-1], axis=0)

    def per_session(self, journey_values: np.ndarray) -> np.ndarray:
        """Broadcast (J, ...) journey values to (S, ...)."""
        return np.repeat(journey_values, self.lengths, axis=0)

    def conv_id_per_session(self) -> np.ndarray:
        return self.per_session(self.conv_ids)

    _SESSION_FIELDS = (
        "session_ids",
        "ts",
        "channel",
        "holder_engagement",
        "closer_engagement",
        "impression_interaction",
    )

    def select(self, journeys: np.ndarray) -> JourneyBatch:
        """A batch of the given journeys (indices, in the given order)."""
        journeys = np.asarray(journeys, dtype=np.int64)
        lengths = self.lengths[journeys]
        starts = np.repeat(self.offsets[journeys], lengths)
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = starts + within
        return JourneyBatch(
            batch_no=self.batch_no,
            conv_ids=self.conv_ids[journeys],
            conv_ts=self.conv_ts[journeys],
            offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
            **{name: getattr(self, name)[rows] for name in self._SESSION_FIELDS},
        )

    @classmethod
    def concat(cls, batches: list[JourneyBatch], batch_no: int = -1) -> JourneyBatch:
        """One batch holding the journeys of all ``batches``, in order."""
        lengths = np.concatenate([b.lengths for b in batches])
        return cls(
            batch_no=batch_no,
            conv_ids=np.concatenate([b.conv_ids for b in batches]),
            conv_ts=np.concatenate([b.conv_ts for b in batches]),
            offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
            **{
                name: np.concatenate([getattr(b, name) for b in batches])
                for name in cls._SESSION_FIELDS
            },
        )


@dataclass(frozen=True)
class Attribution:
    """Per-session results of one batch; phases are NaN for models without phases."""

    initializer: np.ndarray
    holder: np.ndarray
    closer: np.ndarray
    ihc: np.ndarray

    @classmethod
    def without_phases(cls, ihc: np.ndarray) -> Attribution:
        nan = np.full(len(ihc), np.nan)
        return cls(nan, nan, nan, ihc)


def _hours(delta: np.ndarray) -> np.ndarray:
    return delta.astype("timedelta64[s]").astype(np.float64) / 3600.0


def _normalise(batch: JourneyBatch, weights: np.ndarray) -> np.ndarray:
    """Divide per-session weights by their journey's sum (journeys summing to 0 split evenly)."""
    sums = batch.per_session(batch.journey_sum(weights))
    even = 1.0 / batch.per_session(batch.lengths)
    return np.divide(weights, sums, out=even.copy(), where=sums > 0)


def _run_ends(tied: np.ndarray) -> np.ndarray:
    """For each session, the last session of its run of sessions at the same second
    (``tied[i]``: session i is at the same second as session i + 1 of its journey)."""
    index = np.arange(len(tied))
    ends = np.where(tied, len(tied), index)  # a run ends at the first untied session
    return np.minimum.accumulate(ends[::-1])[::-1]


def _normalise_or_zero(batch: JourneyBatch, weights: np.ndarray) -> np.ndarray:
    """Divide per-session weights by their journey's sum (0 where the sum is 0)."""
    sums = batch.per_session(batch.journey_sum(weights))
    return np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)


@dataclass(frozen=True)
class Timing:
    """Per session: hours since the previous session and to the journey's last one, and the
    restart rule's outcome (a session at least ``restart_after_hours`` after the previous one
    starts the journey again; the sessions before the last such start are dropped)."""

    since_previous: np.ndarray
    to_last: np.ndarray
    position: np.ndarray  # index in the batch
    starts: np.ndarray  # the journey starts here (its first session, or a restart)
    start: np.ndarray  # position of the journey's last start
    kept: np.ndarray  # at or after that start


def timing(batch: JourneyBatch, restart_after_hours: float) -> Timing:
    since_previous = np.zeros(batch.n_sessions)
    since_previous[1:] = _hours(np.diff(batch.ts))
    to_last = _hours(batch.per_session(batch.ts[batch.offsets[1:] - 1]) - batch.ts)
    position = np.arange(batch.n_sessions)
    starts = batch.is_first | (since_previous >= restart_after_hours)
    start = batch.per_session(
        np.maximum.reduceat(np.where(starts, position, -1), batch.offsets[:-1])
    )
    return Timing(since_previous, to_last, position, starts, start, position >= start)


# --- the models ---------------------------------------------------------------------------
def ihc_model(batch: JourneyBatch, params: ModelParams) -> Attribution:
    p = params.ihc
    # Restart: the sessions before a journey's last restart get 0 in every phase.
    t = timing(batch, p.restart_after_hours)
    since_previous, to_last, position = t.since_previous, t.to_last, t.position
    starts, start, kept = t.starts, t.start, t.kept
    # Sessions at the same second as a journey's start: the last listed is the initializer
    # (as the API answers); the ones before it count as 0 hours after their predecessor.
    tied = np.zeros(batch.n_sessions, dtype=bool)  # same second as the next session
    tied[:-1] = (np.diff(batch.ts) == np.timedelta64(0, "s")) & ~batch.is_last[:-1]
    run_end = _run_ends(tied)
    first = position == run_end[start]
    since_previous = np.where(
        tied & (position >= start) & (position < run_end[start]), 0.0, since_previous
    )
    starts_tied = np.zeros(batch.n_sessions, dtype=bool)
    starts_tied[run_end[np.flatnonzero(starts)]] = True

    member = np.empty((batch.n_sessions, 3))
    member[:, 0] = np.where(first, 1.0, p.initializer(since_previous))
    # Closer: the sessions with closer_engagement = 1, and the last session always.
    eligible = (batch.closer_engagement == 1) | batch.is_last
    member[:, 2] = np.where(eligible, p.closer(to_last), 0.0)
    # Holder: not a time curve but the sessions the other two phases leave. With a and b a
    # session's initializer and closer shares over the whole journey as sent (sessions before
    # a restart included, no channel weights):
    #   W = sqrt((1-a)(1-b) + [(1-b)^2 phi(a) + (1-a)^2 phi(b)] / 16),  phi(v) = v^power
    # (a session holding a whole phase gets (1-b)/4 or (1-a)/4), times holder_engagement.
    a = _normalise_or_zero(batch, np.where(starts_tied, 1.0, p.initializer(since_previous)))
    b = _normalise_or_zero(batch, member[:, 2])
    phi_a, phi_b = a**p.holder_edge_power, b**p.holder_edge_power
    spread = (1 - a) * (1 - b) + ((1 - b) ** 2 * phi_a + (1 - a) ** 2 * phi_b) / 16
    member[:, 1] = batch.holder_engagement * np.sqrt(np.maximum(spread, 0.0))
    member *= kept[:, None]

    if p.channel_weights:
        names, codes = np.unique(batch.channel, return_inverse=True)
        table = np.array(
            [
                [getattr(p.channel_weights.get(str(n), ChannelWeights()), ph) for ph in PHASES]
                for n in names
            ]
        )
        member *= table[codes]

    sums = batch.journey_sum(member)  # (J, 3)
    present = sums > 0
    phase = np.divide(
        member, batch.per_session(sums), out=np.zeros_like(member), where=batch.per_session(present)
    )
    w = p.phase_weights.as_array()
    denominator = (present * w).sum(axis=1)  # (J,)
    ihc = np.divide(
        phase @ w,
        batch.per_session(denominator),
        out=np.zeros(batch.n_sessions),
        where=batch.per_session(denominator) > 0,
    )
    # A journey whose memberships are all zero (e.g. zero channel weights) splits evenly.
    degenerate = batch.per_session(denominator <= 0)
    ihc = np.where(degenerate, 1.0 / batch.per_session(batch.lengths), ihc)

    single = batch.per_session(batch.lengths == 1)
    phase[single] = (1.0, 0.0, 1.0)
    ihc[single] = 1.0
    return Attribution(phase[:, 0], phase[:, 1], phase[:, 2], ihc)


def linear_model(batch: JourneyBatch, params: ModelParams) -> Attribution:
    return Attribution.without_phases(1.0 / batch.per_session(batch.lengths).astype(np.float64))


def first_touch_model(batch: JourneyBatch, params: ModelParams) -> Attribution:
    return Attribution.without_phases(batch.is_first.astype(np.float64))


def last_touch_model(batch: JourneyBatch, params: ModelParams) -> Attribution:
    return Attribution.without_phases(batch.is_last.astype(np.float64))


def position_based_model(batch: JourneyBatch, params: ModelParams) -> Attribution:
    first, last = params.position_based.first, params.position_based.last
    n = batch.per_session(batch.lengths).astype(np.float64)
    middle = (1.0 - first - last) / np.maximum(n - 2, 1)
    ihc = np.where(batch.is_first, first, np.where(batch.is_last, last, middle))
    ihc = np.where(n == 2, 0.5, ihc)
    ihc = np.where(n == 1, 1.0, ihc)
    return Attribution.without_phases(ihc)


def time_decay_model(batch: JourneyBatch, params: ModelParams) -> Attribution:
    hours = _hours(batch.per_session(batch.conv_ts) - batch.ts)
    # Shift by the journey's most recent session before exponentiating: same ratios, and
    # no underflow to 0 for journeys far older than the half-life.
    hours -= batch.per_session(np.minimum.reduceat(hours, batch.offsets[:-1]))
    weights = np.exp2(-hours / params.time_decay.half_life_hours)
    return Attribution.without_phases(_normalise(batch, weights))


ModelFn = Callable[[JourneyBatch, ModelParams], Attribution]

MODELS: dict[str, ModelFn] = {
    "ihc": ihc_model,
    "linear": linear_model,
    "first-touch": first_touch_model,
    "last-touch": last_touch_model,
    "position-based": position_based_model,
    "time-decay": time_decay_model,
}


def get_model(name: str) -> ModelFn:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
