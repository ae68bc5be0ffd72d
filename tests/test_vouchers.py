"""Voucher segmentation: cleaning rules, bands, publishing, and the API over real HTTP."""

from __future__ import annotations

import csv
import json
import time
from datetime import date, timedelta

import httpx
import pytest
import sqlalchemy as sa

from growthflow.database import read_only
from growthflow.errors import ConfigError
from growthflow.server import BackgroundServer
from growthflow.vouchers.api import create_app
from growthflow.vouchers.pipeline import run_vouchers
from growthflow.vouchers.segments import DEFAULT_SEGMENTS, load_segments

from conftest import SHARED

HEADER = [
    "timestamp",
    "country_code",
    "last_order_ts",
    "first_order_ts",
    "total_orders",
    "voucher_amount",
]
REAL_DATA = SHARED / "vouchers" / "voucher_assignments_2018.parquet"


def row(days_since_last=40, orders="2.0", amount="2640.0", country="Peru", ts="2018-06-01"):
    """One voucher assignment; recency = days between last order and assignment."""
    last = date.fromisoformat(ts) - timedelta(days=days_since_last)
    return [
        f"{ts} 10:00:00.123456",
        country,
        last.isoformat(),
        "2017-01-01 00:00:00",
        orders,
        amount,
    ]


def write_csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return str(path)


def segments(db):
    return {
        (name, band, amount): count
        for name, band, amount, count in db.rows(
            "SELECT segment_name, segment, voucher_amount, voucher_count FROM voucher_segments"
        )
    }


