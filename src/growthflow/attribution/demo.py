"""Synthetic data shaped like the original attribution challenge database.

At scale 1: about 450,000 sessions and 2,000 conversions over 10 days, 16 channels, 64-hex
ids, 58 % of journeys with one session and a tail to about 40, per-channel costs (free
channels have no cost row or a NULL cost), engagement flags mostly 1. Some users convert
twice (their journeys share sessions) and about 2 % of conversions have no earlier session.

Larger scales repeat the scale-1 shape in independent units drawn from the same seed, so a
scale-100 database is generated in bounded memory and the output is deterministic. ``days``
spreads the data over more (or fewer) days at the same daily volume: 60 days at scale 1 is
six times the rows of 10 days. Rows are written in session id order, each unit's ids in its own
slice of the id space (above the units before it), so writing appends to the id indexes.
growthflow's indexes on the input tables are left to the first run, as on a user's database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.database import bulk_insert, missing_tables, translate_errors
from growthflow.errors import DatabaseError

SESSIONS_PER_UNIT = 450_000
CONVERSIONS_PER_UNIT = 2_000
FIRST_DAY = date(2023, 9, 1)
DAYS = 10
ONE_SESSION_SHARE = 0.58
MAX_JOURNEY = 40
SECOND_CONVERSION_SHARE = 0.05
NO_SESSION_SHARE = 0.02

# name, share of sessions, mean cost per session (0 = free channel)
CHANNELS: tuple[tuple[str, float, float], ...] = (
    ("Organic Traffic", 0.20, 0.0),
    ("Direct Traffic", 0.15, 0.0),
    ("Paid Search Brand", 0.10, 0.35),
    ("Paid Search Non Brand", 0.09, 1.10),
    ("FB & IG Ads", 0.09, 0.55),
    ("Performance Max", 0.06, 0.80),
    ("TikTok Ads", 0.05, 0.30),
    ("Display Ads", 0.04, 0.15),
    ("Microsoft Ads", 0.03, 0.70),
    ("YouTube Ads", 0.03, 0.40),
    ("Affiliate & Partnerships", 0.04, 0.90),
    ("Price Comparison", 0.03, 0.60),
    ("Newsletter & Email", 0.04, 0.0),
    ("Social Organic", 0.03, 0.0),
    ("Referral", 0.015, 0.0),
    ("Untracked Conversions", 0.005, 0.0),
)


@dataclass
class DemoStats:
    sessions: int = 0
    conversions: int = 0
    cost_rows: int = 0


def _hex_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random 64-hex ids as fixed-width bytes (they sort like the text)."""
    return np.frombuffer(rng.bytes(32 * n).hex().encode("ascii"), dtype="S64")


def _in_part(ids: np.ndarray, part: int, parts: int) -> np.ndarray:
    """Random 64-hex ids moved into the ``part``-th of ``parts`` equal slices of the id space
    (their first four digits scaled into it): every unit of a large database gets ids above
    the units before it, so writing a unit appends to the id index instead of rewriting all of
    it. Together the units' ids still cover the whole space evenly."""
    if parts == 1:
        return ids
    digits = np.frombuffer(ids.tobytes(), dtype=np.uint8).reshape(-1, 64).copy()
    head = digits[:, :4].astype(np.int64)
    nibbles = np.where(head >= ord("a"), head - ord("a") + 10, head - ord("0"))
    value = ((nibbles[:, 0] * 16 + nibbles[:, 1]) * 16 + nibbles[:, 2]) * 16 + nibbles[:, 3]
    low, high = part * 65_536 // parts, (part + 1) * 65_536 // parts
    value = low + value * (high - low) // 65_536
    for k in (3, 2, 1, 0):
        nibble = value % 16
        digits[:, k] = np.where(nibble >= 10, nibble - 10 + ord("a"), nibble + ord("0"))
        value //= 16
    return np.frombuffer(digits.tobytes(), dtype="S64")


def _hex_ids(rng: np.random.Generator, n: int) -> list[str]:
    return _hex_bytes(rng, n).astype("U64").tolist()


