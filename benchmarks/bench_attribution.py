"""Time `growthflow attribution run` end to end (process start to CSV written) on demo data.

    python benchmarks/bench_attribution.py [--scales 1 10] [--repeat 3] [--model ihc]
                                           [--history-days 10 60 | --history-days]
                                           [--demo-scales 1 10 | --demo-scales]
                                           [--postgres postgresql+psycopg://postgres@127.0.0.1/db]

The history part times a daily run (the last day, after a run over the days before built the
report) on databases of the same daily volume (scale 1) and different lengths of history,
and prints the ratio of the longest to the shortest: a daily run must cost a day's work. The
demo part times `demo-data` itself at each of ``--demo-scales`` (sessions per second).

Demo databases are generated once into benchmarks/.data/ (SQLite) or into the schemas
bench_scale<N> of the given PostgreSQL database, and kept between runs (scale 10 takes a few
minutes to generate). Each timed run is a fresh process, measured by a wrapper process so
the peak memory is that of the run alone. Every timed run passes ``--force``, so each repeat
recomputes and rewrites its journeys (a plain rerun would keep the unchanged ones; the
shapes benchmark times that). Prints wall time, input sessions per second and peak memory per
scale, plus the time per step reported by the run itself.
"""

from __future__ import annotations

import argparse
import math
import re
import sqlite3
import statistics
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import _measure  # noqa: E402 (the benchmarks folder is on sys.path)

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
BIN = [sys.executable, "-m", "growthflow"]


def ensure_demo(scale: float, postgres: str | None = None, days: int = 10) -> list[str]:
    """The --db/--schema arguments of a demo database at ``scale`` over ``days`` days
    (generated if missing)."""
    name = f"scale{scale:g}" + ("" if days == 10 else f"_{days}d")
    if postgres:
        target = ["--db", postgres, "--schema", f"bench_{name}".replace(".", "_")]
    else:
        target = ["--db", f"sqlite:///{DATA / f'demo_{name}.db'}"]
    volume = scale * days / 10
    units = max(1, math.ceil(volume))
    if sessions_in(target) != units * round(450_000 * volume / units):  # missing, or cut short
        DATA.mkdir(exist_ok=True)
        print(f"generating demo data ({name}) into {' '.join(target)} ...", flush=True)
        subprocess.run(
            [*BIN, "attribution", "demo-data", *target, "--scale", str(scale), "--force"]
            + ["--days", str(days)],
            check=True,
        )
    return target


def sessions_in(target: list[str]) -> int:
    """Rows of session_sources (0 when the database or table does not exist yet)."""
    url = target[1]
    schema = target[3] if len(target) > 2 else None
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return 0
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT count(*) FROM session_sources").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            conn.close()
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            table = sa.table("session_sources", schema=schema)
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    except sa.exc.DBAPIError:
        return 0
    finally:
        engine.dispose()


def timed_run(
    target: list[str], model: str, csv: Path, start: str = "2023-09-01", end: str = "2023-09-10"
) -> dict:
    result = _measure.measured(
        [
            *BIN,
            "attribution",
            "run",
            *target,
            "--start",
            start,
            "--end",
            end,
            "--model",
            model,
            "--csv",
            str(csv),
            "--force",  # every repeat recomputes and rewrites its journeys: the same work
        ]
    )
    steps = dict(re.findall(r"time: (\w[\w ()]*?)\s+│\s+([\d.]+) s", result["stdout"]))
    result["steps"] = {k: float(v) for k, v in steps.items()}
    journeys = re.search(r"journeys\s+│\s+([\d,]+)", result["stdout"])
    result["journeys"] = int(journeys.group(1).replace(",", "")) if journeys else 0
    return result


