"""The IHC API provider against the local IHC-compatible server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from growthflow.attribution.demo import generate_demo_data
from growthflow.attribution.ihc_client import IhcApiConfig, IhcApiError, check_response
from growthflow.attribution.ihc_contract import ComputeRequest, ComputeResponse
from growthflow.attribution.ihc_server import create_app
from growthflow.attribution.pipeline import RunConfig, load_run_config, run_attribution
from growthflow.attribution.runs import ABANDONED_AFTER_S, reclaim_abandoned
from growthflow.attribution.training import FIELDS, export_training_set
from growthflow.errors import ConfigError
from growthflow.server import BackgroundServer

from conftest import conversion, make_batch, session

KEY = "sk-test-Zq81-secret-value"


def api_config(url, **kw):
    values = dict(
        api_key=KEY,
        conv_type_id="data_challenge",
        api_url=url,
        backoff_s=0.01,
        max_backoff_s=0.05,
        timeout_s=0.5,
        max_attempts=8,
        journey_attempts=6,
    )
    values.update(kw)
    return IhcApiConfig(**values)


def run_config(**kw):
    values = dict(start=date(2023, 9, 1), end=date(2023, 9, 10), provider="ihc-api")
    values.update(kw)
    return RunConfig.build(**values)


@pytest.fixture
def demo_db(db):
    generate_demo_data(db.engine, scale=0.05, seed=9)
    return db


def stored(db):
    return {
        (c, s): (i, h, cl, ihc)
        for c, s, i, h, cl, ihc in db.rows(
            "SELECT d.conv_id, d.session_id, d.initializer, d.holder, d.closer, a.ihc "
            "FROM gf_attribution_detail d JOIN attribution_customer_journey a "
            "ON a.conv_id = d.conv_id AND a.session_id = d.session_id"
        )
    }


def test_faulty_server_every_journey_stored_with_the_servers_numbers(demo_db):
    db = demo_db
    local_config = RunConfig.build(start=date(2023, 9, 1), end=date(2023, 9, 10))
    local = run_attribution(db.engine, local_config)
    expected = stored(db)
    app = create_app(
        api_key=KEY,
        max_journeys=10,
        max_sessions=200,
        fault_rate=0.35,
        seed=3,
        slow_s=1.0,
        retry_after_s=0.02,
    )
    with BackgroundServer(app) as server:
        summary = run_attribution(
            db.engine,
            run_config(max_journeys=3, max_sessions=200),
            api=api_config(server.url, concurrency=3),
        )
    stats = app.state.stats
    assert sum(stats.faults.values()) > 5 and len(stats.faults) == 5  # every kind of fault
    assert summary.api.journeys_failed == 0 and summary.api.request_retries > 0
    assert summary.api.journeys_sent == summary.journeys == local.journeys
    assert stats.rejected["limits"] == 0
    assert stats.max_journeys_seen <= 3 and stats.max_sessions_seen <= 200
    got = stored(db)
    assert got.keys() == expected.keys()
    assert summary.api.rows_written == len(got)  # counters stay exact under concurrency
    for key, (i, h, c, ihc) in got.items():
        ei, eh, ec, eihc = expected[key]
        assert (i, h, c) == (round(ei, 4), round(eh, 4), round(ec, 4))  # as the API returned
        assert ihc == pytest.approx(eihc, abs=2e-4)
    sums = db.rows("SELECT conv_id, SUM(ihc) FROM attribution_customer_journey GROUP BY conv_id")
    assert all(abs(total - 1) < 1e-12 for _, total in sums)  # normalised after rounding
    models = db.rows("SELECT DISTINCT model FROM gf_attributed_conversions")
    assert models == [("ihc-api:data_challenge",)]


def test_partial_failures_are_retried_then_reported_never_written(demo_db, tmp_path):
    db = demo_db
    app = create_app(api_key=KEY, fault_rate=1.0, faults=("partial",), seed=1)
    with BackgroundServer(app) as server:
        summary = run_attribution(
            db.engine,
            run_config(max_journeys=6),
            csv_path=tmp_path / "r.csv",
            api=api_config(server.url, journey_attempts=2),
        )
    api = summary.api
    assert api.journeys_failed == len(api.failures) > 0
    assert api.journeys_retried >= api.journeys_failed
    failed = {conv for conv, _ in api.failures}
    attributed = {
        c for (c,) in db.rows("SELECT DISTINCT conv_id FROM attribution_customer_journey")
    }
    assert not failed & attributed
    assert len(attributed) + len(failed) == summary.journeys
    assert all("partial failure" in reason for _, reason in api.failures)
    assert (tmp_path / "r.csv").exists()  # the report covers what did succeed


def test_wrong_key_stops_with_one_clear_error(demo_db):
    app = create_app(api_key="the-right-key")
    with BackgroundServer(app) as server, pytest.raises(IhcApiError, match="rejected the API key"):
        run_attribution(demo_db.engine, run_config(), api=api_config(server.url))
    assert demo_db.rows("SELECT status FROM gf_runs") == [("failed",)]


def test_request_over_the_servers_limit_fails_fast_with_the_apis_message(demo_db):
    app = create_app(api_key=KEY, max_sessions=50)
    with BackgroundServer(app) as server, pytest.raises(IhcApiError, match="request too large"):
        run_attribution(demo_db.engine, run_config(max_sessions=3000), api=api_config(server.url))
    assert app.state.stats.requests >= 1


def test_a_closed_port_stops_the_run_at_once(demo_db):
    """Issue 10 item 16: a closed --api-url port was retried for 94 s, 6 times per journey."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://user:pw-in-url@127.0.0.1:{port}/v1/compute_ihc?token=q-secret"
    t0 = time.perf_counter()
    with pytest.raises(IhcApiError, match="cannot reach the IHC API") as caught:
        run_attribution(
            demo_db.engine,
            run_config(max_journeys=10, max_sessions=200),
            api=api_config(url, backoff_s=0.05, max_backoff_s=1.0, concurrency=4),
        )
    elapsed = time.perf_counter() - t0
    message = str(caught.value)
    assert f"127.0.0.1:{port}/v1/compute_ihc" in message and "8 connection attempts" in message
    assert "pw-in-url" not in message and "q-secret" not in message
    assert elapsed < 10, elapsed  # the first journeys' retries alone would be 8 x 6 requests
    assert demo_db.rows("SELECT status FROM gf_runs") == [("failed",)]