def _split_timestamps(seconds: np.ndarray) -> tuple[list[str], list[str]]:
    """Epoch seconds -> ('YYYY-MM-DD', 'HH:MM:SS') string lists, vectorised."""
    text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s").astype("U19")
    chars = text.view("U1").reshape(-1, 19)
    dates = np.ascontiguousarray(chars[:, :10]).view("U10").ravel()
    times = np.ascontiguousarray(chars[:, 11:]).view("U8").ravel()
    return dates.tolist(), times.tolist()


def _unit(
    rng: np.random.Generator,
    n_sessions: int,
    n_conversions: int,
    days: int = DAYS,
    part: tuple[int, int] = (0, 1),
) -> tuple[Iterable, list, Iterable]:
    """One unit of data over ``days`` days: (session rows, conversion rows, cost rows)."""
    t0 = int(np.datetime64(FIRST_DAY, "s").astype(np.int64))
    t1 = t0 + days * 86_400
    names = np.array([c[0] for c in CHANNELS], dtype=object)
    share = np.array([c[1] for c in CHANNELS])
    share /= share.sum()
    cpc = np.array([c[2] for c in CHANNELS])

    # Converting users: one or two conversions each; journey lengths for the first one.
    n_two = int(round(n_conversions * SECOND_CONVERSION_SHARE / 2))
    n_conv_users = n_conversions - n_two
    conv_user = np.r_[np.arange(n_conv_users), np.arange(n_two)]
    length = np.where(
        rng.random(n_conv_users) < ONE_SESSION_SHARE,
        1,
        np.minimum(1 + rng.geometric(0.17, n_conv_users), MAX_JOURNEY),
    )
    length[rng.random(n_conv_users) < NO_SESSION_SHARE] = 0
    first_conv = rng.integers(t0 + 3_600, t1 - 3_600, n_conv_users)
    # Sessions before the first conversion, going back with short (same visit) or long gaps.
    n_before = int(length.sum())
    owner = np.repeat(np.arange(n_conv_users), length)
    gap = np.where(
        rng.random(n_before) < 0.5,
        rng.exponential(1_200, n_before),
        rng.exponential(86_400, n_before),
    )
    gap += 1  # strictly before the conversion, never at the same second
    starts = np.r_[0, np.cumsum(length)[:-1]]
    back = np.cumsum(gap)
    back -= np.repeat(back[starts[length > 0]] - gap[starts[length > 0]], length[length > 0])
    span = np.zeros(n_conv_users)
    np.maximum.at(span, owner, back)
    room = (first_conv - t0).astype(float)
    fit = np.minimum(1.0, room / np.maximum(span, 1.0))
    conv_session_ts = (first_conv[owner] - back * fit[owner]).astype(np.int64)
    # Second conversions: a few more sessions after the first, so both journeys share sessions.
    later = np.minimum(86_400, t1 - 1 - first_conv[:n_two])
    second_conv = first_conv[:n_two] + 60 + (rng.random(n_two) * (later - 60)).astype(np.int64)
    extra = rng.integers(0, 4, n_two)
    extra_owner = np.repeat(np.arange(n_two), extra)
    extra_ts = first_conv[extra_owner] + (
        rng.random(len(extra_owner)) * (second_conv[extra_owner] - first_conv[extra_owner])
    ).astype(np.int64)
    conv_ts = np.r_[first_conv, second_conv]

    # Everyone else: browsing users with a geometric number of sessions anywhere in the window.
    n_rest = max(n_sessions - n_before - len(extra_owner), 0)
    per_user = rng.geometric(0.5, n_rest)
    per_user = per_user[np.cumsum(per_user) <= n_rest]
    if per_user.sum() < n_rest:
        per_user = np.r_[per_user, n_rest - per_user.sum()]
    rest_owner = n_conv_users + np.repeat(np.arange(len(per_user)), per_user)
    rest_ts = rng.integers(t0, t1, n_rest)

    user_index = np.r_[owner, extra_owner, rest_owner]
    ts = np.r_[conv_session_ts, extra_ts, rest_ts]
    n = len(ts)
    user_ids = np.array(_hex_ids(rng, n_conv_users + len(per_user)), dtype=object)
    channel = rng.choice(len(names), n, p=share)
    session_bytes = _in_part(_hex_bytes(rng, n), *part)
    holder = rng.random(n) < 0.88
    closer = rng.random(n) < 0.70
    impression = rng.random(n) < 0.03
    # Rows in session id order: the id's index is then appended to, not inserted into at
    # random (SQLite, scale 1: 3.4 s -> 1.7 s to write the sessions; the same rows).
    order = np.argsort(session_bytes, kind="stable")
    session_bytes = session_bytes[order]
    session_ids = session_bytes.astype("U64").tolist()
    dates, times = _split_timestamps(ts[order])
    sessions = zip(  # consumed once, by the insert: no list of every row
        session_ids,
        user_ids[user_index[order]].tolist(),
        dates,
        times,
        names[channel[order]].tolist(),
        holder[order].astype(int).tolist(),
        closer[order].astype(int).tolist(),
        impression[order].astype(int).tolist(),
        strict=True,
    )

    conv_dates, conv_times = _split_timestamps(conv_ts)
    revenue = np.round(rng.lognormal(4.2, 0.7, n_conversions), 2).tolist()
    conversions = list(
        zip(
            _hex_ids(rng, n_conversions),
            user_ids[conv_user].tolist(),
            conv_dates,
            conv_times,
            revenue,
            strict=True,
        )
    )

    # Costs: paid sessions get a row; free ones mostly none, some with a NULL cost.
    paid = cpc[channel] > 0
    noise = rng.lognormal(-0.125, 0.5, n)
    cost = np.round(cpc[channel] * noise, 4)
    has_row = (paid | (rng.random(n) < 0.3))[order]  # in session id order, like the sessions
    cost_values = np.where(paid, cost, None)[order][has_row].tolist()  # free: NULL cost
    costs = zip(session_bytes[has_row].astype("U64").tolist(), cost_values, strict=True)
    return sessions, conversions, costs


