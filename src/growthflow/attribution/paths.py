"""Paths for the data-driven models: distinct channel sequences with their outcomes.

A *converting path* is a journey of the run, exactly as staged by the journeys step. A
*non-converting path* is the run of a user's usable sessions after their last usable
conversion up to the end of the training window (all of them for a user who never converted)
whose timestamps fall in the window.

The database selects both kinds of session and streams them in path order (path key, channel);
Python counts them per distinct channel sequence a chunk at a time (:class:`_PathCounter`, with
pyarrow), so memory follows the number of distinct paths, not sessions. Channels become codes
(their rank in bytewise name order) and the models receive :class:`Paths`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from growthflow.attribution.rules import InputRules
from growthflow.database import sort_threads
from growthflow.sql import collate_c

MICROS = 1_000_000  # revenue is summed exactly, in integer millionths
FETCH_ROWS = 50_000


@dataclass
class Paths:
    """Distinct channel sequences, flat: path ``p`` is ``codes[offsets[p]:offsets[p + 1]]``."""

    channels: list[str]  # code -> channel name
    codes: np.ndarray  # int64, every path's channel codes, path after path
    offsets: np.ndarray  # int64, n_paths + 1
    conversions: np.ndarray  # int64 per path: how many journeys converted along it
    nulls: np.ndarray  # int64 per path: how many non-converting paths it stands for
    revenue_micros: np.ndarray  # int64 per path: their revenue in millionths

    @classmethod
    def from_lists(
        cls,
        paths: list[list[str]],
        conversions: list[int],
        nulls: list[int],
        revenue: list[float] | None = None,
    ) -> Paths:
        """Paths given as lists of channel names (tests, benchmarks); equal paths may repeat."""
        channels = sorted({c for path in paths for c in path}, key=lambda c: c.encode())
        index = {c: i for i, c in enumerate(channels)}
        codes = np.array([index[c] for path in paths for c in path], dtype=np.int64)
        offsets = np.zeros(len(paths) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in paths])
        revenue = revenue if revenue is not None else [0.0] * len(paths)
        return cls(
            channels,
            codes,
            offsets,
            np.asarray(conversions, dtype=np.int64),
            np.asarray(nulls, dtype=np.int64),
            np.round(np.asarray(revenue, dtype=np.float64) * MICROS).astype(np.int64),
        )

    @property
    def n_paths(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def total_conversions(self) -> int:
        return int(self.conversions.sum())

    @property
    def total_revenue(self) -> float:
        return int(self.revenue_micros.sum()) / MICROS


def credit_shares(values: np.ndarray) -> np.ndarray:
    """Each channel's share of the credit: its positive value over the sum of the positive
    values (nothing for a channel whose value is 0 or negative; all 0 when none is positive)."""
    positive = np.maximum(values, 0.0)
    total = positive.sum()
    return positive / total if total > 0 else np.zeros_like(positive)


@dataclass(frozen=True)
class TrainingWindow:
    start: date
    end: date


def training_window(
    engine: sa.Engine,
    run_id: str,
    start: date,
    end: date,
    lookback_days: int | None,
    train_start: date | None = None,
    train_end: date | None = None,
) -> TrainingWindow:
    """``[start - lookback, end]`` by default; without a lookback the window starts on the
    day of the run's earliest journey session (so both kinds of path cover the same time)."""
    if train_start is None:
        if lookback_days is not None:
            train_start = start - timedelta(days=lookback_days)
        else:
            with engine.connect() as conn:
                earliest = conn.execute(
                    sa.text("SELECT MIN(event_ts) FROM gf_journey_sessions WHERE run_id = :r"),
                    {"r": run_id},
                ).scalar()
            train_start = date.fromisoformat(earliest[:10]) if earliest else start
    return TrainingWindow(train_start, train_end or end)


