"""growthflow attribution as an Airflow 3 DAG: one task per step of the pipeline.

create_tables -> build_journeys -> plan_batches -> attribute (mapped, one instance per group
of batches) -> report (declares the channel_reporting Asset) -> export, with check_inputs and
costs (the whole-table reads, independent of the journeys) running beside the journey tasks.
Once channel_reporting has rows, a run refreshes only the days it touched (and [start -
report_window_days, end]): costs then has nothing to do and report reads those days only;
``full_report`` rebuilds it all.
Tasks call the same step functions as ``growthflow attribution run``; data passes through
the database (staging tables keyed by growthflow's run id); XCom carries only that run id,
counts, skipped-row reports and batch numbers.

Configuration, the way Airflow users keep it:
- the database: the connection ``growthflow_db`` (Postgres, or SQLite with the file path as
  host; extra ``{"schema": "..."}`` for a PostgreSQL schema), else ``GROWTHFLOW_DATABASE_URL``;
- the IHC API: the variable ``growthflow_ihc``, JSON with ``API_KEY``, ``CONV_TYPE_ID`` and
  optionally ``MAX_CUSTOMER_JOURNEYS``, ``MAX_SESSIONS``, ``START_DATE``, ``END_DATE``, ``API_URL``,
  else the ``GROWTHFLOW_IHC_*`` environment variables. The key is masked in task logs.

``start``/``end`` default to the run's data interval: a daily run processes yesterday's
conversions, a backfill each day in turn.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager
from datetime import date, timedelta

import pendulum
from _growthflow import engine as _engine
from airflow.sdk import Asset, Param, Variable, dag, get_current_context, task
from airflow.sdk.log import mask_secret

CHANNEL_REPORTING = Asset("growthflow://attribution/channel_reporting")
BATCHES_PER_TASK = 10
MODELS = [
    "ihc",
    "linear",
    "first-touch",
    "last-touch",
    "position-based",
    "time-decay",
    "markov",
    "shapley",
]


def _optional_day(description: str) -> Param:
    """A date parameter that may be left empty."""
    return Param(None, type=["null", "string"], format="date", description=description)


def _ihc_variable() -> dict:
    """The growthflow_ihc variable (the seeds' JSON), or {}; the key is masked in logs."""
    values = Variable.get("growthflow_ihc", default=None, deserialize_json=True) or {}
    if values.get("API_KEY"):
        mask_secret(values["API_KEY"])
    return values


def _api_config(force: bool = False):
    """The variable's values over the GROWTHFLOW_IHC_* environment."""
    from growthflow.attribution.ihc_client import api_config_from_settings
    from growthflow.settings import load_settings

    ihc = _ihc_variable()
    config = api_config_from_settings(
        load_settings(),
        api_key=ihc.get("API_KEY"),
        conv_type_id=ihc.get("CONV_TYPE_ID"),
        api_url=ihc.get("API_URL"),
        force=force,
    )
    mask_secret(config.api_key.get_secret_value())
    return config


@contextmanager
def _working_on(gf_run: str):
    """The database, with the run's heartbeat going while a task works on it (a run whose
    tasks all stopped beating for 30 minutes is reclaimed by the next run)."""
    from growthflow.attribution.runs import heartbeat

    engine = _engine()
    with heartbeat(engine, gf_run):
        yield engine


def _date_range(params: dict, context, ihc: dict) -> tuple[date, date]:
    start = params.get("start") or ihc.get("START_DATE")
    end = params.get("end") or ihc.get("END_DATE")
    interval_start = context.get("data_interval_start")
    interval_end = context.get("data_interval_end")
    if not start:
        start = (interval_start or pendulum.now("UTC")).date()
    if not end:
        if (
            interval_start is not None
            and interval_end is not None
            and interval_end > interval_start
        ):
            end = (interval_end - timedelta(microseconds=1)).date()
        else:
            end = (interval_end or pendulum.now("UTC")).date()
    as_date = lambda value: value if isinstance(value, date) else date.fromisoformat(str(value))  # noqa: E731
    return as_date(start), as_date(end)


@dag(
    dag_id="growthflow_attribution",
    schedule="@daily",
    start_date=pendulum.datetime(2023, 9, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["growthflow", "attribution"],
    params={
        "start": _optional_day("First conv_date (default: the data interval)."),
        "end": _optional_day("Last conv_date, inclusive (default: the data interval)."),
        "provider": Param("local", enum=["local", "ihc-api"]),
        "model": Param("ihc", enum=MODELS, description="Model of the local provider."),
        "max_journeys": Param(100, type="integer", minimum=1),
        "max_sessions": Param(3000, type="integer", minimum=1),
        "max_journey_sessions": Param(100, type="integer", minimum=1),
        "lookback_days": Param(None, type=["null", "integer"], minimum=1),
        "order": Param(1, type="integer", minimum=1, maximum=4, description="markov: order."),
        "shapley_value": Param("exact", enum=["exact", "subset"], description="shapley: v(S)."),
        "train_start": _optional_day("markov/shapley: first day of the non-converting paths."),
        "train_end": _optional_day("markov/shapley: their last day (default: end)."),
        "full_report": Param(False, type="boolean", description="Rebuild all of the report."),
        "report_window_days": Param(
            0, type="integer", minimum=0, description="Also refresh the costs of N days before."
        ),
        "csv_path": Param(None, type=["null", "string"], description="Export the report here."),
        "force": Param(
            False,
            type="boolean",
            description="Recompute (local) or resend (IHC API) journeys whose stored "
            "attribution is up to date.",
        ),
    },
    doc_md=__doc__,
)
def growthflow_attribution():
    @task
    def create_tables() -> str:
        """Create missing tables, validate the settings, and record the run."""
        from growthflow.attribution import schema
        from growthflow.attribution.pipeline import (
            RunConfig,
            new_run_id,
            start_run,
            with_report_mode,
        )
        from growthflow.attribution.runs import reclaim_abandoned

        context = get_current_context()
        params = context["params"]
        ihc = {}
        if params["provider"] == "ihc-api":
            ihc = _ihc_variable()
            _api_config()  # fail here, before any work, when the key or conv type is missing
        start, end = _date_range(params, context, ihc)
        config = RunConfig.build(
            start=start,
            end=end,
            model=params["model"],
            provider=params["provider"],
            max_journeys=ihc.get("MAX_CUSTOMER_JOURNEYS") or params["max_journeys"],
            max_sessions=ihc.get("MAX_SESSIONS") or params["max_sessions"],
            max_journey_sessions=params["max_journey_sessions"],
            lookback_days=params["lookback_days"],
            full_report=params["full_report"],
            report_window_days=params["report_window_days"],
            order=params["order"],
            shapley_value=params["shapley_value"],
            train_start=params["train_start"],
            train_end=params["train_end"],
        )
        engine = _engine()
        schema.init_db(engine, inputs=False)
        reclaim_abandoned(engine)  # runs killed on the way: marked, their staging deleted
        config = with_report_mode(engine, config)  # no report yet: a full one
        gf_run = new_run_id()
        start_run(engine, gf_run, config)
        return gf_run

    @task
    def build_journeys(gf_run: str) -> dict:
        from dataclasses import asdict

        from growthflow.attribution.journeys import build_journeys as build
        from growthflow.attribution.pipeline import load_run_config
        from growthflow.attribution.rules import InputRules

        with _working_on(gf_run) as engine:
            config = load_run_config(engine, gf_run)
            stats = build(
                engine,
                gf_run,
                config.start,
                config.end,
                rules=InputRules.for_engine(engine),
                max_journey_sessions=config.max_journey_sessions,
                lookback_days=config.lookback_days,
            )
            return asdict(stats)

    @task
    def plan_batches(gf_run: str, _journeys: dict) -> list[list[int]]:
        """Batch numbers, grouped: one mapped attribute task per group."""
        from growthflow.attribution.batches import plan_batches as plan
        from growthflow.attribution.pipeline import load_run_config

        with _working_on(gf_run) as engine:
            config = load_run_config(engine, gf_run)
            numbers = plan(
                engine, gf_run, max_journeys=config.max_journeys, max_sessions=config.max_sessions
            )
            return [
                numbers[i : i + BATCHES_PER_TASK] for i in range(0, len(numbers), BATCHES_PER_TASK)
            ]

    @task
    def train(gf_run: str, _journeys: dict) -> dict | None:
        """markov and shapley: learn each channel's credit from the run's paths (the other
        models have nothing to learn)."""
        from dataclasses import asdict

        from growthflow.attribution.datadriven import DATA_DRIVEN, train_model
        from growthflow.attribution.pipeline import load_run_config
        from growthflow.attribution.rules import InputRules

        with _working_on(gf_run) as engine:
            config = load_run_config(engine, gf_run)
            if config.model not in DATA_DRIVEN:
                return None
            stats = train_model(engine, gf_run, config, InputRules.for_engine(engine))
            return json.loads(json.dumps(asdict(stats), default=str))

    @task(
        retries=3,
        retry_delay=timedelta(seconds=30),
        retry_exponential_backoff=True,
        map_index_template="{{ task.op_kwargs['batch_group'][0] }}",
    )
    def attribute(gf_run: str, batch_group: list[int], _trained: dict | None) -> dict:
        """Attribute some batches; rerunning replaces their rows by key (never duplicates)."""
        from growthflow.attribution.attribute import attribute_batches
        from growthflow.attribution.pipeline import load_run_config, local_provider

        force = bool(get_current_context()["params"].get("force"))
        with _working_on(gf_run) as engine:
            config = load_run_config(engine, gf_run)
            if config.provider == "ihc-api":
                from growthflow.attribution.ihc_client import attribute_with_api

                stats = asyncio.run(
                    attribute_with_api(
                        engine,
                        gf_run,
                        batch_group,
                        _api_config(force),
                        max_journeys=config.max_journeys,
                        max_sessions=config.max_sessions,
                    )
                )
                if stats.failures:  # stored journeys are skipped when the task is retried
                    listed = "; ".join(f"{c}: {r}" for c, r in stats.failures[:10])
                    raise RuntimeError(f"{len(stats.failures)} conversion(s) failed: {listed}")
                return {
                    "rows": stats.rows_written,
                    "requests": stats.requests,
                    "skipped": stats.journeys_skipped,
                }
            provider = local_provider(engine, gf_run, config)
            stats = attribute_batches(engine, gf_run, batch_group, provider, recompute=force)
            return {
                "rows": stats.rows_written,
                "batches": stats.batches,
                "unchanged": stats.unchanged,  # journeys whose stored attribution was kept
            }

    @task
    def check_inputs(gf_run: str) -> list[dict]:
        """Count (and log the first ids of) the input rows the run skips, per reason."""
        from dataclasses import asdict

        from growthflow.attribution.pipeline import load_run_config
        from growthflow.attribution.quality import check_costs, check_inputs, log_skipped
        from growthflow.attribution.rules import InputRules

        with _working_on(gf_run) as engine:
            config = load_run_config(engine, gf_run)
            rules = InputRules.for_engine(engine)
            skipped = check_inputs(engine, rules, config.start, config.end, full=config.full_report)
            if config.full_report:  # an incremental report checks the cost rows it reads
                skipped += check_costs(engine, rules)
            log_skipped(skipped)
            return [asdict(s) for s in skipped]

    @task
    def costs(gf_run: str) -> list[dict]:
        """For a full report, stage every session's cost per channel and day (reads the input
        tables only); returns the cost rows it cannot report (their session_id is in no
        session). An incremental report reads its days' costs itself."""
        from dataclasses import asdict

        from growthflow.attribution.costs import aggregate_costs
        from growthflow.attribution.pipeline import load_run_config
        from growthflow.attribution.quality import log_skipped
        from growthflow.attribution.rules import InputRules

        with _working_on(gf_run) as engine:
            if not load_run_config(engine, gf_run).full_report:
                return []
            stats = aggregate_costs(engine, gf_run, InputRules.for_engine(engine))
            log_skipped(stats.skipped)
            return [asdict(s) for s in stats.skipped]

    @task(outlets=[CHANNEL_REPORTING], trigger_rule="none_failed")
    def report(gf_run: str, _attributed, cost_skipped: list[dict]) -> dict:
        from dataclasses import asdict

        from growthflow.attribution.pipeline import load_run_config
        from growthflow.attribution.quality import log_skipped
        from growthflow.attribution.report import (
            rebuild_channel_reporting,
            refresh_channel_reporting,
            window_days,
        )
        from growthflow.attribution.rules import InputRules

        with _working_on(gf_run) as engine:
            config = load_run_config(engine, gf_run)
            rules = InputRules.for_engine(engine)
            if config.full_report:
                report = rebuild_channel_reporting(engine, gf_run, rules)
            else:
                days = window_days(config.start, config.end, config.report_window_days)
                report = refresh_channel_reporting(engine, gf_run, rules, days)
            log_skipped(report.skipped)
            return {
                "rows": report.rows,
                "skipped": cost_skipped + [asdict(s) for s in report.skipped],
            }

    @task(trigger_rule="none_failed")
    def export(gf_run: str, report: dict, journeys: dict, checked: list[dict]) -> dict:
        from growthflow.attribution.export import export_csv
        from growthflow.attribution.pipeline import RunSummary, finish_run
        from growthflow.attribution.quality import SkippedRows

        with _working_on(gf_run) as engine:
            csv_path = get_current_context()["params"].get("csv_path")
            rows = export_csv(engine, csv_path) if csv_path else None
            skipped = [SkippedRows(**s) for s in checked + report["skipped"]]
            summary = RunSummary(
                run_id=gf_run,
                report_rows=report["rows"],
                csv_rows=rows,
                skipped=skipped,
                **journeys,
            )
            finish_run(engine, summary, "succeeded")
            return {"report_rows": report["rows"], "csv_rows": rows, "csv_path": csv_path}

    # The checks and the cost scan read only the input tables: they run beside the journeys.
    gf_run = create_tables()
    checked = check_inputs(gf_run)
    cost_skipped = costs(gf_run)
    journeys = build_journeys(gf_run)
    groups = plan_batches(gf_run, journeys)
    trained = train(gf_run, journeys)
    attributed = attribute.partial(gf_run=gf_run, _trained=trained).expand(batch_group=groups)
    export(gf_run, report(gf_run, attributed, cost_skipped), journeys, checked)


growthflow_attribution_dag = growthflow_attribution()

if __name__ == "__main__":
    import sys

    growthflow_attribution_dag.test(run_conf=json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
