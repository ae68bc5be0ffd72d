"""A synthetic landing zone with every default feed, for benchmarks and trials.

The files carry the traps of real feeds: three date spellings (and a few empty dates),
operator names in several spellings, a few unparsable or negative numbers and missing
sources, brands missing from the mapper, marketing sources without a deal, running totals
that repeat within a day or restart. Rows come in random order. Same seed, same bytes.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

OPERATORS = 40  # standard operators; names appear in up to three spellings


def _write(path: Path, columns: dict[str, np.ndarray]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {k: pa.array(v.astype(str) if v.dtype.kind != "U" else v) for k, v in columns.items()}
    )
    with path.open("wb") as handle:
        handle.write((",".join(columns) + "\n").encode())
        pacsv.write_csv(
            table, handle, pacsv.WriteOptions(include_header=False, quoting_style="none")
        )
    return table.num_rows


def _dates(rng, day: date, n: int) -> np.ndarray:
    seconds = rng.integers(0, 86_400, n)
    clock = np.char.add(
        np.char.add(np.char.zfill((seconds // 3600).astype(str), 2), ":"),
        np.char.add(
            np.char.add(np.char.zfill((seconds // 60 % 60).astype(str), 2), ":"),
            (seconds % 60).astype(str),
        ),
    )
    dash, slash = day.isoformat(), day.isoformat().replace("-", "/")
    stamp = np.where(rng.random(n) < 0.7, dash, slash)
    out = np.char.add(np.char.add(stamp, " "), clock)
    out[rng.random(n) < 0.001] = ""  # empty: the day comes from the file name
    return out


def _money(rng, n: int, scale: float) -> np.ndarray:
    cents = np.round(rng.gamma(1.5, scale, n) * 100).astype(np.int64)
    text = np.char.add(
        np.char.add((cents // 100).astype(str), "."), np.char.zfill((cents % 100).astype(str), 2)
    )
    bad = rng.random(n)
    text[bad < 0.0005] = "n/a"  # unparsable: quarantined
    return text


def write_demo_landing(
    landing: Path,
    *,
    days: int = 30,
    rows_per_file: int = 200_000,
    start: date = date(2024, 3, 1),
    seed: int = 7,
    sources: int | None = None,
) -> int:
    """Write the snapshots and ``days`` daily files of every feed; returns the rows written."""
    rng = np.random.default_rng(seed)
    landing = Path(landing)
    n_sources = sources or max(10, min(20_000, rows_per_file // 20))
    codes = np.array([f"SRC-{i:05d}" for i in range(n_sources)])
    brands = np.array([f"Voluum brand {i}" for i in range(max(8, n_sources // 10))])
    std = np.array([f"OP{i:02d}" for i in range(OPERATORS)])
    variants = np.array([f"Operator {i}" for i in range(OPERATORS)])
    countries = rng.choice(np.array(["US", "FR", "DE", "GR", "AU"]), OPERATORS)
    spellings = np.concatenate(
        [variants, np.char.upper(variants), np.char.add(np.char.add(variants, "  "), countries)]
    )
    written = 0
    deal_kind = rng.choice(np.array(["PPC", "FIXED 100", "Hybrid 50", "fixed 20"]), n_sources)
    has_deal = rng.random(n_sources) < 0.8
    deal_rows = np.concatenate([codes[has_deal], ["Default"]])
    deal_text = np.concatenate([deal_kind[has_deal], ["FIXED 0"]])
    deal_text[rng.random(deal_text.size) < 0.001] = "CPA 5"  # unknown deal
    written += _write(
        landing / "deals.csv",
        {
            "marketing_source": deal_rows,
            "deal": deal_text,
            "comments": np.full(deal_rows.size, "total commision= raw_earnings"),
        },
    )
    mapped = brands[: int(brands.size * 0.95)]  # the rest is missing from the mapper
    written += _write(
        landing / "voluum_mapper.csv",
        {
            "voluum_brand": mapped,
            "marketing_source": rng.choice(codes, mapped.size),
        },
    )
    written += _write(
        landing / "central_mapping.csv",
        {
            "variants": variants,
            "std_operator": std,
            "country": countries,
        },
    )
    counters = rng.choice(
        n_sources * OPERATORS,
        min(n_sources * OPERATORS, max(10, rows_per_file // 10)),
        replace=False,
    )
    totals = rng.integers(0, 100_000, counters.size).astype(np.int64) * 100
    for offset in range(days):
        day = start + timedelta(days=offset)
        name = f"{day.isoformat()}.csv"
        n = rows_per_file
        src = rng.choice(codes, n).astype(object)
        src[rng.random(n) < 0.0005] = ""  # missing: quarantined
        op = rng.integers(0, OPERATORS, n)
        written += _write(
            landing / "routy" / name,
            {
                "date": _dates(rng, day, n),
                "marketing_source": src.astype(str),
                "operator": spellings[op + OPERATORS * rng.integers(0, 3, n)],
                "country": countries[op],
                "countryCode": np.full(n, "NULL"),
                "raw_earnings": _money(rng, n, 20.0),
                "visits": rng.integers(0, 50, n),
                "signups": rng.integers(0, 5, n),
            },
        )
        if rng.random() < 0.8:  # manual files are optional
            m = max(1, n // 10)
            op = rng.integers(0, OPERATORS, m)
            written += _write(
                landing / "manual" / name,
                {
                    "date": _dates(rng, day, m),
                    "marketing_source": rng.choice(codes, m),
                    "operator": spellings[op],
                    "raw_earnings": _money(rng, m, 50.0),
                    "visits": rng.integers(0, 50, m),
                    "signups": rng.integers(0, 5, m),
                },
            )
        clicks = rng.integers(0, 500, brands.size)
        clicks[rng.random(brands.size) < 0.001] = -1  # negative: quarantined
        written += _write(
            landing / "voluum" / name,
            {
                "date": _dates(rng, day, brands.size),
                "voluum_brand": brands,
                "clicks": clicks,
            },
        )
        totals += rng.integers(0, 5_000, counters.size) * 100
        totals[rng.random(counters.size) < 0.001] = 0  # a counter restarts
        seen = rng.random(counters.size) < 0.95  # some counters skip a day
        idx = np.flatnonzero(seen)
        repeat = idx[rng.random(idx.size) < 0.01]  # an early reading, then the last one
        rows = np.concatenate([repeat, idx])
        early = np.concatenate([np.ones(repeat.size, bool), np.zeros(idx.size, bool)])
        value = np.where(early, totals[rows] // 2, totals[rows])
        written += _write(
            landing / "scrapers" / name,
            {
                "date": _dates(rng, day, rows.size),
                "marketing_source": codes[counters[rows] // OPERATORS],
                "operator": variants[counters[rows] % OPERATORS],
                "country": countries[counters[rows] % OPERATORS],
                "total_earnings": np.char.add((value // 100).astype(str), ".00"),
                "visits": rng.integers(0, 50, rows.size),
            },
        )
    return written
