"""The commissions ELT on SQLite and PostgreSQL: the real sample drops with hand-computed
figures, corrections equal to a fresh run, exact money invariants, and the file-level faults."""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from growthflow.commissions.bronze import load_bronze
from growthflow.commissions.config import load_config
from growthflow.commissions.landing import discover
from growthflow.commissions.pipeline import (
    RunLocked,
    compute_combined,
    compute_gold,
    load_feed,
    run_commissions,
    run_lock,
    validate_loaded,
)
from growthflow.commissions.schema import init_db
from growthflow.commissions.validate import parse_day, parse_number
from growthflow.errors import InputDataError

from conftest import SHARED, sqlite_work

SAMPLES = SHARED / "commissions" / "test_case_data"
CONFIG = load_config()
LATER = time.time() + 3600  # "now" for runs: every file has settled
CENT = Decimal("0.01")


def money(value) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(CENT)


def run(db, landing: Path, **kw):
    return run_commissions(db.engine, CONFIG, landing, landing.parent / "archive", now=LATER, **kw)


def drop(source: Path, landing: Path) -> None:
    shutil.copytree(source, landing, dirs_exist_ok=True)
    for path in landing.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def source_daily(db, scope="events") -> dict:
    return {
        (str(d), s): (deal, money(raw), clicks, money(c))
        for d, s, deal, raw, clicks, c in db.rows(
            "SELECT date, marketing_source, deal, raw_earnings, clicks, commission "
            "FROM commission_source_daily WHERE scope = :scope",
            scope=scope,
        )
    }


def gold_snapshot(db) -> dict:
    out = {}
    for table, key in (
        ("commission_source_daily", "scope, date, marketing_source"),
        ("commission_operator_monthly", "scope, month, operator"),
        ("scraper_daily_amounts", "date, marketing_source, operator"),
    ):
        out[table] = [
            tuple(
                money(v) if isinstance(v, float | Decimal) else str(v) if v is not None else None
                for v in row
            )
            for row in db.rows(f"SELECT * FROM {table} ORDER BY {key}")
        ]
    return out


def check_invariants(db) -> None:
    """Both gold tables sum to the same commission per scope and month, to the cent; every
    current file's records are all in silver or quarantine."""
    by_source = defaultdict(Decimal)
    for scope, day, c in db.rows("SELECT scope, date, commission FROM commission_source_daily"):
        by_source[(scope, str(day)[:7])] += money(c)
    by_operator = defaultdict(Decimal)
    for scope, month, c in db.rows(
        "SELECT scope, month, commission FROM commission_operator_monthly"
    ):
        by_operator[(scope, month)] += money(c)
    assert by_source == by_operator
    for name, records, silver, quarantined in db.rows(
        "SELECT name, records, silver_rows, quarantined_rows FROM commission_files "
        "WHERE state = 'current'"
    ):
        assert records == silver + quarantined, name


needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/datasets is absent")


