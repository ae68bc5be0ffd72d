"""Step 5a: the cost of every (channel_name, event_date), staged for the report.

``cost`` in ``channel_reporting`` is the sum of the costs of *all* sessions of a channel and
day, so this is the one step that reads every row of ``session_sources``: for each session it
looks its cost up in ``session_costs`` by ``session_id``. It reads only the input tables, so
the pipeline runs it while journeys are built and attributed.

PostgreSQL plans it as one hash join (in parallel workers when it sees fit). SQLite has no
hash join: each session is a B-tree search in the cost index, and those searches in random
key order were the slowest part of a run (14 s of page-cache misses at 4.5 M sessions). So on
SQLite the scan is cut into ``session_id`` key ranges. One pass reads, for every (channel,
day) group, only the sessions of its key range (an index range in
``gf_ix_session_sources_channel_day``), so all its cost lookups land in one narrow slice of
``gf_ix_session_costs_cost`` that stays in the CPU and page caches; the groups are found with
index seeks, never a scan or a sort. Passes run on a few threads, each on its own read-only
connection. Costs are summed exactly, as integer millionths, so the result does not depend on
how the scan is cut or in which order passes finish.

Keyless tables (where duplicate ids must be excluded, which needs a full scan anyway) use the
single-statement plan on SQLite too.

Cost rows whose ``session_id`` is in no session cannot be reported; they are counted (the
cost rows minus those the scan matched) and reported with example ids, never dropped
silently.

An incremental report (:class:`Window`) aggregates only the sessions of its (channel, day)
groups, in one pass (its lookups are few); with exact sums each group's cost is bit for bit
the one a full scan gives. Orphaned cost rows and sessions without a channel are counted by
full scans only.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import queue
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache

import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.quality import EXAMPLES, SkippedRows, examples
from growthflow.attribution.rules import InputRules
from growthflow.database import bulk_insert, read_only
from growthflow.sql import number

# Sessions per key range: small enough that a range's slice of the cost index stays cached,
# large enough that the per-pass index seeks (two per group) cost little.
SESSIONS_PER_RANGE = 32_768
# Keep at least this many sessions per (range, group), so the seeks stay a small overhead
# when there are many groups (a year of days times many channels).
MIN_SESSIONS_PER_SEEK = 25
MAX_WORKERS = 4

_SESSIONS = "session_sources s INDEXED BY gf_ix_session_sources_channel_day"
_COSTS = "session_costs k INDEXED BY gf_ix_session_costs_cost"

# Every (channel_name, event_date) group with a non-NULL channel, found by index seeks: the
# next channel after the previous one, then the next day within each channel; plus a
# (channel, NULL) group per channel for sessions without a date.
_GROUPS = """
WITH RECURSIVE
channels(c) AS (
    SELECT min(x.channel_name) FROM session_sources x
           INDEXED BY gf_ix_session_sources_channel_day
    UNION ALL
    SELECT (SELECT min(x.channel_name) FROM session_sources x
            INDEXED BY gf_ix_session_sources_channel_day WHERE x.channel_name > channels.c)
    FROM channels WHERE channels.c IS NOT NULL
),
days(c, d) AS (
    SELECT c, (SELECT min(x.event_date) FROM session_sources x
               INDEXED BY gf_ix_session_sources_channel_day WHERE x.channel_name = channels.c)
    FROM channels WHERE c IS NOT NULL
    UNION ALL
    SELECT c, (SELECT min(x.event_date) FROM session_sources x
               INDEXED BY gf_ix_session_sources_channel_day
               WHERE x.channel_name = days.c AND x.event_date > days.d)
    FROM days WHERE d IS NOT NULL
),
groups(c, d) AS (
    SELECT c, d FROM days WHERE d IS NOT NULL
    UNION ALL
    SELECT c, NULL FROM channels WHERE c IS NOT NULL
)
"""

# Which sessions a pass covers. The ranges partition every non-NULL session_id; NULL ids
# (possible in a user's table without NOT NULL) get a pass of their own.
_KEY_FILTERS = {
    "all": "s.session_id IS NOT NULL",
    "first": "s.session_id < :hi",
    "middle": "s.session_id >= :lo AND s.session_id < :hi",
    "last": "s.session_id >= :lo",
    "null": "s.session_id IS NULL",
}

Group = tuple[object, object]
BAD_COST = "cost negative or not a number"  # the reason of quality.check_costs


@dataclass(frozen=True)
class Window:
    """The (channel, event_date) groups an incremental report refreshes, staged in
    ``gf_report_window`` under ``run_id`` (:func:`growthflow.attribution.report.stage_window`)."""

    run_id: str
    groups: int = 0
    days: int = 0
    cost_groups: int = 0  # the groups whose costs are computed again

    def params(self) -> dict:
        return {"window": self.run_id}

    @staticmethod
    def sessions(dialect: str) -> str:
        """FROM clause: the window's groups ``w`` and their sessions ``s`` (index seeks on the
        channel-day index, group by group)."""
        # SQLite: CROSS JOIN fixes the join order (groups first), INDEXED BY the index
        sqlite = dialect == "sqlite"
        indexed = " INDEXED BY gf_ix_session_sources_channel_day" if sqlite else ""
        return (
            f"gf_report_window w {'CROSS JOIN' if sqlite else 'JOIN'} session_sources s{indexed} "
            "ON w.run_id = :window AND w.costs = 1 AND s.channel_name = w.channel_name "
            "AND s.event_date = w.event_date"
        )


_CHANNELS = """
WITH RECURSIVE channels(c) AS (
    SELECT min(x.channel_name) FROM session_sources x{indexed}
    UNION ALL
    SELECT (SELECT min(x.channel_name) FROM session_sources x{indexed}
            WHERE x.channel_name > channels.c)
    FROM channels WHERE channels.c IS NOT NULL
)
SELECT c FROM channels WHERE c IS NOT NULL
"""


def channels_of(conn: sa.Connection) -> tuple[str, ...]:
    """Every channel name of session_sources, found by index seeks (one per channel)."""
    indexed = (
        " INDEXED BY gf_ix_session_sources_channel_day" if conn.dialect.name == "sqlite" else ""
    )
    return tuple(conn.execute(sa.text(_CHANNELS.format(indexed=indexed))).scalars())


MICROS = 1_000_000  # costs are summed exactly, in integer millionths


def _usable_cost(
    cost: str = number("k.cost", "sqlite"), also: str = "", dialect: str = "sqlite"
) -> str:
    """A session's cost in integer millionths (rounded half up, in double arithmetic on both
    databases, so both give the same integers). Money is summed exactly: integer sums do not
    depend on the order of the rows or on how the scan is cut into passes."""
    # Costs that are negative or not finite numbers count as 0 (quality.check_costs counts
    # them as bad rows); `cost` reads k.cost as a number (numbers written as text too).
    # SQLite's max() is NULL when its argument is; GREATEST ignores a NULL, 0 instead.
    if dialect == "sqlite":  # CAST truncates: the floor of a value >= 0
        usable = f"CAST(max({cost}, 0) * {MICROS} + 0.5 AS INTEGER)"
    else:
        usable = f"CAST(floor(GREATEST({cost}, 0) * {MICROS} + 0.5) AS bigint)"
    if not also:
        return usable
    return f"CASE WHEN {also} THEN {usable} END"


@cache
def _single_statement(rules: InputRules, window: bool = False) -> sa.TextClause:
    """The whole aggregation as one statement (PostgreSQL, and SQLite with keyless tables);
    with ``window``, of the sessions of the :class:`Window` bound as a parameter. The last
    column counts the cost rows that are negative or not numbers."""
    sqlite = rules.dialect == "sqlite"
    also, sessions, duplicates = "", "COUNT(*)", "0"
    if rules.sessions_dedupe:  # a keyless table: rows sharing a session_id are not reported
        unique = dict(rules.sessions("s").rules)["duplicate session_id"]
        also = unique
        sessions = f"SUM(CASE WHEN {unique} THEN 1 ELSE 0 END)"
        duplicates = f"SUM(CASE WHEN {unique} THEN 0 ELSE 1 END)"
    cost_join = "k.session_id = s.session_id"
    if rules.costs_dedupe:  # a keyless cost table: duplicated session_ids count as 0
        cost_join += " AND " + dict(rules.costs("k").rules)["duplicate session_id"]
    cost = _usable_cost(rules.number("session_costs", "k", "cost"), also, rules.dialect)
    if sqlite:  # an integer below 2**53 converts exactly; the division rounds once
        cost_sum = f"COALESCE(SUM({cost}), 0) / {MICROS}.0"
    else:  # SUM(bigint) is numeric; dividing by a power of ten is exact
        cost_sum = f"CAST(COALESCE(SUM({cost}), 0) / {MICROS}.0 AS double precision)"
    source = _SESSIONS if sqlite else "session_sources s"
    if window:
        source = Window.sessions(rules.dialect)
    costs = _COSTS if sqlite else "session_costs k"
    bad = f"SUM(CASE WHEN {_bad_cost(rules)} THEN 1 ELSE 0 END)"
    return sa.text(
        f"""
        SELECT s.channel_name, s.event_date, {cost_sum}, {sessions}, {duplicates},
               COUNT(k.session_id), {bad}
        FROM {source} LEFT JOIN {costs} ON {cost_join}
        GROUP BY s.channel_name, s.event_date
        """  # noqa: S608 (constant SQL fragments only)
    )


def _bad_cost(rules: InputRules) -> str:
    """SQL true for a cost row ``k`` whose cost is negative or not a number."""
    return f"NOT COALESCE({dict(rules.costs('k').rules)[BAD_COST]}, false)"


@cache
def _pass_statements(key_filter: str) -> tuple[sa.TextClause, sa.TextClause]:
    """One key-range pass on SQLite, as rows (channel, day, cost, sessions, 0, cost rows
    matched, bad cost rows) per group: one statement sums the costs and counts the matched
    (and the bad) cost rows, one counts the sessions (from the index alone). The groups come
    from the connection's ``temp.gf_cost_groups``, read in rowid order, so SQLite aggregates
    each group as it goes, without sorting."""
    where = f"s.channel_name = g.c AND s.event_date IS g.d AND {_KEY_FILTERS[key_filter]}"
    bad = f"NOT COALESCE((k.cost IS NULL OR {number('k.cost', 'sqlite')} >= 0), false)"
    costs = sa.text(
        f"""
        SELECT g.c, g.d, COALESCE(SUM({_usable_cost()}), 0), 0, 0, COUNT(*),
               SUM(CASE WHEN {bad} THEN 1 ELSE 0 END)
        FROM temp.gf_cost_groups g CROSS JOIN {_SESSIONS}
        JOIN {_COSTS} ON k.session_id = s.session_id
        WHERE {where} GROUP BY g.id
        """  # noqa: S608 (constant SQL fragments only)
    )
    sessions = sa.text(
        f"""
        SELECT g.c, g.d, 0, (SELECT COUNT(*) FROM {_SESSIONS} WHERE {where}), 0, 0, 0
        FROM temp.gf_cost_groups g
        """  # noqa: S608 (constant SQL fragments only)
    )
    return costs, sessions


_CREATE_GROUPS = (
    sa.text("CREATE TEMP TABLE gf_cost_groups (id INTEGER PRIMARY KEY, c, d)"),
    sa.text(f"{_GROUPS} INSERT INTO temp.gf_cost_groups (c, d) SELECT c, d FROM groups"),  # noqa: S608
)
_CREATE_WINDOW_GROUPS = (
    _CREATE_GROUPS[0],
    sa.text(
        "INSERT INTO temp.gf_cost_groups (c, d) SELECT channel_name, event_date "
        "FROM gf_report_window WHERE run_id = :window AND costs = 1 "
        "ORDER BY channel_name, event_date"
    ),
)

# Sessions without a channel are not reported, only counted: one pass, in index order.
_NULL_CHANNEL = sa.text(
    f"""
    SELECT NULL, s.event_date, COALESCE(SUM({_usable_cost()}), 0), COUNT(*), 0,
           COUNT(k.session_id), 0
    FROM {_SESSIONS} LEFT JOIN {_COSTS} ON k.session_id = s.session_id
    WHERE s.channel_name IS NULL GROUP BY s.event_date
    """  # noqa: S608 (constant SQL fragments only)
)

# A cost row whose session_id is in no session can never be reported. With unique ids on
# both sides, the passes count the cost rows they matched, and the rest are those orphans;
# keyless tables are checked with an anti-join (they need full scans anyway).
_COST_ROWS = sa.text("SELECT COUNT(session_id) FROM session_costs")
_ORPHAN = (
    "k.session_id IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM session_sources s WHERE s.session_id = k.session_id)"
)
_ORPHANS = sa.text(f"SELECT COUNT(*) FROM session_costs k WHERE {_ORPHAN}")  # noqa: S608
ORPHAN_REASON = "session_id not in session_sources (cost not reported)"


@dataclass
class CostStats:
    groups: int
    skipped: list[SkippedRows] = field(default_factory=list)


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


class CostScan:
    """The cost aggregation as a queue of read-only passes that any number of threads work
    off with :meth:`work`; :meth:`stage` then writes the combined result.

    The pipeline starts a scan beside the journeys and lets the main thread join in once its
    own steps are done, so no core idles and none is oversubscribed.
    """

    def __init__(
        self,
        engine: sa.Engine,
        rules: InputRules,
        *,
        ranges: int | None = None,
        window: Window | None = None,
    ):
        self.engine = engine
        self.rules = rules
        self.window = window
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._rows: list[tuple] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._key_ranges = rules.dialect == "sqlite" and not (
            rules.sessions_dedupe or rules.costs_dedupe
        )
        scope = window.params() if window else {}
        if self._key_ranges:
            with read_only(engine) as conn:  # a window: ranges for its groups' share
                bounds = _range_bounds(conn, ranges, window.cost_groups if window else None)
            for key_filter, params in _passes(bounds):
                for statement in _pass_statements(key_filter):
                    self._tasks.put(("groups", statement, params))
            if window is None:
                self._tasks.put(("groups", _NULL_CHANNEL, {}))
        else:
            self._tasks.put(("groups", _single_statement(rules, window is not None), scope))
        if window is not None:
            pass  # orphaned cost rows are found by full scans only
        elif rules.sessions_dedupe or rules.costs_dedupe:
            self._tasks.put(("orphans", _ORPHANS, {}))
        else:
            self._tasks.put(("cost_rows", _COST_ROWS, {}))

    @property
    def passes(self) -> int:
        """Statements not started yet (all of them before any thread works)."""
        return self._tasks.qsize()

    def work(self) -> None:
        """Run passes until none are left, in one read transaction on one connection."""
        with read_only(self.engine) as conn:
            if self._key_ranges:  # a temp table, gone with the transaction's rollback
                if self.window is None:
                    for statement in _CREATE_GROUPS:
                        conn.execute(statement)
                else:
                    for statement in _CREATE_WINDOW_GROUPS:
                        conn.execute(statement, self.window.params())
            while True:
                try:
                    kind, statement, params = self._tasks.get_nowait()
                except queue.Empty:
                    return
                if kind == "groups":
                    rows = [tuple(r) for r in conn.execute(statement, params)]
                    with self._lock:
                        self._rows += rows
                else:
                    self._counts[kind] = int(conn.execute(statement, params).scalar_one())

    def cancel(self) -> None:
        """Drop the passes not started yet (threads finish the one they are running)."""
        while True:
            try:
                self._tasks.get_nowait()
            except queue.Empty:
                return

    def groups(self) -> list[tuple]:
        """(channel, day, cost, sessions, duplicates) per group, once every pass has run.

        Partial costs are integer millionths (or, from one statement, the final figure), so
        the result does not depend on which thread ran which pass when.
        """
        costs: dict[Group, list] = defaultdict(list)
        counts: dict[Group, list[int]] = defaultdict(lambda: [0, 0])
        for channel, day, cost, sessions, duplicates, _matched, _bad in self._rows:
            costs[channel, day].append(cost)
            counts[channel, day][0] += sessions
            counts[channel, day][1] += duplicates
        return [
            (c, d, _total(costs[c, d]), n, dup) for (c, d), (n, dup) in counts.items() if n or dup
        ]

    def orphans(self) -> int:
        """Cost rows whose session_id is in no session, once every pass has run."""
        if self.window is not None:
            return 0  # not looked for
        if "orphans" in self._counts:
            return self._counts["orphans"]
        return self._counts.get("cost_rows", 0) - sum(int(row[5]) for row in self._rows)

    def bad_costs(self) -> list[SkippedRows]:
        """The cost rows of a window's sessions whose cost is negative or not a number (a
        full scan leaves their count to ``quality.check_costs``)."""
        count = sum(int(row[6] or 0) for row in self._rows)
        if self.window is None or self.rules.costs_dedupe or not count:
            return []  # keyless cost tables: quality.check_costs reads the window
        with read_only(self.engine) as conn:
            ids = (
                conn.execute(
                    sa.text(
                        f"SELECT k.session_id FROM {Window.sessions(self.rules.dialect)} "  # noqa: S608
                        f"JOIN session_costs k ON k.session_id = s.session_id "
                        f"WHERE {_bad_cost(self.rules)} LIMIT {EXAMPLES}"
                    ),
                    self.window.params(),
                )
                .scalars()
                .all()
            )
        return [SkippedRows("session_costs", BAD_COST, count, [str(i) for i in ids])]

    def stage(self, run_id: str) -> CostStats:
        """Replace the run's ``gf_cost_days`` rows in one short transaction (the scan itself
        never holds SQLite's write lock); report orphaned cost rows (a full scan) or bad cost
        rows (a window)."""
        groups = self.groups()
        g = schema.cost_days
        with self.engine.begin() as conn:
            conn.execute(sa.delete(g).where(g.c.run_id == run_id))
            bulk_insert(conn, g, ((run_id, *row) for row in groups))
        skipped = self.bad_costs()
        orphans = self.orphans()
        if orphans:
            with read_only(self.engine) as conn:
                ids = examples(conn, "session_costs", "k", "session_id", _ORPHAN)
            skipped.append(SkippedRows("session_costs", ORPHAN_REASON, orphans, ids))
        return CostStats(len(groups), skipped)


def _total(parts: list) -> float:
    """A group's cost from its parts: integer millionths summed exactly and divided once
    (correctly rounded), or the one figure a single statement gave."""
    if len(parts) == 1 and isinstance(parts[0], float):
        return parts[0]
    return sum(int(p) for p in parts) / MICROS


def aggregate_costs(
    engine: sa.Engine,
    run_id: str,
    rules: InputRules,
    *,
    ranges: int | None = None,
    workers: int | None = None,
    window: Window | None = None,
) -> CostStats:
    """Stage the run's costs per (channel_name, event_date) in ``gf_cost_days`` using
    ``workers`` threads (default: one per core, at most :data:`MAX_WORKERS`); returns the
    number of groups and the orphaned cost rows. ``ranges`` overrides the number of SQLite
    key ranges; ``window`` restricts the scan to its groups."""
    scan = CostScan(engine, rules, ranges=ranges, window=window)
    threads = max(1, min(workers or default_workers(), scan.passes))
    with ThreadPoolExecutor(threads, "gf-costs") as pool:
        for future in [pool.submit(scan.work) for _ in range(threads)]:
            future.result()
    return scan.stage(run_id)


def _passes(bounds: Sequence[str]) -> list[tuple[str, dict]]:
    """(key filter, parameters) of every pass: the ranges between ``bounds``, then NULL ids."""
    if not bounds:
        passes = [("all", {})]
    else:
        passes = [("first", {"hi": bounds[0]})]
        passes += [("middle", {"lo": lo, "hi": hi}) for lo, hi in itertools.pairwise(bounds)]
        passes.append(("last", {"lo": bounds[-1]}))
    return [*passes, ("null", {})]


def _range_bounds(
    conn: sa.Connection, ranges: int | None, window_groups: int | None = None
) -> list[str]:
    """Increasing session_id split points for about ``ranges`` ranges of equal session count.

    They are quantiles of a sample of sessions taken at evenly spaced rowids (an index seek
    each), so they are deterministic for the same table. Default: one range per
    :data:`SESSIONS_PER_RANGE` sessions of the table, fewer when there are many groups (a window
    of ``window_groups`` groups scans about that share of the sessions).
    """
    try:
        rows = conn.execute(sa.text("SELECT max(rowid) FROM session_sources")).scalar() or 0
    except sa.exc.OperationalError:  # a WITHOUT ROWID table: no sampling, one range
        return []
    if ranges is None:
        n_groups = len(conn.execute(sa.text(f"{_GROUPS} SELECT 1 FROM groups")).all())  # noqa: S608
        scanned = rows
        if window_groups is not None:
            scanned = rows * min(window_groups, n_groups) // max(n_groups, 1)
            n_groups = window_groups
        # slices of the cost index as small as a full scan's (they stay cached), as long as
        # every (range, group) seek still finds a few sessions
        ranges = min(
            math.ceil(rows / SESSIONS_PER_RANGE),
            scanned // (MIN_SESSIONS_PER_SEEK * max(n_groups, 1)),
        )
    if ranges <= 1:
        return []
    sample_size = min(rows, 16 * ranges)
    rowids = [1 + i * rows // sample_size for i in range(sample_size)]
    sample = (
        conn.execute(
            sa.text(
                "SELECT session_id FROM session_sources "
                "WHERE rowid IN (SELECT value FROM json_each(:rowids)) "
                "AND session_id IS NOT NULL ORDER BY session_id"
            ),
            {"rowids": json.dumps(rowids)},
        )
        .scalars()
        .all()
    )
    bounds: list[str] = []
    for i in range(1, ranges):
        candidate = sample[i * len(sample) // ranges] if sample else None
        if candidate is not None and (not bounds or candidate != bounds[-1]):  # sorted
            bounds.append(candidate)
    return bounds