def test_retry_after_is_honoured(demo_db):
    app = create_app(api_key=KEY, fault_rate=1.0, faults=("429",), retry_after_s=0.3)
    with BackgroundServer(app) as server:
        t0 = time.perf_counter()
        summary = run_attribution(
            demo_db.engine,
            run_config(max_journeys=1000, max_sessions=3000),
            api=api_config(server.url, max_attempts=3, journey_attempts=1, backoff_s=0.0),
        )
        elapsed = time.perf_counter() - t0
    assert summary.api.requests == 3 and summary.api.journeys_failed == summary.journeys
    assert elapsed >= 0.6  # two waits of Retry-After: 0.3 s, despite a zero backoff


def test_check_response_rejects_bad_journeys_and_normalises_good_ones():
    batch = make_batch([2, 1, 2, 2])
    rows = [
        # journey c0: sums to 1.0008 (within 1e-3): normalised
        ("c0", "s0", 0.6004),
        ("c0", "s1", 0.4004),
        # journey c1: missing its session
        # journey c2: a value above 1
        ("c2", "s3", 1.2),
        ("c2", "s4", 0.0),
        # journey c3: sums to 0.9, and an unknown session
        ("c3", "s5", 0.5),
        ("c3", "s6", 0.4),
        ("c3", "zz", 0.1),
    ]
    response = ComputeResponse(
        statusCode=206,
        value=[
            dict(conversion_id=c, session_id=s, initializer=0, holder=0, closer=0, ihc=v)
            for c, s, v in rows
        ],
        partialFailureErrors=[{"conversion_id": "c1", "message": "boom"}],
    )
    good, result, failed = check_response(batch, response)
    assert good.tolist() == [0]
    np.testing.assert_allclose(result.ihc, np.array([0.6004, 0.4004]) / 1.0008)
    assert result.ihc.sum() == pytest.approx(1.0, abs=1e-15)
    assert set(failed) == {1, 2, 3}
    assert "partial failure" in failed[1] and "outside [0, 1]" in failed[2]
    assert "unexpected session" in failed[3]


def cli_run(db, url, *extra, env_key=KEY):
    env = {
        **os.environ,
        "GROWTHFLOW_IHC_API_KEY": env_key,
        "GROWTHFLOW_LOG_LEVEL": "DEBUG",
        "COLUMNS": "200",
    }
    return [
        sys.executable,
        "-m",
        "growthflow",
        "attribution",
        "run",
        *db.cli_args(),
        "--start",
        "2023-09-01",
        "--end",
        "2023-09-10",
        "--provider",
        "ihc-api",
        "--conv-type-id",
        "data_challenge",
        "--api-url",
        url,
        *extra,
    ], env


def staging_rows(db, run_id):
    tables = ("gf_journeys", "gf_journey_sessions", "gf_batches", "gf_run_heartbeats")
    return sum(db.rows(f"SELECT COUNT(*) FROM {t} WHERE run_id = '{run_id}'")[0][0] for t in tables)