@needs_samples
def test_the_three_sample_drops_give_the_hand_computed_tables(db, tmp_path):
    landing = tmp_path / "landing"
    drop(SAMPLES / "data_1a", landing)
    run(db, landing)
    events = source_daily(db)
    # TOP-SPO1, 26th: routy 0+40+1, manual 0+40+1 = 82; 10 clicks (Voluum br1); PPC: 82 + 100
    assert events[("2024-03-26", "TOP-SPO1")] == ("PPC", Decimal("82.00"), 10, Decimal("182.00"))
    # FIXED 100 on 100 + 100 raw: the 50 clicks are not paid
    assert events[("2024-03-26", "LOW-SPO21")] == (
        "FIXED 100",
        Decimal("200.00"),
        50,
        Decimal("300.00"),
    )
    # clicks but no earnings: a row, Default deal (FIXED 0)
    assert events[("2024-03-26", "GRAUTO")] == (
        "FIXED 0 (Default)",
        Decimal("0.00"),
        4,
        Decimal("0.00"),
    )
    # TOP-SPO1 never matches TOP-SPO11
    assert events[("2024-03-26", "TOP-SPO11")][1] == Decimal("20.00")
    # manual 28th, last row has an empty date: the file's day
    assert events[("2024-03-28", "TOP-WI4")][3] == Decimal("1000.00")
    monthly = {
        (s, o): (money(r), money(c))
        for s, m, o, r, c in db.rows(
            "SELECT scope, month, operator, raw_earnings, commission "
            "FROM commission_operator_monthly"
        )
    }
    assert monthly[("events", "ABC")] == (Decimal("1000.00"), Decimal("1000.00"))  # unmapped
    assert ("events", "DraftkingsLOLUS") in monthly  # "Draftkings US" = variant + country
    assert ("events", "BENJUS") in monthly and ("events", "BEPAUS") in monthly
    warnings = set(db.rows("SELECT kind, feed, subject FROM commission_warnings"))
    assert ("operator not in the mapping", "routy", "ABC") in warnings
    assert ("missing file (optional feed)", "manual", "manual/2024-03-27.csv") in warnings
    check_invariants(db)
    assert not list(landing.rglob("*.csv"))  # everything archived

    drop(SAMPLES / "data_1b", landing)
    summary = run(db, landing)
    assert summary.gold.superseded == 2  # the earlier routy 26th and deals
    events = source_daily(db)
    # corrected routy 26th: 0+1 and 1 for TOP-SPO1 (+ manual 41) = 43; the old rows are gone
    assert events[("2024-03-26", "TOP-SPO1")] == ("PPC", Decimal("43.00"), 10, Decimal("143.00"))
    # new deals: LOW-SPO21 is PPC (its comment says +100: the deal decides), routy row gone
    assert events[("2024-03-26", "LOW-SPO21")] == ("PPC", Decimal("100.00"), 50, Decimal("600.00"))
    assert events[("2024-03-27", "LOW-SPO21")][0] == "PPC"  # deals replace every date
    assert events[("2024-03-26", "GRAUTO")] == ("Hybrid 100", Decimal("0.00"), 4, Decimal("140.00"))
    assert events[("2024-03-26", "TOP-FR11")] == ("FIXED 0", Decimal("1.00"), 0, Decimal("1.00"))
    contradictions = db.rows(
        "SELECT subject FROM commission_warnings WHERE kind LIKE 'deal "
        "contradicts%' ORDER BY subject"
    )
    assert {s.split(":")[0] for (s,) in contradictions} == {
        "LOW-SPO21",
        "TOP-FR",
        "TOP-FR11",
        "TOTO-GR1",
    }
    check_invariants(db)

    drop(SAMPLES / "data_2", landing)
    run(db, landing)
    amounts = {
        (str(d), s, o): (money(t), money(a), rule)
        for d, s, o, t, a, rule in db.rows(
            "SELECT date, marketing_source, operator, total, amount, rule "
            "FROM scraper_daily_amounts"
        )
    }
    assert amounts[("2024-03-25", "TOP-SPO1", "BENJUS")] == (
        Decimal("12000.00"),
        None,
        "baseline",
    )  # last row wins
    assert amounts[("2024-03-26", "TOP-SPO1", "BENJUS")] == (
        Decimal("12100.00"),
        Decimal("100.00"),
        "delta",
    )
    assert amounts[("2024-03-28", "TOP-SPO1", "BENJUS")] == (
        Decimal("14100.00"),
        Decimal("2000.00"),
        "delta over 2 days",
    )
    assert amounts[("2024-03-26", "TOP-SPO11", "BEPAUS")] == (
        Decimal("1000.00"),
        Decimal("1000.00"),
        "reset",
    )
    assert amounts[("2024-03-28", "FRAUTO", "INTER_LOL")][2] == "reset"
    assert amounts[("2024-03-28", "LOW-FR13", "XZYXYZFR")][2] == "baseline"  # empty date: 28th
    assert ("2024-03-27", "TOP-SPO1", "BENJUS") not in amounts  # absent counter: no amount
    combined = source_daily(db, "combined")
    # 44 events + 4000 scraped, 1 click counted once, PPC: 4044 + 10
    assert combined[("2024-03-28", "TOP-SPO1")] == (
        "PPC",
        Decimal("4044.00"),
        1,
        Decimal("4054.00"),
    )
    scrapers = source_daily(db, "scrapers")
    assert scrapers[("2024-03-28", "TOP-FR")] == ("PPC", Decimal("0.00"), 5, Decimal("50.00"))
    assert ("2024-03-25", "TOP-SPO1") not in scrapers  # baselines only, no clicks: no row
    check_invariants(db)
    after_drops = gold_snapshot(db)

    # Nothing new: nothing changes.
    summary = run(db, landing)
    assert summary.gold.days == 0 and gold_snapshot(db) == after_drops

    # A fresh run on the final landing zone gives the same tables.
    fresh = tmp_path / "fresh"
    for name in ("data_1a", "data_1b", "data_2"):
        drop(SAMPLES / name, fresh)
    _reset(db)
    run(db, fresh)
    assert gold_snapshot(db) == after_drops