def _session_sql(rules: InputRules) -> tuple[str, str]:
    """SQL of the sessions of both kinds of path, in path order: (path key, channel[, revenue])."""
    c = collate_c(rules.dialect)
    sessions = rules.sessions("s")
    conversions = rules.conversions("c")
    revenue = rules.number("conversions", "c", "revenue")
    if rules.dialect == "sqlite":
        micros = f"CAST({revenue} * {MICROS} + 0.5 AS INTEGER)"
    else:
        micros = f"CAST(floor({revenue} * {MICROS} + 0.5) AS bigint)"
    session_ts = "(s.event_date || ' ' || s.event_time)"
    # SQLite reads the window's sessions in table order and sorts them: 1.4 s instead of 2.0 s
    # (28 s instead of 43 s at scale 10) than walking the user index and looking up each row.
    scan = " NOT INDEXED" if rules.dialect == "sqlite" else ""
    # Every value below is a bind parameter; the fragments are constant SQL.
    converting = f"""
        SELECT js.journey_no, js.channel_name, {micros} AS revenue_micros
        FROM gf_journey_sessions js
        JOIN gf_journeys j ON j.run_id = js.run_id AND j.journey_no = js.journey_no
        JOIN conversions c ON c.conv_id = j.conv_id
        WHERE js.run_id = :run_id
        ORDER BY js.journey_no, js.position
    """  # noqa: S608
    open_ = f"""
        WITH last_conversion AS (
            SELECT c.user_id, MAX(c.conv_date || ' ' || c.conv_time{c}) AS conv_ts
            FROM conversions c
            WHERE {conversions.valid} AND c.conv_date || ' ' || c.conv_time{c} <= :window_end{c}
            GROUP BY c.user_id
        )
        SELECT s.user_id, s.channel_name
        FROM session_sources s{scan}
        LEFT JOIN last_conversion l ON l.user_id = s.user_id
        WHERE s.event_date >= :window_start AND s.event_date <= :window_end_day
          AND {sessions.valid}
          AND (l.conv_ts IS NULL OR {session_ts}{c} > l.conv_ts{c})
        ORDER BY s.user_id{c}, s.event_date{c}, s.event_time{c}, s.session_id{c}
    """  # noqa: S608
    return converting, open_


class _PathCounter:
    """Distinct paths of an ordered (path key, channel[, revenue]) stream, chunk by chunk.

    Channels become codes in order of appearance; a path becomes the bytes of its codes
    (fixed width), so equal paths are equal keys, counted with pyarrow's group-by. The rows
    of the last path of a chunk wait for the next chunk (the path may go on there). Partial
    counts are merged when they grow, so memory follows the distinct paths."""

    def __init__(self, channels: dict[str, int], revenue: bool):
        self.channels = channels
        self.revenue = revenue  # the stream's rows carry their path's revenue
        self.parts: list[pa.Table] = []
        self.pending: list[tuple] = []

    def add(self, rows: list[tuple], final: bool = False) -> None:
        rows = self.pending + rows
        self.pending = []
        if not rows:
            return
        keys = [r[0] for r in rows]
        if not final:  # hold back the last path
            last = keys[-1]
            cut = len(keys)
            while cut > 0 and keys[cut - 1] == last:
                cut -= 1
            if cut == 0:
                self.pending = rows
                return
            self.pending, rows, keys = rows[cut:], rows[:cut], keys[:cut]
        names = pa.array([r[1] for r in rows], pa.string()).dictionary_encode()
        for name in names.dictionary.to_pylist():
            self.channels.setdefault(name, len(self.channels))
        mapping = np.array(
            [self.channels[n] for n in names.dictionary.to_pylist()], dtype=np.uint32
        )
        codes = mapping[names.indices.to_numpy()]
        key_array = pa.array(keys)
        starts = np.flatnonzero(
            np.r_[True, pc.not_equal(key_array[1:], key_array[:-1]).to_numpy(zero_copy_only=False)]
        )
        offsets = np.r_[starts, len(codes)].astype(np.int32) * 4
        paths = pa.BinaryArray.from_buffers(
            pa.binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(codes.tobytes())]
        )
        columns = {"path": paths, "paths": pa.array(np.ones(len(starts), dtype=np.int64))}
        if self.revenue:
            revenue = np.array([r[2] if r[2] is not None else 0 for r in rows], dtype=np.int64)
            columns["revenue_micros"] = pa.array(revenue[starts])
        self.parts.append(pa.table(columns))
        if len(self.parts) >= 16:
            self.parts = [self.result()]

    def result(self) -> pa.Table:
        if not self.parts:
            empty = {"path": pa.array([], pa.binary()), "paths": pa.array([], pa.int64())}
            if self.revenue:
                empty["revenue_micros"] = pa.array([], pa.int64())
            return pa.table(empty)
        table = pa.concat_tables(self.parts)
        sums = [(name, "sum") for name in table.column_names if name != "path"]
        grouped = table.group_by("path").aggregate(sums)
        return grouped.rename_columns([name.removesuffix("_sum") for name in grouped.column_names])


