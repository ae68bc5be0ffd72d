"""Time `growthflow commissions run` on demo landing zones of several shapes.

    python benchmarks/bench_commissions.py [--days 30] [--rows-per-file 200000]
                                           [--shapes wide narrow sorted]
                                           [--postgres postgresql+psycopg://postgres@127.0.0.1/db]

Shapes (the same feeds and traps, different data):
- ``wide``: rows/20 marketing sources x 40 operators, rows in random order: nearly every
  row is its own (day, source, operator), so gold works as hard as silver;
- ``narrow``: 300 sources: a few thousand groups a day;
- ``sorted``: ``wide``, with every daily file sorted by marketing source (an export's order).

For each shape, in one process run after another: the floor (reading and parsing every
landing file once with pyarrow, in this process), the first run over the whole landing zone
(a fresh process, measured by a wrapper so its peak memory is its own), a rerun with nothing
new, and one corrected routy day (the same file minus its last 1,000 rows). Landing zones are
generated once into benchmarks/.data/ and copied (hard links) for each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import _measure  # noqa: E402 (the benchmarks folder is on sys.path)
import pyarrow.csv as pacsv
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
BIN = [sys.executable, "-m", "growthflow"]
SHAPES = ("wide", "narrow", "sorted")
START = date(2024, 3, 1)


def ensure_landing(shape: str, days: int, rows: int) -> Path:
    """A pristine demo landing zone of that shape (generated once)."""
    from growthflow.commissions.demo import write_demo_landing

    path = DATA / f"commissions_{shape}_{days}d_{rows}"
    done = path / ".complete"
    if done.exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    print(f"generating the {shape} landing zone ({days} days x {rows:,} rows) ...", flush=True)
    write_demo_landing(
        path, days=days, rows_per_file=rows, start=START, sources=300 if shape == "narrow" else None
    )
    if shape == "sorted":
        for file in sorted((path / "routy").glob("*.csv")):
            header, *lines = file.read_text().splitlines()
            lines.sort(key=lambda line: line.split(",")[1])
            file.write_text("\n".join([header, *lines]) + "\n")
    old = time.time() - 3600  # settled: nothing is "still being written"
    for file in path.rglob("*.csv"):
        os.utime(file, (old, old))
    done.touch()
    return path


def count_rows(landing: Path) -> int:
    return sum(max(0, sum(1 for _ in file.open("rb")) - 1) for file in landing.rglob("*.csv"))


def floor_seconds(landing: Path) -> float:
    """Read and parse every landing file once, every column as text."""
    t0 = time.perf_counter()
    for file in sorted(landing.rglob("*.csv")):
        names = file.open().readline().strip().split(",")
        pacsv.read_csv(
            file,
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, "string")),
        )
    return time.perf_counter() - t0


def measured(args: list[str]) -> dict:
    result = _measure.measured([*BIN, *args])
    steps = {}
    for line in result["stdout"].splitlines():
        if line.startswith("time: "):
            for part in line[6:].split(", "):
                name, value, _unit = part.rsplit(" ", 2)
                steps[name] = float(value)
    result["steps"] = steps
    return result


def corrected_day(pristine: Path, landing: Path, days: int) -> str:
    """Put a corrected routy file for the middle day into the landing zone."""
    day = (START + timedelta(days=days // 2)).isoformat()
    header, *lines = (pristine / "routy" / f"{day}.csv").read_text().splitlines()
    target = landing / "routy" / f"{day}.csv"
    target.write_text("\n".join([header, *lines[:-1000]]) + "\n")
    old = time.time() - 3600
    os.utime(target, (old, old))
    return day


def bench_shape(shape: str, days: int, rows: int, postgres: str | None) -> dict:
    pristine = ensure_landing(shape, days, rows)
    work = DATA / "commissions_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(pristine, work / "landing", copy_function=os.link)
    if postgres:
        schema = f"bench_commissions_{uuid.uuid4().hex[:8]}"
        target = ["--db", postgres, "--schema", schema]
    else:
        schema = None
        target = ["--db", f"sqlite:///{work / 'commissions.db'}"]
    landing, archive = work / "landing", work / "archive"
    run = ["commissions", "run", *target, "--landing", str(landing), "--archive", str(archive)]
    total_rows = count_rows(pristine)
    try:
        floor = floor_seconds(pristine)
        first = measured(run)
        noop = measured(run)
        day = corrected_day(pristine, landing, days)
        fix = measured(run)
    finally:
        if postgres and schema:
            engine = sa.create_engine(postgres)
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "shape": shape,
        "rows": total_rows,
        "floor_s": floor,
        "first_s": first["wall_s"],
        "rows_per_s": total_rows / first["wall_s"],
        "x_floor": first["wall_s"] / floor,
        "peak_mib": first["peak_mib"],
        "first_steps": first["steps"],
        "noop_s": noop["wall_s"],
        "noop_steps": noop["steps"],
        "corrected_day": day,
        "corrected_s": fix["wall_s"],
        "corrected_steps": fix["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-file", type=int, default=200_000)
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--postgres", help="a PostgreSQL URL (a throwaway schema is used)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.days} days x {args.rows_per_file:,} routy rows")
    for shape in args.shapes:
        r = bench_shape(shape, args.days, args.rows_per_file, args.postgres)
        steps = lambda s: ", ".join(f"{k} {v:.2f}" for k, v in s.items())  # noqa: E731
        print(
            f"{r['shape']:>7}: {r['rows']:,} rows; floor (read every file once) "
            f"{r['floor_s']:.2f} s\n"
            f"         first run {r['first_s']:.1f} s = {r['rows_per_s']:,.0f} rows/s "
            f"= {r['x_floor']:.0f}x the floor; peak {r['peak_mib']:.0f} MiB "
            f"(steps: {steps(r['first_steps'])})\n"
            f"         rerun with nothing new {r['noop_s']:.2f} s "
            f"(in the run: {sum(r['noop_steps'].values()):.2f} s; the rest is start-up)\n"
            f"         corrected routy {r['corrected_day']}: {r['corrected_s']:.2f} s "
            f"(steps: {steps(r['corrected_steps'])})",
            flush=True,
        )


if __name__ == "__main__":
    main()
