"""``growthflow attribution fit-ihc``: calibrate the local ``ihc`` model to IHC API answers.

The API's answers are traces: every session of every journey sent, with the initializer,
holder and closer values and the ihc the API returned. They come from a CSV in the format of
``shared/datasets/ihc_api_traces/ihc_api_traces.csv`` or from the database of earlier
``--provider ihc-api`` runs (journey inputs in ``session_sources``, the answers in
``gf_attribution_detail`` and ``attribution_customer_journey``).

What is fitted, with the model's structure fixed (restart rule, holder form, knots):
- the initializer curve, at the knots of the base parameters, by least squares on the ratios
  the answers imply: within a journey, a later kept session's initializer over the first kept
  session's (membership 1) is the curve at the hours since its previous session;
- the closer curve likewise: an eligible session's closer over the last session's (membership
  1 at 0 h) is the curve at its hours before the last session;
- the phase weights, by least squares of ihc on the three phase values (weights summing to 1).
Every fit is linear least squares on whole traces: deterministic, no iterations. The error is
cross-validated by folds of whole requests (never splitting a request between fitting and
scoring), next to the error of the base parameters on the same sessions.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.models import (
    PHASES,
    Curve,
    IhcParams,
    JourneyBatch,
    ModelParams,
    PhaseWeights,
    get_model,
    ihc_model,
    timing,
)
from growthflow.errors import ConfigError, InputDataError

SUM_TOLERANCE = 5e-3  # the API rounds phase values to 4 decimals
COLUMNS = (
    "journey_key",
    "request_batch",
    "session_id",
    "timestamp",
    "channel_label",
    "holder_engagement",
    "closer_engagement",
    "impression_interaction",
    "initializer",
    "holder",
    "closer",
    "ihc",
)


@dataclass(frozen=True)
class Traces:
    """API answers: the journeys as sent, and per session the API's phase values and ihc."""

    batch: JourneyBatch
    phases: np.ndarray  # (S, 3) initializer, holder, closer
    ihc: np.ndarray  # (S,)
    requests: np.ndarray  # (J,) the request each journey was sent in

    def select(self, journeys: np.ndarray) -> Traces:
        rows = np.concatenate(
            [np.arange(self.batch.offsets[j], self.batch.offsets[j + 1]) for j in journeys]
            or [np.zeros(0, dtype=np.int64)]
        )
        return Traces(
            self.batch.select(journeys), self.phases[rows], self.ihc[rows], self.requests[journeys]
        )


def _traces(rows: list[tuple], source: str) -> Traces:
    """Traces from rows (journey, request, session_id, ts, channel, h, c, i, I, H, C, ihc),
    ordered by journey then timestamp (then as given)."""
    if not rows:
        raise InputDataError(f"{source}: no traces")
    rows = sorted(enumerate(rows), key=lambda r: (str(r[1][0]), str(r[1][3]), r[0]))
    rows = [r for _, r in rows]
    cols = list(zip(*rows, strict=True))
    keys = np.asarray(cols[0], dtype=object)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    try:
        ts = np.asarray([str(t)[:19] for t in cols[3]], dtype="datetime64[s]")
        numbers = np.asarray(cols[8:12], dtype=np.float64).T
        flags = [np.asarray(c, dtype=np.float64).astype(np.int8) for c in cols[5:8]]
    except ValueError as exc:
        raise InputDataError(f"{source}: unreadable trace values ({exc})") from None
    batch = JourneyBatch(
        batch_no=0,
        conv_ids=keys[starts],
        conv_ts=ts[np.r_[starts[1:], len(rows)] - 1],
        offsets=np.r_[starts, len(rows)].astype(np.int64),
        session_ids=np.asarray(cols[2], dtype=object),
        ts=ts,
        channel=np.asarray(cols[4], dtype=object),
        holder_engagement=flags[0],
        closer_engagement=flags[1],
        impression_interaction=flags[2],
    )
    traces = Traces(batch, numbers[:, :3], numbers[:, 3], np.asarray(cols[1], dtype=object)[starts])
    _check(traces, source)
    return traces


def _check(traces: Traces, source: str) -> None:
    """Refuse what cannot be API answers: every phase present sums to 1 per journey, ihc too."""
    b = traces.batch
    sums = b.journey_sum(np.c_[traces.phases, traces.ihc])
    present = b.journey_sum(np.c_[traces.phases, traces.ihc] > 0) > 0
    bad = present & (np.abs(sums - 1.0) > SUM_TOLERANCE)
    if bad.any() or not np.isfinite(sums).all():
        j, p = np.argwhere(bad | ~np.isfinite(sums))[0]
        name = (*PHASES, "ihc")[p]
        raise InputDataError(
            f"{source}: these are not IHC API answers: the {name} values of journey "
            f"{b.conv_ids[j]} sum to {sums[j, p]:.4f}, not 1 ({int(bad.sum())} such sums)"
        )