def test_killed_run_resends_only_what_is_missing(demo_db, tmp_path):
    db = demo_db
    app = create_app(api_key=KEY, latency_s=0.15)
    with BackgroundServer(app) as server:
        cmd, env = cli_run(db, server.url, "--max-journeys", "2", "--concurrency", "1")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and done < 6:
            time.sleep(0.05)
            try:
                done = db.rows("SELECT COUNT(*) FROM gf_attributed_conversions")[0][0]
            except sa.exc.DBAPIError:
                done = 0  # the tables are being created
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(0.5)  # let the server finish what was in flight (latency 0.15 s)
        stored_after_kill = db.rows("SELECT COUNT(*) FROM gf_attributed_conversions")[0][0]
        computed_before = sum(app.state.stats.computed.values())
        assert 6 <= stored_after_kill
        # Issue 10 item 10: the killed run stays "running" with its staging rows until a later
        # run sees that its heartbeat stopped; then it is marked abandoned and cleaned up.
        [(killed, status)] = db.rows("SELECT run_id, status FROM gf_runs")
        assert status == "running" and staging_rows(db, killed) > 0
        assert reclaim_abandoned(db.engine) == []  # it beat moments ago: maybe alive
        later = datetime.now(UTC) + timedelta(seconds=ABANDONED_AFTER_S + 1)
        assert reclaim_abandoned(db.engine, now=later) == [killed]
        assert db.rows("SELECT status FROM gf_runs") == [("abandoned",)]
        assert staging_rows(db, killed) == 0
        with pytest.raises(ConfigError, match="marked abandoned"):
            load_run_config(db.engine, killed)

        cmd, env = cli_run(db, server.url, "--max-journeys", "2", "--concurrency", "2")
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        total = db.rows("SELECT COUNT(*) FROM gf_attributed_conversions")[0][0]
        resent = sum(app.state.stats.computed.values()) - computed_before
    assert stored_after_kill < total
    assert resent == total - stored_after_kill  # only the missing journeys went out again
    skipped = re.search(r"journeys skipped \(already stored\)\s+│\s+([\d,]+)", second.stdout)
    assert int(skipped.group(1).replace(",", "")) == stored_after_kill


def test_the_key_never_leaves_the_request_header(demo_db, tmp_path):
    db = demo_db
    app = create_app(api_key=KEY, fault_rate=0.5, seed=4, slow_s=1.0, retry_after_s=0.01)
    failures = tmp_path / "failures.csv"
    with BackgroundServer(app) as server:
        cmd, env = cli_run(
            db,
            server.url,
            "--csv",
            str(tmp_path / "r.csv"),
            "--max-journeys",
            "5",
            "--failures-file",
            str(failures),
        )
        ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        cmd, env = cli_run(db, server.url, "--force", env_key="not-" + KEY)
        bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode in (0, 1), ok.stderr
    assert bad.returncode == 1 and "rejected the API key" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout
    outputs = ok.stdout + ok.stderr + bad.stdout + bad.stderr + (tmp_path / "r.csv").read_text()
    if failures.exists():
        outputs += failures.read_text()
    assert "retry" in ok.stderr.lower() or app.state.stats.faults.total() == 0
    assert KEY not in outputs
    with db.engine.connect() as conn:
        for table in sa.inspect(db.engine).get_table_names():
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                assert KEY not in repr(tuple(row)), table


def test_missing_key_or_conv_type_is_a_config_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROWTHFLOW_")}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "growthflow",
            "attribution",
            "run",
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--start",
            "2023-09-01",
            "--end",
            "2023-09-02",
            "--provider",
            "ihc-api",
            "--conv-type-id",
            "x",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2 and "needs an API key" in r.stderr


def test_training_set_export_matches_the_request_format(db, tmp_path):
    db.load(
        sessions=[
            session("s1", "u", "2023-09-01", "10:00:00", "A"),
            session("s2", "u", "2023-09-01", "11:00:00", "B", holder=0),
            session("after", "u", "2023-09-03", "11:00:00", "B"),
            session("s3", "v", "2023-09-01", "09:00:00", "C"),
        ],
        conversions=[
            conversion("c1", "u", "2023-09-02", "10:00:00"),
            conversion("c2", "v", "2023-09-02", "10:00:00"),
            conversion("c3", "nobody", "2023-09-02", "10:00:00"),
        ],
    )
    assert export_training_set(
        db.engine, date(2023, 9, 1), date(2023, 9, 30), tmp_path / "t.csv"
    ) == (2, 3)
    rows = list(csv.reader((tmp_path / "t.csv").open()))
    assert rows == [
        list(FIELDS),
        ["c1", "s1", "2023-09-01 10:00:00", "A", "1", "1", "0", "0"],
        ["c1", "s2", "2023-09-01 11:00:00", "B", "0", "1", "1", "0"],
        ["c2", "s3", "2023-09-01 09:00:00", "C", "1", "1", "1", "0"],
    ]
    export_training_set(db.engine, date(2023, 9, 1), date(2023, 9, 30), tmp_path / "t.json")
    body = json.loads((tmp_path / "t.json").read_text())
    request = ComputeRequest.model_validate(body)  # a valid API request body
    assert [s.session_id for s in request.customer_journeys] == ["s1", "s2", "s3"]
    assert db.rows("SELECT COUNT(*) FROM gf_journeys") == [(0,)]