def test_cleaning_rules_are_counted(db, tmp_path):
    rows = [
        row(),
        row(country="  pERU "),  # trimmed, case-insensitive
        row(country="Chile"),
        row(amount=""),  # no voucher_amount
        row(days_since_last=41),
        row(days_since_last=41),  # an exact duplicate
        row(orders=""),
        row(orders="abc"),
        row(orders="-1"),
        row(orders="2.5"),  # frequency only
        row(days_since_last=-3),  # negative recency: out of recency segments only
        [*row()[:2], "2018-02-30", *row()[3:]],  # unparsable last_order_ts
    ]
    summary = run_vouchers(db.engine, write_csv(tmp_path / "v.csv", rows), DEFAULT_SEGMENTS)
    c = summary.clean
    assert (c.source_rows, c.other_country, c.no_voucher_amount, c.duplicates) == (12, 1, 1, 1)
    assert c.kept == 9
    assert c.total_orders_unusable == 4 and c.recency_unusable == 2
    counts = segments(db)
    assert counts[("frequent_segment", "0-4", 2640.0)] == 5  # 9 kept - 4 unusable orders
    assert counts[("recency_segment", "30-60", 2640.0)] == 7  # 9 kept - 2 unusable recency
    assert sum(counts.values()) == 12


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_voucher_amount_that_is_not_a_number_is_a_counted_row(db, tmp_path, fmt):
    """One bad amount used to stop the whole CSV ("conversion error to double")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    amounts = ["abc", "NaN", "inf", "", " 2640 ", "2640", "1e3", "2640.0", "-5", "1,5"]
    rows = [row(days_since_last=40 + i, amount=a) for i, a in enumerate(amounts)]
    rows.append(row(days_since_last=45, amount="2640.00"))  # the same voucher as "2640"
    if fmt == "csv":
        source = write_csv(tmp_path / "v.csv", rows)
    else:  # a float column: NaN is a missing value, not a bad one
        table = pa.table({h: [r[i] for r in rows] for i, h in enumerate(HEADER)})
        good = [float(a) if a.strip() not in ("abc", "1,5", "") else None for a in amounts]
        table = table.set_column(5, "voucher_amount", pa.array([*good, 2640.0], pa.float64()))
        source = str(tmp_path / "v.parquet")
        pq.write_table(table, source)
    c = run_vouchers(db.engine, source, DEFAULT_SEGMENTS).clean
    counts = segments(db)
    if fmt == "csv":
        assert (c.no_voucher_amount, c.voucher_amount_not_a_number) == (1, 4)
        assert (c.duplicates, c.kept) == (1, 5)
    else:  # nulls: abc, 1,5 and the empty one; NaN is missing; inf is not a number
        assert (c.no_voucher_amount, c.voucher_amount_not_a_number) == (4, 1)
        assert (c.duplicates, c.kept) == (1, 5)
    assert c.source_rows == len(rows)
    assert (
        c.no_voucher_amount + c.voucher_amount_not_a_number + c.duplicates + c.kept == c.source_rows
    )
    assert counts[("recency_segment", "30-60", 2640.0)] == 3
    assert counts[("recency_segment", "30-60", 1000.0)] == 1
    assert counts[("recency_segment", "30-60", -5.0)] == 1


@pytest.mark.parametrize(
    "field,low,high,low_band,high_band",
    [
        ("orders", 4, 5, "0-4", "5-13"),
        ("orders", 37, 38, "14-37", "38+"),
        ("days", 29, 30, "0-29", "30-60"),
        ("days", 60, 61, "30-60", "61-90"),
        ("days", 180, 181, "121-180", "180+"),
    ],
)
def test_band_boundaries(db, tmp_path, field, low, high, low_band, high_band):
    def make(value, amount):
        if field == "orders":
            return row(orders=f"{value}.0", amount=amount)
        return row(days_since_last=value, amount=amount)

    source = write_csv(tmp_path / "b.csv", [make(low, "100"), make(high, "200")])
    run_vouchers(db.engine, source, DEFAULT_SEGMENTS)
    name = "frequent_segment" if field == "orders" else "recency_segment"
    counts = segments(db)
    assert counts[(name, low_band, 100.0)] == 1 and counts[(name, high_band, 200.0)] == 1
    assert (name, low_band, 200.0) not in counts and (name, high_band, 100.0) not in counts


def test_segments_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("orders:\n  field: total_orders\n  bands: ['0-1', {label: big, min: 2}]\n")
    loaded = load_segments(path)
    assert [b.label for b in loaded["orders"].bands] == ["0-1", "big"]
    path.write_text("orders:\n  field: total_orders\n  bands: ['0-5', '5-9']\n")
    with pytest.raises(ConfigError, match="overlap"):
        load_segments(path)
    path.write_text("orders:\n  field: spend\n  bands: ['0-5']\n")
    with pytest.raises(ConfigError, match="field"):
        load_segments(path)


def test_publish_is_atomic_for_readers(db, tmp_path):
    run_vouchers(
        db.engine, write_csv(tmp_path / "1.csv", [row(amount="100")] * 2), DEFAULT_SEGMENTS
    )
    before = segments(db)
    with read_only(db.engine) as reader:
        reader.execute(sa.text("SELECT count(*) FROM voucher_segments")).scalar()  # snapshot
        second = write_csv(tmp_path / "2.csv", [row(amount="300", orders="9.0")])
        run_vouchers(db.engine, second, DEFAULT_SEGMENTS)
        if db.dialect == "sqlite":  # SQLite readers keep their snapshot until they end it
            seen = reader.execute(sa.text("SELECT voucher_amount FROM voucher_segments")).all()
            assert {a for (a,) in seen} == {100.0}
        reader.rollback()
    after = segments(db)
    assert after != before and {a for (_, _, a) in after} == {300.0}
    assert db.rows("SELECT max(version) FROM gf_voucher_runs") == [(2,)]


@pytest.mark.parametrize("empty", ["other country", "header only"])
def test_an_empty_result_is_refused_and_the_live_version_stays(db, tmp_path, empty):
    """Issue 10 item 5: publishing nothing would make the API answer 404 to everyone."""
    import os
    import subprocess
    import sys

    live = write_csv(tmp_path / "live.csv", [row(amount="100")] * 2)
    run_vouchers(db.engine, live, DEFAULT_SEGMENTS)
    before = segments(db)
    source = write_csv(tmp_path / "new.csv", [] if empty == "header only" else [row()])
    command = [sys.executable, "-m", "growthflow", "vouchers", "run", "--source", source]
    command += [*db.cli_args(), "--country", "Atlantis"]
    env = {**os.environ, "COLUMNS": "300"}
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode != 0
    assert "nothing to publish" in refused.stderr and "version 1 stays published" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    assert segments(db) == before
    assert db.rows("SELECT max(version) FROM gf_voucher_runs") == [(1,)]
    allowed = subprocess.run(
        [*command, "--allow-empty"], capture_output=True, text=True, timeout=120, env=env
    )
    assert allowed.returncode == 0, allowed.stderr
    assert segments(db) == {}
    assert db.rows("SELECT max(version) FROM gf_voucher_runs") == [(2,)]


CUSTOMER = {
    "customer_id": 123,
    "country_code": "Peru",
    "last_order_ts": "2018-05-03 00:00:00",
    "first_order_ts": "2017-05-03 00:00:00",
    "total_orders": 15,
    "segment_name": "recency_segment",
}


@pytest.fixture
def api(db, tmp_path):
    rows = [row(days_since_last=d, amount="3520.0") for d in (38, 39, 40)] + [
        row(days_since_last=41, amount="2640.0", orders="15.0"),
        row(days_since_last=42, amount="4400.0", orders="15.0"),  # tie with 2640: smaller wins
    ]
    run_vouchers(db.engine, write_csv(tmp_path / "api.csv", rows), DEFAULT_SEGMENTS)
    app = create_app(db.engine, reference_date=date(2018, 6, 15), poll_s=0.05)
    with BackgroundServer(app) as server:
        yield server.base_url, db, tmp_path


def ask(base, body, method="POST"):
    path = "/voucher" if method == "POST" else "/voucher_amount"
    return httpx.request(method, base + path, json=body, timeout=10)


def test_both_endpoints_answer_the_segment_winner(api):
    base, _, _ = api
    frequent = {**CUSTOMER, "segment_name": "frequent_segment"}
    assert ask(base, CUSTOMER).json() == {"voucher_amount": 3520, "band": "30-60", "fallback": None}
    assert ask(base, frequent).json() == {"voucher_amount": 2640, "band": "14-37", "fallback": None}
    # the original contract: the amount alone
    assert ask(base, CUSTOMER, "GET").json() == {"voucher_amount": 3520}  # 43 days: 30-60
    assert ask(base, frequent, "GET").json() == {"voucher_amount": 2640}  # tie -> smaller
    assert ask(base, frequent, "GET").headers["x-voucher-band"] == "14-37"
    assert httpx.get(base + "/health").json()["status"] == "ok"
    assert httpx.get(base + "/docs").status_code == 200


@pytest.mark.parametrize(
    "change,message",
    [
        ({"segment_name": "spend_segment"}, "unknown segment_name"),
        ({"total_orders": -1}, "greater than or equal to 0"),
        ({"total_orders": "many"}, "valid integer"),
        ({"last_order_ts": "yesterday"}, "datetime"),
        ({"last_order_ts": "2018-07-01 00:00:00"}, "after the reference date"),
        ({"first_order_ts": "2018-05-04 00:00:00"}, "before first_order_ts"),
        ({"customer_id": None}, "valid integer"),
        ({"segment_name": None}, "valid string"),
    ],
)
def test_validation_errors_are_422_with_a_message(api, change, message):
    base, _, _ = api
    for method in ("POST", "GET"):
        response = ask(base, {**CUSTOMER, **change}, method)
        assert response.status_code == 422, response.text
        assert message in response.text
        # every 422 has the documented shape: a list of {loc, msg, type}
        (error,) = response.json()["detail"]
        assert set(error) == {"loc", "msg", "type"} and error["loc"][0] == "body"
    chile = ask(base, {**CUSTOMER, "country_code": "Chile"})
    assert chile.status_code == 404 and "no segments for country" in chile.text


def test_missing_field_malformed_json_empty_band_and_no_500(api):
    base, _, _ = api
    missing = {k: v for k, v in CUSTOMER.items() if k != "total_orders"}
    assert ask(base, missing).status_code == 422
    bad = httpx.post(
        base + "/voucher",
        content=b'{"customer_id": 1,',
        headers={"content-type": "application/json"},
    )
    assert bad.status_code in (400, 422)
    for body in (
        [],
        "x",
        1,
        None,
        {"customer_id": {}},
        {**CUSTOMER, "total_orders": 10**30},
        {**CUSTOMER, "last_order_ts": "2018-05-03T00:00:00+05:00"},
    ):
        assert ask(base, body).status_code < 500, body


def test_a_band_without_data_falls_back_to_the_whole_segment(api):
    """Issue 10 item 20: a customer whose band has no data used to get 404."""
    base, _, _ = api
    old = {**CUSTOMER, "last_order_ts": "2018-01-01 00:00:00"}  # 165 days: 121-180 has no data
    # recency_segment over all bands: 3520 x3, 2640 x1, 4400 x1
    assert ask(base, old).json() == {
        "voucher_amount": 3520,
        "band": "121-180",
        "fallback": "segment",
    }
    response = ask(base, old, "GET")
    assert response.json() == {"voucher_amount": 3520}  # the original contract, unchanged
    assert response.headers["x-voucher-fallback"] == "segment"
    assert response.headers["x-voucher-band"] == "121-180"
    assert "x-voucher-fallback" not in ask(base, CUSTOMER, "GET").headers


def test_404_only_when_the_segment_has_no_data_at_all(db, tmp_path):
    spec = {
        "recency_segment": DEFAULT_SEGMENTS["recency_segment"].model_dump(),
        "gap_segment": {"field": "total_orders", "bands": ["0-1", "10+"]},
        "empty_segment": {"field": "total_orders", "bands": ["100+"]},
    }
    path = tmp_path / "segments.yaml"
    path.write_text(json.dumps(spec))
    rows = [
        row(orders="0", amount="10"),
        row(orders="1", amount="10"),
        row(orders="12", amount="20"),
    ]
    run_vouchers(db.engine, write_csv(tmp_path / "v.csv", rows), load_segments(path))
    app = create_app(db.engine, reference_date=date(2018, 6, 15), poll_s=0.05)
    with BackgroundServer(app) as server:
        empty = ask(server.base_url, {**CUSTOMER, "segment_name": "empty_segment"})
        assert empty.status_code == 404 and "no voucher data in any band" in empty.text
        # 5 orders: no band holds it, so the segment's most used amount answers
        gap = ask(server.base_url, {**CUSTOMER, "segment_name": "gap_segment", "total_orders": 5})
        assert gap.json() == {"voucher_amount": 10, "band": None, "fallback": "segment"}


def test_the_api_reloads_when_the_pipeline_publishes(api):
    base, db, tmp_path = api
    assert ask(base, CUSTOMER).json()["voucher_amount"] == 3520
    run_vouchers(
        db.engine,
        write_csv(tmp_path / "new.csv", [row(days_since_last=40, amount="999.0")]),
        DEFAULT_SEGMENTS,
    )
    deadline = time.monotonic() + 10
    while ask(base, CUSTOMER).json()["voucher_amount"] != 999 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ask(base, CUSTOMER, "GET").json() == {"voucher_amount": 999}
    assert httpx.get(base + "/health").json()["version"] == 2


def test_nothing_published_yet_is_503(tmp_path):
    from growthflow.database import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}", create=True)
    with BackgroundServer(create_app(engine, poll_s=0.05)) as server:
        assert ask(server.base_url, CUSTOMER).status_code == 503


def test_serving_before_anything_is_published_logs_one_line(tmp_path, caplog):
    """Issue 10 item 13: one warning, no traceback, then quiet until a version appears."""
    import logging

    from growthflow.database import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}", create=True)
    with caplog.at_level(logging.INFO, logger="growthflow.vouchers.api"):
        with BackgroundServer(create_app(engine, poll_s=0.02)) as server:
            time.sleep(0.5)  # some 25 polls
            assert ask(server.base_url, CUSTOMER).status_code == 503
            run_vouchers(engine, write_csv(tmp_path / "v.csv", [row()]), DEFAULT_SEGMENTS)
            for _ in range(100):
                if ask(server.base_url, CUSTOMER).status_code != 503:
                    break
                time.sleep(0.02)
    records = [r for r in caplog.records if r.name == "growthflow.vouchers.api"]
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None, warnings
    assert "nothing published" in warnings[0].getMessage()
    assert any("serving voucher segments version 1" in r.getMessage() for r in records)


@pytest.mark.skipif(not REAL_DATA.exists(), reason="../shared/datasets is not present")
def test_real_2018_data_answers_the_original_example(db):
    summary = run_vouchers(db.engine, str(REAL_DATA), DEFAULT_SEGMENTS)
    c = summary.clean
    # The dataset README: 44,920 Peru rows, 819 without voucher, 3,519 empty total_orders
    # overall; 3,547 Peru rows assigned before their last order (3,482 keep a voucher).
    assert c.source_rows == 285_570 and c.source_rows - c.other_country == 44_920
    assert c.no_voucher_amount == 819 and c.recency_unusable == 3_482
    app = create_app(db.engine, reference_date=date(2018, 6, 15), poll_s=1)
    with BackgroundServer(app) as server:
        assert ask(server.base_url, CUSTOMER, "GET").json() == {"voucher_amount": 2640}
        assert ask(server.base_url, CUSTOMER).json()["band"] == "30-60"
    # Today as the reference date: the customer is in band 180+, which has no Peru data; the
    # segment's most used amount answers (issue 10 item 20), the GET contract unchanged.
    app = create_app(db.engine, reference_date=date(2026, 11, 23), poll_s=1)
    with BackgroundServer(app) as server:
        response = ask(server.base_url, CUSTOMER, "GET")
        assert response.json() == {"voucher_amount": 2640}
        assert response.headers["x-voucher-fallback"] == "segment"
        answer = ask(server.base_url, CUSTOMER).json()
        assert answer == {"voucher_amount": 2640, "band": "180+", "fallback": "segment"}
    stored = json.loads(db.rows("SELECT summary FROM gf_voucher_runs")[0][0])
    assert stored["clean"]["kept"] == 44_101


def test_hostile_bodies_get_4xx_without_echoes(api):
    """Issue 10 items 6, 7, 17: NaN and Infinity, huge bodies and fields, coerced types."""
    base, _, _ = api
    for value in ("NaN", "Infinity", "-Infinity"):
        body = json.dumps(CUSTOMER).replace('"total_orders": 15', f'"total_orders": {value}')
        for method in ("POST", "GET"):
            response = httpx.request(
                method,
                base + ("/voucher" if method == "POST" else "/voucher_amount"),
                content=body.encode(),
                headers={"content-type": "application/json"},
                timeout=10,
            )
            assert response.status_code == 422, (value, response.text)
            assert isinstance(response.json()["detail"], list)
    for coerced in (True, "7", 7.5, None, [7]):
        response = ask(base, {**CUSTOMER, "total_orders": coerced})
        assert response.status_code == 422, coerced
        assert ask(base, {**CUSTOMER, "customer_id": coerced}).status_code == 422, coerced
    # JSON Schema's integer: 15.0 is the integer 15
    assert ask(base, {**CUSTOMER, "total_orders": 15.0, "customer_id": 123.0}).status_code == 200
    big_field = {**CUSTOMER, "segment_name": "x" * 1_000_000}
    response = ask(base, big_field)
    assert response.status_code == 413 and len(response.content) < 1000
    long_name = {**CUSTOMER, "segment_name": "x" * 5_000}
    response = ask(base, long_name)
    assert response.status_code == 422 and len(response.content) < 2000
    # a chunked body (no Content-Length) is cut off too
    chunks = (b'{"customer_id": 1, "pad": "' + b"y" * 50_000 for _ in range(4))
    response = httpx.post(
        base + "/voucher", content=chunks, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    # bodies FastAPI cannot parse are 422 like malformed JSON (issue 10 item 12), not 400
    for unparsable in (
        b'{"customer_id": "\xff\xfe"}',  # not UTF-8
        b"[" * 5_000 + b"]" * 5_000,  # nested too deep
        b'{"customer_id": ' + b"9" * 5_000 + b"}",  # more digits than Python parses
    ):
        response = httpx.post(
            base + "/voucher", content=unparsable, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, (unparsable[:20], response.text)
        assert response.json()["detail"][0]["type"] == "json_invalid"
    assert ask(base, CUSTOMER, "GET").json() == {"voucher_amount": 3520}  # still serving