def _reset(db) -> None:
    from growthflow.commissions.schema import metadata

    with db.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(sa.delete(table))


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


SNAPSHOTS = {
    "deals.csv": "marketing_source,deal,comments\nA,PPC,\nB,FIXED 100,\nC,Hybrid 10.5,\n"
    "D,CPA 3,\nDefault,FIXED 0,\n",
    "voluum_mapper.csv": "voluum_brand,marketing_source\nBrand A,A\nBrand B,b\n",
    "central_mapping.csv": "variants,std_operator,country\nOp One,OP1,US\nOp Two,OP2,FR\n",
}


def synthetic(landing: Path) -> None:
    for name, text in SNAPSHOTS.items():
        write(landing / name, text)


def test_bad_rows_are_quarantined_per_reason_and_hostile_values_are_data(db, tmp_path):
    landing = tmp_path / "landing"
    synthetic(landing)
    write(
        landing / "routy" / "2024-05-01.csv",
        "date,marketing_source,operator,country,countryCode,raw_earnings,visits,signups\n"
        "2024-05-01,a ,op one us,US,NULL,10.5,1,0\n"  # A, OP1 (variant + country)
        "2024-05-01,,Op One,US,NULL,1,1,0\n"  # missing marketing_source
        "2024-05-01,A,Op One,US,NULL,n/a,1,0\n"  # unparsable number
        "2024-05-01,A,Op One,US,NULL,1.00001,1,0\n"  # more than 4 decimals
        "2024-05-01,A,Op One,US,NULL,1\n"  # wrong number of fields
        "2024-05-01,A,Op One,US,NULL,2,1.5,0\n"  # not a whole number
        '2024-04-30,B,"\'; DROP TABLE commission_files; --",FR,NULL,"1,000",0,0\n'
        '2024-05-01,B,"Ünï  cödé",FR,NULL,-5,0,0\n',
    )
    write(
        landing / "voluum" / "2024-05-01.csv",
        "date,voluum_brand,clicks\n2024-05-01,BRAND  a,3\n2024-05-01,Brand B,-1\n"
        "2024-05-01,Brand Z,7\n2024-05-01,brand b,12.0\n",
    )
    summary = run(db, landing)
    reasons = summary.quarantined
    assert reasons == {
        "missing marketing_source": 1,
        "unparsable number in raw_earnings": 2,
        "more than 4 decimals in raw_earnings": 1,
        "wrong number of fields": 1,
        "not a whole number in visits": 1,
        "negative clicks": 1,
        "unknown deal": 1,
    }
    quarantined = db.rows(
        "SELECT feed, line, reason, raw FROM commission_quarantine "
        "WHERE reason = 'wrong number of fields'"
    )
    assert quarantined == [("routy", 6, "wrong number of fields", "2024-05-01,A,Op One,US,NULL,1")]
    assert db.rows("SELECT COUNT(*) FROM commission_files")[0][0] == 5  # nothing dropped
    events = source_daily(db)
    # A: 10.5 raw + 3 clicks (BRAND  a = Brand A) x 10 = 40.50
    assert events[("2024-05-01", "A")] == ("PPC", Decimal("10.50"), 3, Decimal("40.50"))
    # B: -5 raw, 12 clicks (12.0 is 12), FIXED 100: negative raw is kept, not clamped
    assert events[("2024-05-01", "B")] == ("FIXED 100", Decimal("-5.00"), 12, Decimal("95.00"))
    kinds = {k for (k,) in db.rows("SELECT kind FROM commission_warnings")}
    assert "voluum brand not in the mapping: clicks left out" in kinds
    assert "unknown deal: the source falls back to Default" in kinds
    assert "operator not in the mapping" in kinds
    operators = {o for (o,) in db.rows("SELECT operator FROM commission_operator_monthly")}
    assert {"OP1", "Ünï cödé"} <= operators
    check_invariants(db)


