"""Attribution run time against the read floor, on several data shapes (issue 11).

    python benchmarks/bench_attribution_shapes.py [--scale 1] [--shapes demo user-order dense]
                                                  [--postgres postgresql+psycopg://...]

Shapes (never tuned to one generator):
- ``demo``: `growthflow attribution demo-data` (rows in session id order, 64-hex ids, costs for
  paid sessions and some free ones);
- ``user-order``: the same sessions inserted in user order (an analytics export's order), with
  random 64-hex ids and a cost row for ~95% of sessions;
- ``dense``: 10 conversions per 100 sessions over 14 days.

For each shape: the *read floor* (every column of the three input tables read once, in this
process, with the same driver as growthflow), the first run on a database holding only the
input tables (growthflow creates its indexes), a warm run (the same command again: nothing
changed, so the stored attribution is kept) and a forced run (the same with ``--force``: every
journey recomputed and rewritten), each a fresh `growthflow attribution run` over the whole
range, as wall time and as a multiple of the floor. Pristine databases are built once into
benchmarks/.data/shapes/.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import time
import uuid
from pathlib import Path

import _measure  # noqa: E402 (the benchmarks folder is on sys.path)
import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data" / "shapes"
BIN = [sys.executable, "-m", "growthflow"]
TABLES = ("session_sources", "conversions", "session_costs")
DDL = (
    "CREATE TABLE session_sources (session_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, "
    "event_date TEXT NOT NULL, event_time TEXT NOT NULL, channel_name TEXT NOT NULL, "
    "holder_engagement INTEGER NOT NULL, closer_engagement INTEGER NOT NULL, "
    "impression_interaction INTEGER NOT NULL)",
    "CREATE TABLE conversions (conv_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, "
    "conv_date TEXT NOT NULL, conv_time TEXT NOT NULL, revenue REAL NOT NULL)",
    "CREATE TABLE session_costs (session_id TEXT PRIMARY KEY, cost REAL)",
)


def _write(path: Path, sessions, conversions, costs) -> None:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    for ddl in DDL:
        conn.execute(ddl)
    conn.executemany("INSERT INTO session_sources VALUES (?,?,?,?,?,?,?,?)", sessions)
    conn.executemany("INSERT INTO conversions VALUES (?,?,?,?,?)", conversions)
    conn.executemany("INSERT INTO session_costs VALUES (?,?)", costs)
    conn.commit()
    conn.close()


def _hex(rng: np.random.Generator, n: int) -> list[str]:
    return np.frombuffer(rng.bytes(32 * n).hex().encode(), dtype="S64").astype("U64").tolist()


def build(shape: str, scale: float) -> Path:
    """The pristine database of a shape (input tables only), built once."""
    path = DATA / f"{shape}_scale{scale:g}.db"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    print(f"building the {shape} shape at scale {scale:g} ...", flush=True)
    rng = np.random.default_rng(11)
    if shape in ("demo", "user-order"):
        from growthflow.attribution.demo import generate_demo_data
        from growthflow.database import create_engine

        source = DATA / f"generated_scale{scale:g}.db"
        if not source.exists():
            generate_demo_data(create_engine(f"sqlite:///{source}", create=True), scale=scale)
        conn = sqlite3.connect(source)
        sessions = conn.execute("SELECT * FROM session_sources ORDER BY rowid").fetchall()
        conversions = conn.execute("SELECT * FROM conversions ORDER BY rowid").fetchall()
        costs = conn.execute("SELECT * FROM session_costs ORDER BY rowid").fetchall()
        conn.close()
        if shape == "user-order":
            sessions.sort(key=lambda r: (r[1], r[2], r[3]))
            ids = _hex(rng, len(sessions))  # fresh random ids, in user order
            sessions = [(i, *r[1:]) for i, r in zip(ids, sessions, strict=True)]
            keep = rng.random(len(sessions)) < 0.95
            values = np.round(rng.lognormal(-1.0, 0.8, len(sessions)), 4).tolist()
            costs = [(s[0], v) for s, v, k in zip(sessions, values, keep, strict=True) if k]
        _write(path, sessions, conversions, costs)
        return path
    # dense: 10 conversions per 100 sessions over 14 days
    n = round(450_000 * scale)
    users = max(1, n // 5)
    user = rng.integers(0, users, n)
    t0 = int(np.datetime64("2023-09-01T00:00:00", "s").astype(np.int64))
    ts = np.sort(rng.integers(t0, t0 + 14 * 86_400, n))
    text = np.datetime_as_string(ts.astype("datetime64[s]"), unit="s").astype("U19")
    user_ids = np.array(_hex(rng, users), dtype=object)
    channels = np.array([f"Channel {i:02d}" for i in range(12)], dtype=object)
    sessions = list(
        zip(
            _hex(rng, n),
            user_ids[user].tolist(),
            [t[:10] for t in text],
            [t[11:] for t in text],
            channels[rng.integers(0, 12, n)].tolist(),
            (rng.random(n) < 0.85).astype(int).tolist(),
            (rng.random(n) < 0.7).astype(int).tolist(),
            (rng.random(n) < 0.05).astype(int).tolist(),
            strict=True,
        )
    )
    converting = np.flatnonzero(rng.random(n) < 0.10)
    conv_ts = np.minimum(
        ts[converting] + rng.integers(60, 3_600, len(converting)), t0 + 14 * 86_400 - 1
    )
    conv_text = np.datetime_as_string(conv_ts.astype("datetime64[s]"), unit="s").astype("U19")
    conversions = list(
        zip(
            _hex(rng, len(converting)),
            user_ids[user[converting]].tolist(),
            [t[:10] for t in conv_text],
            [t[11:] for t in conv_text],
            np.round(rng.lognormal(4, 0.6, len(converting)), 2).tolist(),
            strict=True,
        )
    )
    keep = rng.random(n) < 0.8
    costs = [
        (s[0], c)
        for s, c, k in zip(
            sessions, np.round(rng.lognormal(-1, 0.7, n), 4).tolist(), keep, strict=True
        )
        if k
    ]
    _write(path, sessions, conversions, costs)
    return path


def date_range(path: Path) -> tuple[str, str]:
    conn = sqlite3.connect(path)
    lo, hi = conn.execute("SELECT min(conv_date), max(conv_date) FROM conversions").fetchone()
    conn.close()
    return lo, hi


def to_postgres(path: Path, url: str) -> tuple[list[str], object]:
    """Copy the pristine tables into a throwaway schema; the --db/--schema args and a reader."""
    import sqlalchemy as sa

    from growthflow.attribution import schema as tables
    from growthflow.database import bulk_insert, create_engine

    name = f"bench_shape_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, schema=name, create=True)
    source = sqlite3.connect(path)
    with engine.begin() as conn:
        for table in tables.INPUT_TABLES:
            conn.execute(sa.schema.CreateTable(table))
            bulk_insert(conn, table, source.execute(f"SELECT * FROM {table.name}"))  # noqa: S608
    source.close()
    return ["--db", url, "--schema", name], engine


def floor_seconds(path: Path, engine=None) -> float:
    """Every column of the three input tables read once, with growthflow's driver."""
    t0 = time.perf_counter()
    if engine is None:
        conn = sqlite3.connect(path)
        for table in TABLES:
            cur = conn.execute(f"SELECT * FROM {table}")  # noqa: S608 (constant names)
            while cur.fetchmany(50_000):
                pass
        conn.close()
    else:
        import sqlalchemy as sa

        with engine.connect() as conn:
            for table in TABLES:
                result = conn.execution_options(stream_results=True, max_row_buffer=50_000)
                rows = result.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608
                for _ in rows.partitions(50_000):
                    pass
    return time.perf_counter() - t0


