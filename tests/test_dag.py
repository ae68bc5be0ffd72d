"""The Airflow 3 DAG, run with `airflow dags test` (dag.test()) in a throwaway AIRFLOW_HOME with
a SQLite metadata database. Airflow reads its configuration at import, so it runs in
subprocesses, never in the test process."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from growthflow.attribution.demo import generate_demo_data
from growthflow.attribution.ihc_server import create_app
from growthflow.database import create_engine
from growthflow.server import BackgroundServer

from conftest import SHARED

# Only looked up, not imported: importing Airflow here would create ~/airflow (issue 10 item 15).
if importlib.util.find_spec("airflow") is None:
    pytest.skip("Airflow is installed with growthflow[airflow]", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
BIN = Path(sys.executable).parent
KEY = "dag-test-key-7Hq2-secret"


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GROWTHFLOW_", "AIRFLOW"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    migrate = subprocess.run(
        [BIN / "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    return env


def dags_test(env: dict, conf: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "airflow", "dags", "test", "growthflow_attribution", "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_dag_file_has_the_tasks_params_mapping_and_asset(airflow_env):
    script = f"""
import json
from airflow.models.dagbag import DagBag
from airflow.sdk.definitions.mappedoperator import MappedOperator
bag = DagBag(dag_folder={str(DAGS)!r}, include_examples=False)
dag = bag.dags["growthflow_attribution"]
print(json.dumps({{
    "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "all_dags": sorted(bag.dags),
    "tasks": sorted(dag.task_ids),
    "mapped": [t.task_id for t in dag.tasks if isinstance(t, MappedOperator)],
    "params": sorted(dag.params.keys()),
    "outlets": [str(getattr(o, "uri", o)) for o in dag.get_task("report").outlets],
    "schedule": str(dag.timetable.summary), "catchup": dag.catchup,
    "max_active_runs": dag.max_active_runs,
    "retries": dag.get_task("attribute").partial_kwargs.get("retries"),
    "upstream_of_attribute": sorted(dag.get_task("attribute").upstream_task_ids),
    "upstream_of_costs": sorted(dag.get_task("costs").upstream_task_ids),
    "upstream_of_report": sorted(dag.get_task("report").upstream_task_ids),
}}))
"""
    # Airflow puts the DAGs folder on sys.path (the DAG files import _growthflow from it).
    env = {**airflow_env, "PYTHONPATH": str(DAGS)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["errors"] == {}
    assert facts["all_dags"] == [
        "growthflow_attribution",
        "growthflow_commissions",
        "growthflow_commissions_combined",
        "growthflow_vouchers",
    ]
    assert facts["tasks"] == [
        "attribute",
        "build_journeys",
        "check_inputs",
        "costs",
        "create_tables",
        "export",
        "plan_batches",
        "report",
        "train",
    ]
    assert facts["mapped"] == ["attribute"]
    assert facts["params"] == [
        "csv_path",
        "end",
        "force",
        "full_report",
        "lookback_days",
        "max_journey_sessions",
        "max_journeys",
        "max_sessions",
        "model",
        "order",
        "provider",
        "report_window_days",
        "shapley_value",
        "start",
        "train_end",
        "train_start",
    ]
    assert facts["outlets"] == ["growthflow://attribution/channel_reporting"]
    assert facts["schedule"] in ("@daily", "0 0 * * *") and facts["catchup"] is False
    assert facts["max_active_runs"] == 1 and facts["retries"] == 3
    assert facts["upstream_of_attribute"] == ["create_tables", "plan_batches", "train"]
    assert facts["upstream_of_costs"] == ["create_tables"]  # beside the journeys
    assert facts["upstream_of_report"] == ["attribute", "costs", "create_tables"]


def test_local_provider_on_sqlite_matches_the_cli(airflow_env, tmp_path):
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    engine = create_engine(db, create=True)
    generate_demo_data(engine, scale=0.02, seed=4)
    with engine.begin() as conn:  # unusable rows: counted in the run summary, not used
        conn.execute(
            sa.text(
                "INSERT INTO conversions VALUES ('bad_revenue', 'u', '2023-09-02', '10:00:00', -1)"
            )
        )
        conn.execute(sa.text("INSERT INTO session_costs VALUES ('no_such_session', 9.5)"))
    conf = {
        "start": "2023-09-01",
        "end": "2023-09-10",
        "model": "linear",
        "max_journeys": 2,
        "csv_path": str(tmp_path / "dag.csv"),
    }
    result = dags_test({**airflow_env, "GROWTHFLOW_DATABASE_URL": db}, conf)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "map_index=1" in result.stdout + result.stderr  # 2 journeys a batch: several groups
    engine = create_engine(db)
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status, summary FROM gf_runs")).one()
        staged = conn.execute(sa.text("SELECT count(*) FROM gf_journeys")).scalar()
        sums = conn.execute(
            sa.text("SELECT conv_id, SUM(ihc) FROM attribution_customer_journey GROUP BY conv_id")
        ).all()
    summary = json.loads(status[1])
    assert status[0] == "succeeded" and summary["journeys"] == len(sums) > 0
    assert [(s["table"], s["count"], s["examples"]) for s in summary["skipped"]] == [
        ("conversions", 1, ["bad_revenue"]),
        ("session_costs", 1, ["no_such_session"]),  # reported by the costs task
    ]
    assert staged == 0 and all(abs(total - 1) < 1e-12 for _, total in sums)
    cli = subprocess.run(
        [
            BIN / "growthflow",
            "attribution",
            "run",
            "--db",
            db,
            "--start",
            "2023-09-01",
            "--end",
            "2023-09-10",
            "--model",
            "linear",
            "--max-journeys",
            "2",
            "--csv",
            str(tmp_path / "cli.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert "channel_reporting refreshed" in cli.stdout  # the DAG built it: the CLI refreshes
    # ... and keeps every journey the DAG stored: the same fingerprints
    assert re.search(r"attribution rows written\s+│\s+0\s", cli.stdout), cli.stdout
    # The same report, to the last bit: sums are exact, whatever order the mapped instances
    # stored their batches in.
    dag_rows = list(csv.reader((tmp_path / "dag.csv").open()))
    cli_rows = list(csv.reader((tmp_path / "cli.csv").open()))
    assert len(dag_rows) > 1 and dag_rows == cli_rows
    # A daily DAG run refreshes its days only (the costs task has nothing to do): the inputs
    # did not change, so the report is the same.
    daily = {**conf, "start": "2023-09-10", "end": "2023-09-10"}
    daily["csv_path"] = str(tmp_path / "daily.csv")
    result = dags_test({**airflow_env, "GROWTHFLOW_DATABASE_URL": db}, daily)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert list(csv.reader((tmp_path / "daily.csv").open())) == cli_rows
    with engine.connect() as conn:
        last = conn.execute(sa.text("SELECT config FROM gf_runs ORDER BY started_at DESC")).first()
    assert json.loads(last[0])["full_report"] is False

    def writers() -> set[str]:  # the runs that stored the last day's attribution
        with engine.connect() as conn:
            return set(
                conn.execute(
                    sa.text(
                        "SELECT DISTINCT a.run_id FROM gf_attributed_conversions a JOIN "
                        "conversions c ON c.conv_id = a.conv_id WHERE c.conv_date = '2023-09-10'"
                    )
                ).scalars()
            )

    kept = writers()
    assert len(kept) == 1  # written once (by the first DAG run), kept by the CLI and daily runs
    result = dags_test({**airflow_env, "GROWTHFLOW_DATABASE_URL": db}, {**daily, "force": True})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    with engine.connect() as conn:
        forced = conn.execute(
            sa.text("SELECT run_id FROM gf_runs ORDER BY started_at DESC")
        ).first()
    assert writers() == {forced[0]} != kept  # --force: rewritten by the forced run
    assert list(csv.reader((tmp_path / "daily.csv").open())) == cli_rows


def test_markov_on_sqlite_matches_the_cli(airflow_env, tmp_path):
    """The train task learns the credits once; every mapped attribute task uses them."""
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    engine = create_engine(db, create=True)
    generate_demo_data(engine, scale=0.02, seed=9)
    conf = {"start": "2023-09-03", "end": "2023-09-09", "model": "markov", "order": 2}
    conf |= {"max_journeys": 1, "lookback_days": 2}
    result = dags_test({**airflow_env, "GROWTHFLOW_DATABASE_URL": db}, conf)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "map_index=1" in result.stdout + result.stderr
    queries = {
        "credit": "SELECT channel_name, removal_effect, conversions FROM gf_model_channel_credit "
        "WHERE run_id = :r ORDER BY channel_name",
        "chain": "SELECT from_state, to_state, transitions FROM gf_markov_transitions "
        "WHERE run_id = :r ORDER BY from_state, to_state",
    }
    attribution = "SELECT conv_id, session_id, ihc FROM attribution_customer_journey ORDER BY 1, 2"

    def outcome() -> tuple[dict, list]:
        with engine.connect() as conn:
            run = conn.execute(
                sa.text("SELECT run_id FROM gf_runs ORDER BY started_at DESC")
            ).scalar()
            stored = {
                name: conn.execute(sa.text(sql), {"r": run}).all() for name, sql in queries.items()
            }
            return stored, conn.execute(sa.text(attribution)).all()

    dag_stored, dag_attribution = outcome()
    assert len(dag_stored["credit"]) > 3 and len(dag_stored["chain"]) > 10
    cli = subprocess.run(
        [BIN / "growthflow", "attribution", "run", "--db", db, "--start", "2023-09-03"]
        + ["--end", "2023-09-09", "--model", "markov", "--order", "2", "--lookback-days", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert outcome() == (dag_stored, dag_attribution)


def test_ihc_api_provider_on_postgres_from_connection_and_variable(airflow_env, postgres_url):
    schema = f"dag_{uuid.uuid4().hex[:8]}"
    engine = create_engine(postgres_url, schema=schema, create=True)
    generate_demo_data(engine, scale=0.02, seed=6)
    url = sa.engine.make_url(postgres_url)
    conn_uri = f"postgresql://{url.username}@{url.host}:{url.port}/{url.database}?schema={schema}"
    app = create_app(api_key=KEY, max_sessions=200, fault_rate=0.2, seed=2, retry_after_s=0.05)
    try:
        with BackgroundServer(app) as server:
            env = {
                **airflow_env,
                "AIRFLOW_CONN_GROWTHFLOW_DB": conn_uri,
                "AIRFLOW_VAR_GROWTHFLOW_IHC": json.dumps(
                    {
                        "API_KEY": KEY,
                        "CONV_TYPE_ID": "data_challenge",
                        "API_URL": server.url,
                        "MAX_CUSTOMER_JOURNEYS": 5,
                        "MAX_SESSIONS": 200,
                        "START_DATE": "2023-09-01",
                        "END_DATE": "2023-09-10",
                    }
                ),
            }
            result = dags_test(env, {"provider": "ihc-api"})
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert KEY not in result.stdout + result.stderr  # masked in task logs
        with engine.connect() as conn:
            models = (
                conn.execute(sa.text("SELECT DISTINCT model FROM gf_attributed_conversions"))
                .scalars()
                .all()
            )
            journeys = json.loads(conn.execute(sa.text("SELECT summary FROM gf_runs")).scalar())
            attributed = conn.execute(
                sa.text("SELECT COUNT(DISTINCT conv_id) FROM attribution_customer_journey")
            ).scalar()
        assert models == ["ihc-api:data_challenge"]
        assert attributed == journeys["journeys"] > 0
        assert app.state.stats.max_sessions_seen <= 200 and app.state.stats.max_journeys_seen <= 5
    finally:
        engine.dispose()
        admin = sa.create_engine(postgres_url)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_vouchers_dag_runs_extract_clean_segment_publish(airflow_env, tmp_path):
    source = tmp_path / "v.csv"
    source.write_text(
        "timestamp,country_code,last_order_ts,first_order_ts,total_orders,voucher_amount\n"
        "2018-06-01 10:00:00,Peru,2018-04-20,2017-01-01 00:00:00,2.0,2640.0\n"
        "2018-06-01 11:00:00, peru ,2018-04-21,2017-01-01 00:00:00,7.0,3520.0\n"
        "2018-06-01 12:00:00,Chile,2018-04-21,2017-01-01 00:00:00,7.0,3520.0\n"
    )
    db = f"sqlite:///{tmp_path / 'vouchers.db'}"
    env = {**airflow_env, "GROWTHFLOW_DATABASE_URL": db}
    result = subprocess.run(
        [
            BIN / "airflow",
            "dags",
            "test",
            "growthflow_vouchers",
            "-c",
            json.dumps({"source": str(source)}),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    with create_engine(db).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT segment_name, segment, voucher_amount, voucher_count FROM voucher_segments "
                "ORDER BY 1, 2, 3"
            )
        ).all()
        summary = json.loads(conn.execute(sa.text("SELECT summary FROM gf_voucher_runs")).scalar())
    assert [tuple(r) for r in rows] == [
        ("frequent_segment", "0-4", 2640.0, 1),
        ("frequent_segment", "5-13", 3520.0, 1),
        ("recency_segment", "30-60", 2640.0, 1),
        ("recency_segment", "30-60", 3520.0, 1),
    ]
    assert summary["clean"]["other_country"] == 1 and summary["clean"]["kept"] == 2


def _landing_file(path: Path, text: str, *, age_s: float = 3600) -> None:
    """A landing file written ``age_s`` ago (settled: the run loads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    then = time.time() - age_s
    os.utime(path, (then, then))


COMMISSION_FILES = {
    "deals.csv": "marketing_source,deal,comments\nA,PPC,\nB,FIXED 100,\nDefault,FIXED 0,\n",
    "voluum_mapper.csv": "voluum_brand,marketing_source\nBrand A,A\nBrand B,B\n",
    "central_mapping.csv": "variants,std_operator,country\nOp One,OP1,US\nOp Two,OP2,FR\n",
    "routy/2024-05-01.csv": "date,marketing_source,operator,country,countryCode,raw_earnings,"
    "visits,signups\n2024-05-01,A,Op One,US,NULL,10.5,1,0\n2024-05-01,B,op two,FR,NULL,n/a,1,0\n"
    "2024-05-01,B,Op Two,FR,NULL,7,1,0\n",
    "voluum/2024-05-01.csv": "date,voluum_brand,clicks\n2024-05-01,Brand A,3\n",
    "manual/2024-05-01.csv": "date,marketing_source,operator,raw_earnings,visits,signups\n"
    "2024-05-01,A,Op Two,2,0,0\n",
}
LATE_FILES = {  # the run's day: they arrive while the sensors wait
    "routy/2024-05-02.csv": "date,marketing_source,operator,country,countryCode,raw_earnings,"
    "visits,signups\n2024-05-02,A,Op One,US,NULL,1,1,0\n",
    "voluum/2024-05-02.csv": "date,voluum_brand,clicks\n2024-05-02,Brand B,4\n",
}


def _gold(db: str) -> dict:
    """The gold tables and the quarantine (without file ids, which follow the load order)."""
    queries = {
        table: f"SELECT * FROM {table}"  # noqa: S608 - constant names
        for table in (
            "commission_source_daily",
            "commission_operator_monthly",
            "scraper_daily_amounts",
        )
    }
    queries["commission_quarantine"] = "SELECT feed, line, reason, raw FROM commission_quarantine"
    with create_engine(db).connect() as conn:
        return {
            name: sorted(tuple(map(str, row)) for row in conn.execute(sa.text(query)))
            for name, query in queries.items()
        }


def _cli_gold(db_path: Path, landing: Path, archive: Path) -> dict:
    """``growthflow commissions run`` on a landing zone; its gold tables."""
    db = f"sqlite:///{db_path}"
    cli = subprocess.run(
        [
            BIN / "growthflow",
            "commissions",
            "run",
            "--db",
            db,
            "--landing",
            str(landing),
            "--archive",
            str(archive),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    return _gold(db)


def test_commissions_dag_waits_for_the_day_then_loads_validates_computes_archives(
    airflow_env, tmp_path
):
    landing, archive = tmp_path / "landing", tmp_path / "archive"
    for name, text in COMMISSION_FILES.items():
        _landing_file(landing / name, text)
    db = f"sqlite:///{tmp_path / 'commissions.db'}"

    conf = {"landing": str(landing), "archive": str(archive), "poke_seconds": 1}
    dag_test = subprocess.Popen(
        [
            BIN / "airflow",
            "dags",
            "test",
            "growthflow_commissions",
            "2024-05-02",
            "-c",
            json.dumps(conf),
        ],
        env={**airflow_env, "GROWTHFLOW_DATABASE_URL": db},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    timer = threading.Timer(600, dag_test.kill)
    timer.start()
    lines = []
    try:
        for line in dag_test.stdout:
            lines.append(line)
            if "running trigger in line" in line:  # a sensor deferred: the files arrive
                for name, text in LATE_FILES.items():
                    if not (landing / name).exists():
                        _landing_file(landing / name, text)
        dag_test.wait()
    finally:
        timer.cancel()
    log = "".join(lines)
    assert dag_test.returncode == 0, log[-3000:]
    assert "waiting up to 6.0 h for" in log
    assert "running trigger in line" in log  # the sensor deferred, its trigger saw the file
    for task_id in (
        "wait_routy",
        "wait_voluum",
        "load_routy",
        "load_manual",
        "load_scrapers",
        "load_deals",
        "validate",
        "gold",
        "archive",
    ):
        assert f"task_id={task_id}" in log, task_id
    assert "task_id=wait_manual" not in log and "task_id=wait_scrapers" not in log  # optional
    assert not list(landing.rglob("*.csv"))  # everything archived
    dag_gold = _gold(db)
    assert ("events", "2024-05-02", "A") in {r[:3] for r in dag_gold["commission_source_daily"]}
    assert len(dag_gold["commission_quarantine"]) == 1  # the n/a row
    # The same files through the CLI give the same gold tables.
    again = tmp_path / "again"
    for name, text in {**COMMISSION_FILES, **LATE_FILES}.items():
        _landing_file(again / name, text)
    assert _cli_gold(tmp_path / "cli.db", again, tmp_path / "cli_archive") == dag_gold


def _dags_test(env: dict, dag_id: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "airflow", "dags", "test", dag_id, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_combined_scope_runs_as_its_own_dag_scheduled_on_the_gold_assets(airflow_env, tmp_path):
    script = f"""
import json
from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS)!r}, include_examples=False)
main, combined = bag.dags["growthflow_commissions"], bag.dags["growthflow_commissions_combined"]
print(json.dumps({{
    "gold_outlets": sorted(o.uri for o in main.get_task("gold").outlets),
    "schedule": sorted(a.uri for _key, a in combined.timetable.asset_condition.iter_assets()),
    "tasks": sorted(combined.task_ids),
    "outlets": sorted(o.uri for o in combined.get_task("combined").outlets),
}}))
"""
    env = {**airflow_env, "PYTHONPATH": str(DAGS)}
    facts = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert facts.returncode == 0, facts.stderr[-2000:]
    facts = json.loads(facts.stdout.strip().splitlines()[-1])
    gold_assets = [
        f"growthflow://commissions/{t}"
        for t in ("commission_operator_monthly", "commission_source_daily", "scraper_daily_amounts")
    ]
    assert facts["gold_outlets"] == facts["schedule"] == gold_assets
    assert facts["tasks"] == ["combined"]
    # its own Assets: the same ones would schedule it again after every run
    assert facts["outlets"] == [
        "growthflow://commissions/commission_operator_monthly/combined",
        "growthflow://commissions/commission_source_daily/combined",
    ]

    landing, archive = tmp_path / "landing", tmp_path / "archive"
    for name, text in {**COMMISSION_FILES, **LATE_FILES}.items():
        _landing_file(landing / name, text)
    db = f"sqlite:///{tmp_path / 'commissions.db'}"
    env = {**airflow_env, "GROWTHFLOW_DATABASE_URL": db}
    conf = {"landing": str(landing), "archive": str(archive), "combined": "own_dag"}
    main = _dags_test(env, "growthflow_commissions", "2024-05-02", "-c", json.dumps(conf))
    assert main.returncode == 0, (main.stdout + main.stderr)[-3000:]
    gold = _gold(db)
    scopes = {row[0] for row in gold["commission_source_daily"]}
    assert scopes == {"events", "scrapers"}  # combined waits for its own DAG
    with create_engine(db).connect() as conn:
        stale = conn.execute(sa.text("SELECT scope, day FROM gf_commission_stale_days")).all()
    assert sorted(map(tuple, stale)) == [("combined", "2024-05-01"), ("combined", "2024-05-02")]

    combined = _dags_test(env, "growthflow_commissions_combined")
    assert combined.returncode == 0, (combined.stdout + combined.stderr)[-3000:]
    again = tmp_path / "again"
    for name, text in {**COMMISSION_FILES, **LATE_FILES}.items():
        _landing_file(again / name, text)
    assert _gold(db) == _cli_gold(tmp_path / "cli.db", again, tmp_path / "cli_archive")
    with create_engine(db).connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM gf_commission_stale_days")).scalar() == 0


SAMPLES = SHARED / "commissions" / "test_case_data"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/datasets is absent")
def test_commissions_dag_on_the_sample_files_equals_the_cli(airflow_env, tmp_path):
    """The three sample drops, final state, through dag.test() and through the CLI."""
    for target in ("dag", "cli"):
        for drop in ("data_1a", "data_1b", "data_2"):
            for path in sorted((SAMPLES / drop).rglob("*.csv")):
                name = path.relative_to(SAMPLES / drop)
                _landing_file(tmp_path / target / "landing" / name, path.read_text())
    conf = {"landing": str(tmp_path / "dag" / "landing"), "archive": str(tmp_path / "dag" / "a")}
    db = f"sqlite:///{tmp_path / 'dag.db'}"
    result = subprocess.run(
        [
            BIN / "airflow",
            "dags",
            "test",
            "growthflow_commissions",
            "2024-03-28",
            "-c",
            json.dumps(conf),
        ],
        env={**airflow_env, "GROWTHFLOW_DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    gold = _gold(db)
    cli_gold = _cli_gold(tmp_path / "cli.db", tmp_path / "cli" / "landing", tmp_path / "cli" / "a")
    assert gold == cli_gold and len(gold["scraper_daily_amounts"]) > 0
    assert not list((tmp_path / "dag" / "landing").rglob("*.csv"))


def test_the_suite_writes_nothing_to_the_home_directory(tmp_path):
    """Issue 10 item 15: importing Airflow in the test process created ~/airflow/logs."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", str(Path(__file__))],
        env={**env, "HOME": str(home)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not (home / "airflow").exists()


def test_the_readme_airflow_commands_are_makefile_targets():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("airflow", "airflow-trigger", "airflow-dags-test"):
        assert f"make {target} " in readme and f"\n{target}: " in makefile
    assert "AIRFLOW_HOME=$(CURDIR)/.airflow" in makefile