def test_whole_files_are_rejected_and_set_aside(db, tmp_path):
    landing = tmp_path / "landing"
    synthetic(landing)
    write(landing / "routy" / "2024-05-01.csv", "")
    write(landing / "routy" / "2024-05-02.csv", b"date,marketing_source\n\xff\xfe,x\n")
    write(landing / "routy" / "yesterday.csv", "date\n")
    write(landing / "voluum" / "2024-05-01.csv", "date,brand,clicks\n2024-05-01,x,1\n")
    write(landing / "stray.txt", "?")
    summary = run(db, landing)
    rejected = {load.item.name: load.reason for load in summary.rejected}
    assert rejected == {
        "routy/2024-05-01.csv": "empty file",
        "routy/2024-05-02.csv": "not UTF-8",
        "routy/yesterday.csv": "name is not a date (YYYY-MM-DD.csv)",
        "voluum/2024-05-01.csv": "wrong column set",
    }
    assert summary.discovery.ignored == ["stray.txt"]
    assert db.rows(
        "SELECT feed, line FROM commission_quarantine WHERE reason = 'wrong column set'"
    ) == [("voluum", 1)]
    aside = sorted(
        p.relative_to(tmp_path / "archive" / "_rejected").as_posix().rsplit(".", 1)[0]
        for p in (tmp_path / "archive" / "_rejected").rglob("*")
        if p.is_file()
    )
    assert aside == [
        "routy/2024-05-01.csv",
        "routy/2024-05-02.csv",
        "routy/yesterday.csv",
        "voluum/2024-05-01.csv",
    ]
    assert not list(landing.rglob("*.csv"))
    again = run(db, landing)  # nothing left: a no-op
    assert again.loads == [] and again.gold.days == 0


def test_a_file_still_being_written_waits(db, tmp_path):
    landing = tmp_path / "landing"
    synthetic(landing)
    summary = run_commissions(db.engine, CONFIG, landing, tmp_path / "archive", now=time.time())
    assert sorted(summary.discovery.waiting) == sorted(SNAPSHOTS) and summary.loads == []


def test_a_crash_between_steps_loses_and_duplicates_nothing(db, tmp_path):
    landing = tmp_path / "landing"
    synthetic(landing)
    write(
        landing / "routy" / "2024-05-01.csv",
        "date,marketing_source,operator,country,countryCode,raw_earnings,visits,signups\n"
        "2024-05-01,A,Op One,US,NULL,10,1,0\n",
    )
    init_db(db.engine)
    load_bronze(db.engine, CONFIG, discover(landing, CONFIG, LATER).files)  # then "kill -9"
    run(db, landing)
    assert db.rows("SELECT COUNT(*) FROM commission_bronze")[0][0] == 1 + 5 + 2 + 2
    assert db.rows("SELECT COUNT(*) FROM commission_files")[0][0] == 4
    first = gold_snapshot(db)
    # The landing file comes back (a crash before the archive move): loaded once per content.
    archived = next((tmp_path / "archive" / "routy").iterdir())
    shutil.copy(archived, landing / "routy" / "2024-05-01.csv")
    summary = run(db, landing)
    assert [load.outcome for load in summary.loads] == ["already loaded"]
    assert gold_snapshot(db) == first and not (landing / "routy" / "2024-05-01.csv").exists()


def test_a_second_run_waits_or_exits_with_a_clear_message(db, tmp_path):
    with run_lock(db.engine), pytest.raises(RunLocked, match="another growthflow commissions run"):
        with run_lock(db.engine, wait_seconds=0.3):
            pass
    with run_lock(db.engine):  # released
        pass


def reference_operator_shares(files: dict, commissions: dict) -> dict:
    """Plain-Python operator shares: (day, operator) -> cents, from rows (source, raw, operator)
    and each source-day's commission, by running-sum rounding in operator name order."""
    out = defaultdict(int)
    for day, rows in files.items():
        by_source = defaultdict(lambda: defaultdict(Decimal))
        for source, raw, operator in rows:
            by_source[source]["X" if operator == "x" else operator] += Decimal(raw)
        for source, raws in by_source.items():
            c = int(commissions[(day, source)] * 100)
            total = sum(raws.values())
            names = sorted(raws, key=lambda name: name.encode())
            weights = [1 if total == 0 else raws[n] if total > 0 else -raws[n] for n in names]
            d = Fraction(len(names) if total == 0 else abs(total))
            through = Fraction(0)
            for name, w in zip(names, map(Fraction, weights), strict=True):
                share = math.floor(c * (through + w) / d) - math.floor(c * through / d)
                assert abs(share - c * w / d) < 1  # within a cent of the exact share
                out[(day, name)] += share
                through += w
    for (day, source), commission in commissions.items():
        if not any(s == source for s, _r, _o in files.get(day, [])):
            out[(day, "UNATTRIBUTED")] += int(commission * 100)
    return dict(out)