def read_traces_csv(path: Path) -> Traces:
    try:
        with Path(path).open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputDataError(f"{path}: not a traces file (missing {', '.join(missing)})")
            rows = [tuple(r[c] for c in COLUMNS) for r in reader]
    except FileNotFoundError:
        raise ConfigError(f"traces file not found: {path}") from None
    except UnicodeDecodeError:
        raise InputDataError(f"{path}: not a UTF-8 text file") from None
    return _traces(rows, str(path))


def read_traces_db(engine: sa.Engine) -> Traces:
    """The answers stored by ``--provider ihc-api`` runs (one request per conversion: the
    database does not keep which conversions shared a request)."""
    s, a, d, ac = (
        schema.session_sources,
        schema.attribution_customer_journey,
        schema.attribution_detail,
        schema.attributed_conversions,
    )
    query = (
        sa.select(
            a.c.conv_id,
            a.c.conv_id,
            s.c.session_id,
            s.c.event_date + " " + s.c.event_time,
            s.c.channel_name,
            s.c.holder_engagement,
            s.c.closer_engagement,
            s.c.impression_interaction,
            d.c.initializer,
            d.c.holder,
            d.c.closer,
            a.c.ihc,
        )
        .select_from(
            a.join(s, s.c.session_id == a.c.session_id)
            .join(d, sa.and_(d.c.conv_id == a.c.conv_id, d.c.session_id == a.c.session_id))
            .join(ac, ac.c.conv_id == a.c.conv_id)
        )
        .where(ac.c.model == "ihc-api")
    )
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    if not rows:
        raise InputDataError("the database holds no answers of the IHC API (--provider ihc-api)")
    return _traces(rows, "the database")


def _ratio_points(traces: Traces, params: IhcParams) -> tuple[np.ndarray, np.ndarray]:
    """(hours, ratio) points of the initializer and of the closer curve, from the answers."""
    b = traces.batch
    t = timing(b, params.restart_after_hours)
    position, start, kept = t.position, t.start, t.kept
    init, closer = traces.phases[:, 0], traces.phases[:, 2]
    multi = b.per_session(b.lengths) >= 2
    first_value = init[start]
    use = multi & kept & (position > start) & (first_value > 0)
    initializer = np.c_[t.since_previous[use], init[use] / first_value[use]]
    last_value = b.per_session(closer[b.offsets[1:] - 1])
    use = multi & kept & ~b.is_last & (b.closer_engagement == 1) & (last_value > 0)
    closer_points = np.c_[t.to_last[use], closer[use] / last_value[use]]
    return initializer, closer_points


def _fit_curve(points: np.ndarray, base: Curve, fixed: dict[int, float]) -> Curve:
    """Least-squares membership values at ``base``'s knots through ``points``."""
    knots = np.asarray(base.hours, dtype=np.float64)
    if len(points) == 0:
        return base
    t = points[:, 0]
    k = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, len(knots) - 1)
    design = np.zeros((len(t), len(knots)))
    inside = k < len(knots) - 1
    span = knots[np.minimum(k + 1, len(knots) - 1)] - knots[k]
    w = np.divide(t - knots[k], span, out=np.zeros_like(t), where=inside & (span > 0))
    rows = np.arange(len(t))
    design[rows, k] = np.where(inside, 1 - w, 1.0)
    design[rows[inside], k[inside] + 1] = w[inside]
    membership = np.array(base.membership, dtype=np.float64)
    for i, value in fixed.items():
        membership[i] = value
    # knots no point touches keep their base value; fixed knots their fixed one
    free = [i for i in range(len(knots)) if i not in fixed and design[:, i].any()]
    others = [i for i in range(len(knots)) if i not in free]
    if free:
        y = points[:, 1] - design[:, others] @ membership[others]
        membership[free], *_ = np.linalg.lstsq(design[:, free], y, rcond=None)
    membership = np.round(np.clip(membership, 0.0, 1.0), 4)
    return Curve(hours=list(base.hours), membership=membership.tolist())


def _fit_weights(traces: Traces, base: PhaseWeights) -> PhaseWeights:
    """ihc = sum_p w_p v_p with sum_p w_p = 1, on the sessions whose journey has every phase."""
    b = traces.batch
    v = traces.phases
    every = b.per_session((b.journey_sum(v > 0) > 0).all(axis=1)) & (b.per_session(b.lengths) >= 2)
    if every.sum() < 3:
        return base
    v, y = v[every], traces.ihc[every]
    design = np.c_[v[:, 0] - v[:, 2], v[:, 1] - v[:, 2]]
    (w1, w2), *_ = np.linalg.lstsq(design, y - v[:, 2], rcond=None)
    w = np.clip([w1, w2, 1 - w1 - w2], 0, None)
    w = np.round(w / w.sum(), 4)
    return PhaseWeights(initializer=w[0], holder=w[1], closer=w[2])