def generate_demo_data(
    engine: sa.Engine,
    *,
    scale: float = 1.0,
    seed: int = 42,
    force: bool = False,
    days: int = DAYS,
    on_unit: Callable[[int, int], None] | None = None,
) -> DemoStats:
    """Fill the input tables with demo data (replacing them only with ``force``): ``scale``
    times the scale-1 volume per day, over ``days`` days from 2023-09-01."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    if days < 1:
        raise ValueError("days must be at least 1")
    with translate_errors(engine):
        inputs = [t.name for t in schema.INPUT_TABLES]
        missing = set(missing_tables(engine, inputs))
        present = [t for t in inputs if t not in missing]
        if present and not force:
            with engine.connect() as conn:
                rows = sum(
                    conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one()
                    for t in present
                )
            if rows:
                raise DatabaseError(
                    f"the database already holds {rows} input rows; pass --force to replace them"
                )
        with engine.begin() as conn:
            # Replace everything the attribution derives from the inputs as well.
            for table in reversed(schema.metadata.sorted_tables):
                table.drop(conn, checkfirst=True)
            # The input tables without growthflow's indexes, as a user's database holds them:
            # the first run builds those (schema.init_db), in one sorted pass each, and a
            # benchmark's first run on demo data pays for them as on any other data.
            for table in schema.INPUT_TABLES:
                conn.execute(sa.schema.CreateTable(table))
        volume = scale * days / DAYS  # in scale-1 units of 10 days
        units = max(1, math.ceil(volume))
        stats = DemoStats()
        seeds = np.random.SeedSequence(seed).spawn(units)
        for i, unit_seed in enumerate(seeds):
            rng = np.random.default_rng(unit_seed)
            fraction = volume / units
            sessions, conversions, costs = _unit(
                rng,
                max(1, round(SESSIONS_PER_UNIT * fraction)),
                max(2, round(CONVERSIONS_PER_UNIT * fraction)),
                days,
                (i, units),
            )
            with engine.begin() as conn:
                stats.sessions += bulk_insert(conn, schema.session_sources, sessions)
                stats.conversions += bulk_insert(conn, schema.conversions, conversions)
                stats.cost_rows += bulk_insert(conn, schema.session_costs, costs)
            if on_unit is not None:
                on_unit(i + 1, units)
        schema.init_db(engine, indexes=False)
        if engine.dialect.name == "postgresql":  # fresh statistics after a bulk load
            with engine.begin() as conn:
                for table in schema.INPUT_TABLES:
                    conn.execute(sa.text(f"ANALYZE {table.name}"))  # noqa: S608 (constant names)
    return stats