def _stream(conn: sa.Connection, sql: str, params: dict, counter: _PathCounter) -> None:
    if conn.dialect.name == "sqlite":
        # sqlite3's own cursor: plain tuples (SQLAlchemy's rows cost 2.5 s of 25 at scale 10)
        compiled = sa.text(sql).bindparams(**params).compile(dialect=conn.dialect)
        # Sort with helper threads: the window's sort took 9.3 s alone and 5.8-6.8 s with two
        # (scale 10, 4.4M sessions).
        with sort_threads(conn):
            cursor = conn.connection.driver_connection.cursor()
            try:
                cursor.execute(compiled.string, [compiled.params[k] for k in compiled.positiontup])
                while rows := cursor.fetchmany(FETCH_ROWS):
                    counter.add(rows)
            finally:
                cursor.close()
    else:
        options = {"stream_results": True, "yield_per": FETCH_ROWS}
        with conn.execution_options(**options).execute(sa.text(sql), params) as result:
            for rows in result.partitions(FETCH_ROWS):
                counter.add(rows)
    counter.add([], final=True)


def read_paths(engine: sa.Engine, run_id: str, rules: InputRules, window: TrainingWindow) -> Paths:
    """The run's converting paths and the window's non-converting paths, aggregated."""
    converting_sql, open_sql = _session_sql(rules)
    params = {
        "window_start": window.start.isoformat(),
        "window_end_day": window.end.isoformat(),
        "window_end": f"{window.end.isoformat()} 23:59:59",
    }
    channels: dict[str, int] = {}
    converting = _PathCounter(channels, revenue=True)
    open_ = _PathCounter(channels, revenue=False)
    with engine.connect() as conn:
        _stream(conn, converting_sql, {"run_id": run_id}, converting)
        _stream(conn, open_sql, params, open_)
    won = converting.result().rename_columns(["path", "conversions", "revenue_micros"])
    lost = open_.result().rename_columns(["path", "nulls"])
    table = won.join(lost, "path", join_type="full outer")
    if table.num_rows == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Paths([], empty, np.zeros(1, dtype=np.int64), empty, empty, empty)
    # Codes in bytewise order of the names, and paths in order of their codes: the same
    # input gives the same arrays, whatever order the rows arrived in.
    names = sorted(channels, key=str.encode)
    rank = np.empty(len(names), dtype=np.int64)
    rank[[channels[n] for n in names]] = np.arange(len(names))
    path_bytes = table["path"].combine_chunks()
    offsets = np.frombuffer(path_bytes.buffers()[1], dtype=np.int32)[
        path_bytes.offset : path_bytes.offset + len(path_bytes) + 1
    ].astype(np.int64)
    data = np.frombuffer(path_bytes.buffers()[2], dtype=np.uint32)
    codes = rank[data[offsets[0] // 4 : offsets[-1] // 4]]
    offsets = (offsets - offsets[0]) // 4
    keys = pa.BinaryArray.from_buffers(
        pa.binary(),
        len(path_bytes),
        [None, pa.py_buffer((offsets * 4).astype(np.int32)), pa.py_buffer(codes.astype(">u4"))],
    )
    order = pc.sort_indices(keys).to_numpy()
    lengths = np.diff(offsets)[order]
    starts = offsets[:-1][order]
    new_offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    within = np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1], lengths)
    codes = codes[np.repeat(starts, lengths) + within] if len(codes) else codes

    def column(name: str) -> np.ndarray:
        return pc.fill_null(table[name], 0).to_numpy().astype(np.int64)[order]

    return Paths(
        names,
        codes.astype(np.int64),
        new_offsets,
        column("conversions"),
        column("nulls"),
        column("revenue_micros"),
    )