def run_seconds(target: list[str], start: str, end: str) -> dict:
    return _measure.measured([*BIN, "attribution", "run", *target, "--start", start, "--end", end])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["demo", "user-order", "dense"],
        choices=["demo", "user-order", "dense"],
    )
    parser.add_argument("--postgres", help="run on this PostgreSQL database (throwaway schemas)")
    args = parser.parse_args()
    lines = []
    for shape in args.shapes:
        pristine = build(shape, args.scale)
        start, end = date_range(pristine)
        engine = None
        if args.postgres:
            target, engine = to_postgres(pristine, args.postgres)
        else:
            work = DATA / "work.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{work}{suffix}").unlink(missing_ok=True)
            shutil.copy(pristine, work)
            target = ["--db", f"sqlite:///{work}"]
        try:
            floor = floor_seconds(pristine, engine)
            first = run_seconds(target, start, end)["wall_s"]
            warm = run_seconds(target, start, end)["wall_s"]
            forced = run_seconds([*target, "--force"], start, end)["wall_s"]
            floor_after = floor_seconds(pristine, engine)  # the machine's speed drifts
        finally:
            if engine is not None:
                import sqlalchemy as sa

                with engine.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{target[3]}" CASCADE'))
                engine.dispose()
        conn = sqlite3.connect(pristine)
        sessions, conversions = (
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in ("session_sources", "conversions")
        )
        conn.close()
        fl = min(floor, floor_after)
        lines.append(
            f"{shape:<11} {sessions:>10,} {conversions:>8,} {fl:>8.2f} {first:>8.2f} "
            f"{first / fl:>7.1f} {warm:>8.2f} {warm / fl:>7.1f} {forced:>8.2f} {forced / fl:>7.1f}"
        )
        print(lines[-1], flush=True)
    print()
    print("database:", "PostgreSQL" if args.postgres else "SQLite", f"scale {args.scale:g}")
    print(
        f"{'shape':<11} {'sessions':>10} {'convs':>8} {'floor s':>8} {'first s':>8} "
        f"{'x floor':>7} {'warm s':>8} {'x floor':>7} {'forced s':>8} {'x floor':>7}"
    )
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