def fit_ihc(traces: Traces, base: ModelParams) -> ModelParams:
    """``base`` with the initializer and closer curves and the phase weights fitted."""
    p = base.ihc
    init_points, closer_points = _ratio_points(traces, p)
    zero_hour = {0: 1.0} if p.closer.hours[0] == 0 else {}
    fitted = p.model_copy(
        update={
            "initializer": _fit_curve(init_points, p.initializer, {}),
            "closer": _fit_curve(closer_points, p.closer, zero_hour),
            "phase_weights": _fit_weights(traces, p.phase_weights),
        }
    )
    return base.model_copy(update={"ihc": fitted})


def evaluate(
    traces: Traces, params: ModelParams, model: str = "ihc"
) -> list[tuple[str, int, int, dict[str, float | None]]]:
    """Mean absolute error per session of a local model against the answers, per phase (None
    for models without phases) and for ihc: on journeys of 2+ sessions, then by journey
    length (1, 2, 3, 4, 5-9, 10+). Rows of (journeys, journeys, sessions, errors)."""
    result = get_model(model)(traces.batch, params)
    b = traces.batch
    got = np.c_[result.initializer, result.holder, result.closer, result.ihc]
    diff = np.abs(got - np.c_[traces.phases, traces.ihc])
    length = b.per_session(b.lengths)
    rows = []
    for label, use in (
        ("2+ sessions", length >= 2),
        ("1 session", length == 1),
        ("2 sessions", length == 2),
        ("3 sessions", length == 3),
        ("4 sessions", length == 4),
        ("5-9 sessions", (length >= 5) & (length <= 9)),
        ("10+ sessions", length >= 10),
    ):
        if not use.any():
            continue
        mean = diff[use].mean(axis=0)
        values = {
            name: (None if np.isnan(v) else float(v))
            for name, v in zip((*PHASES, "ihc"), mean, strict=True)
        }
        rows.append((label, int(b.is_first[use].sum()), int(use.sum()), values))
    return rows


def errors(traces: Traces, params: ModelParams) -> dict[str, float]:
    """Mean absolute error per session, on journeys of 2+ sessions, per phase and for ihc."""
    result = ihc_model(traces.batch, params)
    multi = traces.batch.per_session(traces.batch.lengths) >= 2
    out = {
        phase: float(np.abs(getattr(result, phase) - traces.phases[:, i])[multi].mean())
        for i, phase in enumerate(PHASES)
    }
    out["ihc"] = float(np.abs(result.ihc - traces.ihc)[multi].mean())
    return out


def cross_validate(traces: Traces, base: ModelParams, folds: int = 5) -> dict[str, dict]:
    """Errors of the fitted and of the base parameters on held-out requests: the requests are
    dealt into ``folds`` folds; each is scored by parameters fitted on the others."""
    requests = np.unique(traces.requests.astype(str))
    if len(requests) < folds:
        raise InputDataError(
            f"{len(requests)} request(s) in the traces: cross-validation needs at least {folds}"
        )
    fold_of = {r: i % folds for i, r in enumerate(requests)}
    journey_fold = np.array([fold_of[str(r)] for r in traces.requests])
    abs_errors = {"fitted": [], "base": []}
    for fold in range(folds):
        held = np.flatnonzero(journey_fold == fold)
        fitted = fit_ihc(traces.select(np.flatnonzero(journey_fold != fold)), base)
        scored = traces.select(held)
        multi = scored.batch.per_session(scored.batch.lengths) >= 2
        truth = np.c_[scored.phases, scored.ihc][multi]
        for name, params in (("fitted", fitted), ("base", base)):
            r = ihc_model(scored.batch, params)
            got = np.c_[r.initializer, r.holder, r.closer, r.ihc][multi]
            abs_errors[name].append(np.abs(got - truth))
    return {
        name: dict(zip((*PHASES, "ihc"), np.concatenate(e).mean(axis=0).tolist(), strict=True))
        for name, e in abs_errors.items()
    }


def to_toml(params: IhcParams) -> str:
    """The fitted ``[ihc]`` section, for ``--params``."""

    def curve(c: Curve) -> str:
        return (
            f"{{ hours = [{', '.join(repr(float(h)) for h in c.hours)}], "
            f"membership = [{', '.join(repr(float(m)) for m in c.membership)}] }}"
        )

    w = params.phase_weights
    return "\n".join(
        [
            "# Fitted by growthflow attribution fit-ihc (pass with --params).",
            "[ihc]",
            f"phase_weights = {{ initializer = {w.initializer}, holder = {w.holder}, "
            f"closer = {w.closer} }}",
            f"restart_after_hours = {params.restart_after_hours}",
            f"initializer = {curve(params.initializer)}",
            f"closer = {curve(params.closer)}",
            f"holder_edge_power = {params.holder_edge_power}",
            "",
        ]
    )