def bench_history(history: list[int], repeat: int, model: str, postgres: str | None) -> None:
    """A daily run on databases with ``history`` days of the same daily volume."""
    first = date(2023, 9, 1)
    medians = {}
    for days in history:
        target = ensure_demo(1.0, postgres, days)
        last = first + timedelta(days=days - 1)
        csv = DATA / f"out_{days}d.csv"
        # the report exists (built over the earlier days): the daily runs refresh it
        timed_run(target, model, csv, first.isoformat(), (last - timedelta(days=1)).isoformat())
        runs = [
            timed_run(target, model, csv, last.isoformat(), last.isoformat()) for _ in range(repeat)
        ]
        medians[days] = statistics.median(r["wall_s"] for r in runs)
        steps = ", ".join(f"{k} {v:.2f}" for k, v in runs[-1]["steps"].items())
        print(
            f"{days:>3} days ({sessions_in(target):,} sessions): daily run {last}, median "
            f"{medians[days]:.2f} s of {repeat} (last: {steps})",
            flush=True,
        )
    if len(medians) > 1:
        short, long = min(medians), max(medians)
        print(f"daily run, {long} / {short} days of history: {medians[long] / medians[short]:.2f}")


def bench_demo_data(scales: list[float], postgres: str | None) -> None:
    """`demo-data` itself (generated and written, a fresh process per scale, into a throwaway
    database or schema): sessions per second."""
    for scale in scales:
        if postgres:
            schema = f"bench_demo_timing_{scale:g}".replace(".", "_")
            target = ["--db", postgres, "--schema", schema]
        else:
            path = DATA / f"demo_timing_{scale:g}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            target = ["--db", f"sqlite:///{path}"]
        DATA.mkdir(exist_ok=True)
        command = [*BIN, "attribution", "demo-data", *target, "--scale", str(scale), "--force"]
        try:
            result = _measure.measured(command)
            sessions = sessions_in(target)
        finally:
            if postgres:
                import sqlalchemy as sa

                engine = sa.create_engine(postgres)
                with engine.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                engine.dispose()
            else:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        print(
            f"demo-data scale {scale:g}: {sessions:,} sessions in {result['wall_s']:.1f} s = "
            f"{sessions / result['wall_s']:,.0f} sessions/s (peak {result['peak_mib']:.0f} MiB)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="*", type=float, default=[1.0, 10.0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="ihc")
    parser.add_argument("--postgres", help="benchmark this PostgreSQL database instead of SQLite")
    parser.add_argument(
        "--history-days", nargs="*", type=int, default=[10, 60], help="none: skip that part"
    )
    parser.add_argument(
        "--demo-scales", nargs="*", type=float, default=[1.0], help="none: skip that part"
    )
    args = parser.parse_args()
    if args.demo_scales:
        bench_demo_data(args.demo_scales, args.postgres)
    rows = []
    for scale in args.scales:
        target = ensure_demo(scale, args.postgres)
        sessions = sessions_in(target)
        csv = DATA / f"out_scale{scale:g}.csv"
        runs = [timed_run(target, args.model, csv) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["wall_s"])
        median = statistics.median(r["wall_s"] for r in runs)
        rows.append((scale, sessions, best, median, max(r["peak_mib"] for r in runs)))
        steps = ", ".join(f"{k} {v:.2f}" for k, v in best["steps"].items())
        print(f"scale {scale:g}: steps of the fastest run (s): {steps}", flush=True)
    print()
    print("database:", "PostgreSQL" if args.postgres else "SQLite")
    print(
        f"{'scale':>5} {'sessions':>10} {'journeys':>9} {'best s':>7} {'median s':>8} "
        f"{'sessions/s':>11} {'peak MiB':>8}"
    )
    for scale, sessions, best, median, peak in rows:
        print(
            f"{scale:>5g} {sessions:>10,} {best['journeys']:>9,} {best['wall_s']:>7.2f} "
            f"{median:>8.2f} {sessions / best['wall_s']:>11,.0f} {peak:>8.0f}"
        )
    if args.history_days:
        print()
        bench_history(args.history_days, args.repeat, args.model, args.postgres)


if __name__ == "__main__":
    main()