def test_the_local_server_refuses_like_the_real_api():

    session = {
        "conversion_id": "c1",
        "session_id": "s1",
        "timestamp": "2023-09-01 10:00:00",
        "channel_label": "A",
        "holder_engagement": 1,
        "closer_engagement": 1,
        "conversion": 1,
        "impression_interaction": 0,
    }
    app = create_app(api_key=KEY, max_journeys=2, max_sessions=3)
    with BackgroundServer(app) as server:

        def post(body, key=KEY, params=(("conv_type_id", "x"),)):
            return httpx.post(
                server.url, json=body, params=dict(params), headers={"x-api-key": key}, timeout=10
            )

        ok = post({"customer_journeys": [session]})
        assert ok.status_code == 200
        assert ok.json()["value"] == [
            {
                "conversion_id": "c1",
                "session_id": "s1",
                "initializer": 1.0,
                "holder": 0.0,
                "closer": 1.0,
                "ihc": 1.0,
            }
        ]
        assert post({"customer_journeys": [session]}, key="nope").status_code == 403
        assert post({"customer_journeys": [session]}, params=()).status_code == 400
        bad = post({"customer_journeys": [{**session, "holder_engagement": 2}]})
        assert bad.status_code == 400 and "holder_engagement" in bad.json()["message"]
        assert post({"customer_journeys": []}).status_code == 400
        three = [{**session, "conversion_id": f"c{i}", "session_id": f"s{i}"} for i in range(3)]
        too_many = post({"customer_journeys": three})
        assert too_many.status_code == 400 and "too large" in too_many.json()["message"]
        malformed = httpx.post(
            server.url,
            content=b"{not json",
            params={"conv_type_id": "x"},
            headers={"x-api-key": KEY, "content-type": "application/json"},
        )
        assert malformed.status_code == 400
        assert httpx.get(server.url.replace("/v1/compute_ihc", "/docs")).status_code == 200
        # impossible times are 400 with the field named, not 500 (issue 10 item 8)
        for when in ("2023-09-01 25:61:00", "2023-02-30 10:00:00", "0000-00-00 00:00:00"):
            wrong = post({"customer_journeys": [{**session, "timestamp": when}]})
            assert wrong.status_code == 400, (when, wrong.text)
            assert "timestamp" in wrong.json()["message"]
        for flag in (True, 1.0, "1"):  # flags are the integers 0 and 1
            assert post({"customer_journeys": [{**session, "conversion": flag}]}).status_code == 400


def test_the_key_is_checked_before_the_body(tmp_path):
    """Issue 10 item 12: no key and a bad body got 400 with field details, and a huge body
    was parsed before the 403."""
    app = create_app(api_key=KEY)
    with BackgroundServer(app) as server:
        stats = app.state.stats
        for key in ({}, {"x-api-key": "nope"}):
            bad = httpx.post(
                server.url, content=b"{not json", params={"conv_type_id": "x"}, headers=key
            )
            assert bad.status_code == 403 and bad.json() == {
                "statusCode": 403,
                "message": "Forbidden",
            }
        # 100,000 sessions (2.3 MB) without a key: refused before being read
        huge = b'{"customer_journeys": [' + b",".join([b'{"conversion_id": "c"}'] * 100_000) + b"]}"
        started = time.perf_counter()
        response = httpx.post(server.url, content=huge, params={"conv_type_id": "x"})
        assert response.status_code == 403
        assert stats.rejected == {"key": 3} and stats.answered == 0
        # with the key, an oversized body is 413 in the API's error shape
        response = httpx.post(
            server.url, content=huge * 8, params={"conv_type_id": "x"}, headers={"x-api-key": KEY}
        )
        assert response.status_code == 413 and response.json()["statusCode"] == 413
        assert time.perf_counter() - started < 30
        doc = httpx.get(server.base_url + "/openapi.json").json()
        operation = doc["paths"]["/v1/compute_ihc"]["post"]
        (conv_type,) = [p for p in operation["parameters"] if p["name"] == "conv_type_id"]
        assert conv_type["required"] is True
        assert operation["security"] and {"400", "403", "413", "429"} <= set(operation["responses"])