def reference_events(files: dict[str, list[tuple]], deals: dict, clicks: dict) -> dict:
    """Plain-Python events scope: (day, source) -> commission, from rows (source, raw)."""
    out = {}
    rate = Decimal(10)
    by_key = defaultdict(Decimal)
    active = set()
    for day, rows in files.items():
        for source, raw, _operator in rows:
            by_key[(day, source)] += Decimal(raw)
            active.add((day, source))
    active.update(clicks)
    for day, source in active:
        kind, fee = deals.get(source, ("FIXED", Decimal(0)))
        n = clicks.get((day, source), 0)
        value = by_key[(day, source)] + fee + (rate * n if kind in ("PPC", "Hybrid") else 0)
        out[(day, source)] = value.quantize(CENT, ROUND_HALF_UP)
    return out


def reference_scraper_amounts(readings: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """Plain-Python rule 10: day -> rows (source, amount, operator) from each day's running
    totals (source, operator, total) in file order."""
    last: dict[tuple, Decimal] = {}
    out = {}
    for day in sorted(readings):
        today = {}
        for source, operator, total in readings[day]:
            today[(source, operator)] = Decimal(total)  # the last row of the day wins
        rows = []
        for (source, operator), total in today.items():
            if (source, operator) in last:
                previous = last[(source, operator)]
                rows.append((source, total - previous if total >= previous else total, operator))
            last[(source, operator)] = total
        out[day] = rows
    return out


def random_landing(landing: Path, rng: random.Random, days: int = 4) -> tuple:
    """A small landing zone of random earnings, clicks and running totals (which reset, skip
    days and repeat readings); returns (earnings rows, deals, clicks, readings) per day."""
    sources = ["S1", "S2", "S3", "S4", "S5"]
    deals = {
        "S1": ("PPC", Decimal(0)),
        "S2": ("FIXED", Decimal("12.5")),
        "S3": ("Hybrid", Decimal("0.3333")),
    }
    text = {"PPC": "PPC", "FIXED": "FIXED 12.5", "Hybrid": "Hybrid 0.3333"}
    write(
        landing / "deals.csv",
        "marketing_source,deal,comments\n"
        + "".join(f"{s},{text[k]},\n" for s, (k, _f) in deals.items()),
    )
    write(
        landing / "voluum_mapper.csv",
        "voluum_brand,marketing_source\n" + "".join(f"b{s},{s}\n" for s in sources),
    )
    write(landing / "central_mapping.csv", "variants,std_operator,country\nx,X,US\n")
    files, clicks, readings = {}, {}, {}
    counters = {(s, o): rng.randint(0, 9000) for s in sources[1:] for o in ("x", "y", "z")}
    for d in range(1, days + 1):
        day = f"2024-06-{d:02d}"
        rows = [
            (
                rng.choice(sources),
                f"{rng.randint(-500, 50000) / 100:.2f}",
                rng.choice(["x", "y", "z"]),
            )
            for _ in range(rng.randint(0, 40))
        ]
        files[day] = rows
        write(
            landing / "routy" / f"{day}.csv",
            "date,marketing_source,operator,country,countryCode,raw_earnings,visits,signups\n"
            + "".join(f"{day},{s},{o},US,NULL,{raw},0,0\n" for s, raw, o in rows),
        )
        brand_rows = [(s, rng.randint(0, 9)) for s in rng.sample(sources, 3)]
        for s, n in brand_rows:
            clicks[(day, s)] = n
        write(
            landing / "voluum" / f"{day}.csv",
            "date,voluum_brand,clicks\n" + "".join(f"{day},b{s},{n}\n" for s, n in brand_rows),
        )
        # running totals: a random walk per counter, with resets, gaps and repeated readings
        totals = []
        for key in rng.sample(sorted(counters), rng.randint(0, len(counters))):
            for _ in range(rng.choice([1, 1, 1, 2])):
                step = rng.randint(-300, 2500) if rng.random() > 0.1 else -counters[key]
                counters[key] = max(0, counters[key] + step)
                totals.append((*key, f"{counters[key] / 100:.2f}"))
        readings[day] = totals
        write(
            landing / "scrapers" / f"{day}.csv",
            "date,marketing_source,operator,country,total_earnings,visits\n"
            + "".join(f"{day},{s},{o},US,{t},0\n" for s, o, t in totals),
        )
    return files, deals, clicks, readings


@pytest.mark.parametrize("seed", range(4))
def test_every_scope_equals_a_plain_reference_and_shares_add_up(db, tmp_path, seed):
    landing = tmp_path / "landing"
    files, deals, clicks, readings = random_landing(landing, random.Random(seed))
    run(db, landing)
    amounts = reference_scraper_amounts(readings)
    scopes = {
        "events": files,
        "scrapers": amounts,
        "combined": {day: files[day] + amounts[day] for day in files},
    }
    for scope, rows in scopes.items():
        got = {k: v[3] for k, v in source_daily(db, scope).items()}
        assert got == reference_events(rows, deals, clicks), scope
        shares = db.rows(
            "SELECT day, operator, commission_cents FROM gf_commission_operator_daily "
            "WHERE scope = :scope AND commission_cents <> 0",
            scope=scope,
        )
        expected = reference_operator_shares(rows, got)
        assert {(str(d), o): c for d, o, c in shares} == {k: v for k, v in expected.items() if v}
    check_invariants(db)


def _steps(db, landing: Path, combined: bool):
    """The DAG's steps one by one: bronze per feed, silver, gold (combined or not)."""
    for feed in CONFIG.feeds:
        load_feed(db.engine, CONFIG, landing, feed, now=LATER)
    validate_loaded(db.engine, CONFIG)
    return compute_gold(db.engine, CONFIG, combined=combined)


def _scopes(snapshot: dict, *scopes: str) -> dict:
    return {
        table: [row for row in rows if table == "scraper_daily_amounts" or row[0] in scopes]
        for table, rows in snapshot.items()
    }


@pytest.mark.parametrize("seed", range(3))
def test_the_combined_scope_on_its_own_step_catches_up_to_a_fresh_run(db, tmp_path, seed):
    """Issue 9: with the combined scope left to its own step (the Airflow DAG scheduled on the
    gold Assets), the gold step writes events and scrapers and records the days it recomputed
    as stale for combined; the combined step then makes every gold table equal to a fresh
    run of every scope, after a first load and after corrections (a routy day, a running
    total, which moves the counter's next reading too)."""
    rng = random.Random(seed)
    first, final = tmp_path / "first", tmp_path / "final"
    random_landing(first, rng, days=5)
    shutil.copytree(first, final)
    # corrections: one day's routy file loses its last rows; one day's running totals change
    routy = final / "routy" / "2024-06-02.csv"
    routy.write_text("".join(routy.read_text().splitlines(keepends=True)[:-2]))
    scrapers = final / "scrapers" / "2024-06-03.csv"
    header, *rows = scrapers.read_text().splitlines(keepends=True)
    scrapers.write_text(header + "".join(r.replace(",US,", ",US,1") for r in rows[1:]))

    init_db(db.engine)
    expected = {}
    for source in (first, final):
        _reset(db)
        run(db, shutil.copytree(source, tmp_path / "fresh" / source.name / "landing"))
        expected[source] = gold_snapshot(db)
    assert expected[first] != expected[final]
    _reset(db)
    landing = tmp_path / "landing"
    shutil.copytree(first, landing)
    for source in (first, final):
        shutil.copytree(source, landing, dirs_exist_ok=True)
        before = gold_snapshot(db)
        stats = _steps(db, landing, combined=False)
        assert stats.scopes == ["events", "scrapers"]
        stale = {str(d) for (d,) in db.rows("SELECT day FROM gf_commission_stale_days")}
        assert len(stale) == stats.days > 0  # every recomputed day waits for combined
        now = gold_snapshot(db)
        # events and scrapers are up to date; combined is as it was
        assert _scopes(now, "events", "scrapers") == _scopes(expected[source], "events", "scrapers")
        assert _scopes(now, "combined") == {
            t: [r for r in rows if t != "scraper_daily_amounts"]
            for t, rows in _scopes(before, "combined").items()
        } | {"scraper_daily_amounts": now["scraper_daily_amounts"]}
        combined = compute_combined(db.engine, CONFIG)
        assert combined.scopes == ["combined"] and combined.days == len(stale)
        assert gold_snapshot(db) == expected[source]
        assert db.rows("SELECT * FROM gf_commission_stale_days") == []
        check_invariants(db)
        assert compute_combined(db.engine, CONFIG).days == 0  # nothing left: a no-op


def test_a_run_of_every_scope_catches_up_the_combined_days_left_stale(db, tmp_path):
    landing = tmp_path / "landing"
    random_landing(landing, random.Random(11), days=3)
    run(db, shutil.copytree(landing, tmp_path / "fresh" / "landing"))
    expected = gold_snapshot(db)
    _reset(db)
    _steps(db, landing, combined=False)
    assert len(db.rows("SELECT day FROM gf_commission_stale_days")) == 3
    summary = run(db, landing)  # nothing new to load: only the stale combined days
    assert summary.gold.promoted == 0 and summary.gold.days == 3
    assert gold_snapshot(db) == expected
    assert db.rows("SELECT * FROM gf_commission_stale_days") == []


def test_shares_beyond_64_bit_integers_are_refused_on_sqlite_and_exact_on_postgresql(db, tmp_path):
    landing = tmp_path / "landing"
    synthetic(landing)
    write(
        landing / "routy" / "2024-05-01.csv",
        "date,marketing_source,operator,country,countryCode,raw_earnings,visits,signups\n"
        "2024-05-01,B,Op One,US,NULL,99999999999999.9999,1,0\n"
        "2024-05-01,B,Op Two,FR,NULL,0.0001,1,0\n",
    )
    if db.engine.dialect.name == "sqlite":
        with pytest.raises(InputDataError, match="use PostgreSQL for such amounts"):
            run(db, landing)
        assert db.rows("SELECT COUNT(*) FROM commission_source_daily") == [(0,)]
        return
    run(db, landing)
    shares = dict(
        db.rows(
            "SELECT operator, commission_cents FROM gf_commission_operator_daily "
            "WHERE scope = 'events'"
        )
    )
    total = 10_000_000_000_010_000  # (raw 100,000,000,000,000 + FIXED 100) in cents
    exact = {"OP1": Fraction(total) * (10**18 - 1) / 10**18, "OP2": Fraction(total, 10**18)}
    assert all(abs(shares[op] - exact[op]) < 1 for op in exact)
    assert sum(shares.values()) == total
    check_invariants(db)


def test_parsers_accept_the_documented_spellings():
    days = parse_day(
        pa.array(
            [
                "2024-03-26 00:00:00",
                "2024/03/28 00:00:04",
                "2024/03/28 00:00:5",
                "",
                "2024-02-30",
                "26/03/2024",
            ]
        )
    ).to_pylist()
    assert [str(d) if d else None for d in days] == [
        "2024-03-26",
        "2024-03-28",
        "2024-03-28",
        None,
        None,
        None,
    ]
    values, reasons = parse_number(
        pa.array(["12.5", "-3", "n/a", "1e5", "1.23456", ".5"]), whole=False
    )
    assert values.to_pylist() == [125000, -30000, None, None, None, 5000]
    assert reasons.to_pylist() == [None, None, "unparsable", "unparsable", "decimals", None]


def test_cli_run_export_and_config_errors(tmp_path):
    landing = tmp_path / "landing"
    synthetic(landing)
    old = time.time() - 60
    for path in landing.rglob("*"):
        os.utime(path, (old, old))
    db = f"sqlite:///{tmp_path / 'c.db'}"

    def commissions(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "growthflow", "commissions", *args]
        return subprocess.run(command, capture_output=True, text=True)

    done = commissions(
        "run", "--db", db, "--landing", str(landing), "--archive", str(tmp_path / "archive")
    )
    assert done.returncode == 0, done.stderr
    assert "files loaded per feed" in done.stdout
    exported = commissions("export", "--db", db, "--out", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    header = (tmp_path / "out" / "commission_source_daily.csv").read_text().splitlines()[0]
    assert header == "scope,date,marketing_source,deal,raw_earnings,clicks,commission"
    write(tmp_path / "bad.yaml", "feeds: {routy: {kind: weekly}}\n")
    bad = commissions(
        "run",
        "--db",
        db,
        "--landing",
        str(landing),
        "--archive",
        str(tmp_path / "a"),
        "--sources",
        str(tmp_path / "bad.yaml"),
    )
    assert bad.returncode == 2 and "invalid feed configuration" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = commissions(
        "run", "--db", db, "--landing", str(tmp_path / "nope"), "--archive", str(tmp_path / "a")
    )
    assert missing.returncode == 2 and "landing zone not found" in missing.stderr


def test_a_corrected_running_total_recomputes_the_next_reading(db, tmp_path):
    landing = tmp_path / "landing"
    synthetic(landing)
    header = "date,marketing_source,operator,country,total_earnings,visits\n"
    for day, total in (("01", 100), ("02", 150), ("03", 300)):
        write(
            landing / "scrapers" / f"2024-05-{day}.csv",
            header + f"2024-05-{day},A,Op One,US,{total},0\n",
        )
    write(
        landing / "routy" / "2024-05-02.csv",
        "date,marketing_source,operator,country,countryCode,raw_earnings,visits,signups\n"
        "2024-05-02,A,Op One,US,NULL,5,1,0\n",
    )
    run(db, landing)

    def amounts():
        return {
            str(d): (money(a), rule)
            for d, a, rule in db.rows("SELECT date, amount, rule FROM scraper_daily_amounts")
        }

    assert amounts() == {
        "2024-05-01": (None, "baseline"),
        "2024-05-02": (Decimal("50.00"), "delta"),
        "2024-05-03": (Decimal("150.00"), "delta"),
    }
    write(
        landing / "routy" / "2024-05-02.csv",
        "date,marketing_source,operator,country,"
        "countryCode,raw_earnings,visits,signups\n2024-05-02,A,Op One,US,NULL,6,1,0\n",
    )

    def stored_readings():  # SQLite: a row deleted and inserted again gets a new rowid
        return db.rows("SELECT rowid, day, total_e4 FROM gf_commission_readings ORDER BY 2")

    before = stored_readings() if db.dialect == "sqlite" else None
    summary = run(db, landing)
    assert summary.gold.days == 1  # earnings only: the next day's readings stay as they are
    if before is not None:  # nor are the day's own rebuilt: its running totals did not change
        assert stored_readings() == before
    write(landing / "scrapers" / "2024-05-02.csv", header + "2024-05-02,A,Op One,US,200,0\n")
    summary = run(db, landing)
    assert summary.gold.days == 2  # the corrected day and the counter's next reading
    assert amounts() == {
        "2024-05-01": (None, "baseline"),
        "2024-05-02": (Decimal("100.00"), "delta"),
        "2024-05-03": (Decimal("100.00"), "delta"),
    }
    combined = source_daily(db, "combined")
    assert combined[("2024-05-03", "A")][1] == Decimal("100.00")
    check_invariants(db)


def _work_of_a_corrected_day(tmp_path: Path, days: int) -> int:
    """SQLite work (conftest.sqlite_work) of the run that loads one corrected routy day, in a
    database holding ``days`` days of demo data."""
    from growthflow.commissions.demo import write_demo_landing
    from growthflow.database import create_engine

    landing = tmp_path / f"landing_{days}"
    write_demo_landing(landing, days=days, rows_per_file=1_000)
    engine = create_engine(f"sqlite:///{tmp_path / f'history_{days}.db'}", create=True)
    archive = tmp_path / f"archive_{days}"
    run_commissions(engine, CONFIG, landing, archive, now=LATER)
    day = archive / "routy"
    original = next(p for p in sorted(day.iterdir()) if p.name.startswith("2024-03-01"))
    header, *lines = original.read_text().splitlines()
    write(landing / "routy" / "2024-03-01.csv", "\n".join([header, *lines[:-100]]) + "\n")
    with sqlite_work(engine) as work:
        summary = run_commissions(engine, CONFIG, landing, archive, now=LATER)
    assert summary.gold.promoted == 1 and summary.gold.days == 1
    engine.dispose()
    return work[0]


def test_a_corrected_day_costs_a_day_whatever_the_history(tmp_path):
    """Rule 9: only the affected days are recomputed, and their cost must not grow with the
    days stored beside them (the planner used to scan the whole history for one day)."""
    short, long = _work_of_a_corrected_day(tmp_path, 2), _work_of_a_corrected_day(tmp_path, 16)
    assert long / short < 1.5, (short, long)
