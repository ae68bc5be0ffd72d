"""The attribution run: every step in order, each a plain function of its own module.

``run_attribution`` is what ``growthflow attribution run`` calls. The Airflow DAG calls the
same step functions one task each, passing the ``run_id`` that keys the staging tables.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from growthflow.attribution import schema
from growthflow.attribution.attribute import attribute_batches
from growthflow.attribution.batches import plan_batches
from growthflow.attribution.costs import CostScan, default_workers
from growthflow.attribution.datadriven import DATA_DRIVEN, CreditProvider, TrainStats, train_model
from growthflow.attribution.export import export_csv
from growthflow.attribution.journeys import build_journeys, clear_staging
from growthflow.attribution.models import JourneyBatch, get_model
from growthflow.attribution.providers import LocalProvider, Provider
from growthflow.attribution.quality import SkippedRows, check_costs, check_inputs, log_skipped
from growthflow.attribution.report import (
    ReportStats,
    full_channel_reporting,
    rebuild_channel_reporting,
    refresh_channel_reporting,
    report_is_empty,
    window_days,
)
from growthflow.attribution.rules import InputRules
from growthflow.attribution.runs import end_heartbeat, heartbeat, reclaim_abandoned, utc_now
from growthflow.database import read_only, translate_errors
from growthflow.errors import ConfigError, describe_errors
from growthflow.files import check_writable

if TYPE_CHECKING:  # the API client (httpx) is imported only by runs that use it
    from growthflow.attribution.ihc_client import ApiStats, IhcApiConfig

log = logging.getLogger(__name__)


class RunConfig(BaseModel):
    """Everything that decides a run's result (recorded in ``gf_runs.config``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: date
    end: date
    model: str = "ihc"
    params_path: Path | None = None
    max_journeys: int = Field(default=100, ge=1)
    max_sessions: int = Field(default=3000, ge=1)
    max_journey_sessions: int = Field(default=100, ge=1)
    lookback_days: int | None = Field(default=None, ge=1)
    provider: Literal["local", "ihc-api"] = "local"
    # the data-driven models (markov, shapley): the chain's order, the coalition value, and
    # the training window of the non-converting paths (default [start - lookback, end])
    order: int = Field(default=1, ge=1, le=4)
    shapley_value: Literal["exact", "subset"] = "exact"
    train_start: date | None = None
    train_end: date | None = None
    # The report: rebuilt whole, or (by default, once there is one) refreshed for the days the
    # run touched and the cost window [start - report_window_days, end].
    full_report: bool = False
    report_window_days: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.max_journey_sessions > self.max_sessions:
            raise ValueError(
                f"max_journey_sessions ({self.max_journey_sessions}) cannot exceed "
                f"max_sessions ({self.max_sessions}): a journey is never split"
            )
        if self.model not in DATA_DRIVEN:
            get_model(self.model)
        elif self.provider != "local":
            raise ValueError(f"the {self.model} model runs with the local provider only")
        if self.train_start and self.train_end and self.train_end < self.train_start:
            raise ValueError(f"train_end {self.train_end} is before train_start {self.train_start}")
        return self

    @classmethod
    def build(cls, **values) -> RunConfig:
        """Validate, turning pydantic's errors into one :class:`ConfigError` message."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"invalid run settings: {describe_errors(exc.errors())}") from None


@dataclass
class RunSummary:
    run_id: str
    conversions: int = 0
    journeys: int = 0
    sessions: int = 0
    truncated: int = 0
    without_journey: int = 0
    batches: int = 0
    rows_written: int = 0
    unchanged: int = 0  # journeys whose stored attribution was up to date (kept as stored)
    report_rows: int = 0
    # channel_reporting refreshed: (channel, day) groups and their days; None: rebuilt whole
    report_groups: int | None = None
    report_days: int | None = None
    csv_rows: int | None = None
    api: ApiStats | None = None
    model: TrainStats | None = None  # what a data-driven model learned
    skipped: list[SkippedRows] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


@contextmanager
def _timed(summary: RunSummary, step: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        summary.seconds[step] = round(time.perf_counter() - t0, 4)


def _now() -> str:
    return utc_now().isoformat()


def start_run(engine: sa.Engine, run_id: str, config: RunConfig) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(schema.runs).values(
                run_id=run_id,
                started_at=_now(),
                status="running",
                start_date=config.start.isoformat(),
                end_date=config.end.isoformat(),
                config=config.model_dump_json(),
            )
        )


def load_run_config(engine: sa.Engine, run_id: str) -> RunConfig:
    """The configuration a run was started with (steps running as separate processes, such
    as Airflow tasks, share it through ``gf_runs``)."""
    runs = schema.runs
    with read_only(engine) as conn:
        row = conn.execute(
            sa.select(runs.c.config, runs.c.status, runs.c.finished_at).where(
                runs.c.run_id == run_id
            )
        ).first()
    if row is None:
        raise ConfigError(f"no attribution run {run_id!r} in gf_runs")
    if row.status == "abandoned":  # its staging rows are gone: going on would lose work
        raise ConfigError(
            f"attribution run {run_id} was marked abandoned at {row.finished_at} (it stopped "
            "beating, and a later run deleted its staging rows): start a new run"
        )
    return RunConfig.model_validate_json(row.config)


def finish_run(engine: sa.Engine, summary: RunSummary, status: str) -> None:
    with engine.begin() as conn:
        clear_staging(conn, summary.run_id)
        end_heartbeat(conn, summary.run_id)
        conn.execute(
            sa.update(schema.runs)
            .where(schema.runs.c.run_id == summary.run_id)
            .values(finished_at=_now(), status=status, summary=summary.to_json())
        )


def run_attribution(
    engine: sa.Engine,
    config: RunConfig,
    *,
    csv_path: Path | None = None,
    provider: Provider | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_batch: Callable[[JourneyBatch], None] | None = None,
    api: IhcApiConfig | None = None,
    recompute: bool = False,
) -> RunSummary:
    """Run every step for ``config`` and return what happened.

    ``api`` configures the IHC API when ``config.provider`` is ``ihc-api``; the local
    provider runs ``config.model`` unless another ``provider`` object is given.

    The cost aggregation of a full report reads only the input tables, so it runs on a second
    connection while journeys are built and attributed (the two steps an Airflow DAG would
    run as parallel tasks). Without ``config.full_report`` (and once ``channel_reporting`` has
    rows) the report is refreshed for the days the run touched
    (:func:`growthflow.attribution.report.refresh_channel_reporting`) and the input checks
    read what the run reads. ``on_plan(n_batches)`` and ``on_batch(batch)`` report progress.
    A local model keeps the stored attribution of the journeys that did not change, unless
    ``recompute``.
    """
    if config.provider == "ihc-api" and api is None:
        raise ConfigError("the ihc-api provider needs an API key and a conv_type_id")
    if csv_path is not None:  # before any work, not after the run has committed
        check_writable(csv_path)
    if provider is None and config.provider == "local" and config.model not in DATA_DRIVEN:
        provider = LocalProvider(config.model, config.params_path)  # a bad --params: now
    summary = RunSummary(run_id=new_run_id())
    run_id = summary.run_id
    with translate_errors(engine):
        with _timed(summary, "prepare"):
            schema.init_db(engine, inputs=False)
            reclaim_abandoned(engine)
            rules = InputRules.for_engine(engine)
            config = with_report_mode(engine, config)
            start_run(engine, run_id, config)
        status = "failed"
        try:
            with heartbeat(engine, run_id):  # a killed run is told from a live one
                if not config.full_report:
                    _run_steps(
                        engine, config, summary, rules, provider, api, on_plan, on_batch, recompute
                    )
                    with _timed(summary, "report"):
                        days = window_days(config.start, config.end, config.report_window_days)
                        report = refresh_channel_reporting(engine, run_id, rules, days)
                    summary.report_rows = report.rows
                    summary.report_groups, summary.report_days = report.groups, report.days
                    summary.skipped += report.skipped
                    log_skipped(summary.skipped)
                    if csv_path is not None:
                        with _timed(summary, "export"):
                            summary.csv_rows = export_csv(engine, csv_path)
                    status = "succeeded"
                    return summary
                # A full report. The whole-table reads (the cost table's check and the cost
                # scan) do not depend on the journeys, so they run beside them on the other
                # cores, and the main thread joins the scan when its own steps are done. Leaving
                # this block waits for them, also after a failure, so nothing is staged after
                # the run cleaned up.
                started = time.perf_counter()
                scan = CostScan(engine, rules)
                background = max(1, default_workers() - 1)
                with ThreadPoolExecutor(background, thread_name_prefix="gf-scan") as pool:
                    cost_check = pool.submit(check_costs, engine, rules)
                    scanners = [pool.submit(scan.work) for _ in range(background)]
                    try:
                        _run_steps(
                            engine,
                            config,
                            summary,
                            rules,
                            provider,
                            api,
                            on_plan,
                            on_batch,
                            recompute,
                        )
                    except BaseException:
                        scan.cancel()
                        raise
                    with _timed(summary, "report"):
                        scan.work()
                        for scanner in scanners:
                            scanner.result()
                        summary.seconds["costs (parallel)"] = round(
                            time.perf_counter() - started, 4
                        )
                        cost_stats = scan.stage(run_id)
                        report = rebuild_channel_reporting(engine, run_id, rules)
                    cost_skipped = cost_check.result() + cost_stats.skipped
                summary.report_rows = report.rows
                summary.skipped += cost_skipped + report.skipped
                log_skipped(summary.skipped)
                if csv_path is not None:
                    with _timed(summary, "export"):
                        summary.csv_rows = export_csv(engine, csv_path)
                status = "succeeded"
        finally:
            _finish_quietly(engine, summary, status)
    return summary


def _run_steps(
    engine: sa.Engine,
    config: RunConfig,
    summary: RunSummary,
    rules: InputRules,
    provider: Provider | None,
    api: IhcApiConfig | None,
    on_plan: Callable[[int], None] | None,
    on_batch: Callable[[JourneyBatch], None] | None,
    recompute: bool = False,
) -> None:
    """Check inputs, build journeys, plan batches and attribute them."""
    run_id = summary.run_id
    # The input checks only read: they run on another thread (and core) while the journeys
    # are staged, and the run waits for them before it attributes anything. On SQLite, beside
    # a full report's cost scan (whose threads keep the other cores busy), they run first:
    # 11.4-11.8 s against 11.5-12.8 s for a first run on the dense benchmark shape. On
    # PostgreSQL beside still paid: 12.5-13.9 s against 15.2-17.5 s run first.
    first = config.full_report and engine.dialect.name == "sqlite"

    def check() -> list[SkippedRows]:
        with _timed(summary, "check inputs" if first else "check inputs (parallel)"):
            return check_inputs(engine, rules, config.start, config.end, full=config.full_report)

    with ThreadPoolExecutor(1, thread_name_prefix="gf-check") as pool:
        checked = pool.submit(check)
        if first:
            checked.result()
        with _timed(summary, "journeys"):
            stats = build_journeys(
                engine,
                run_id,
                config.start,
                config.end,
                rules=rules,
                max_journey_sessions=config.max_journey_sessions,
                lookback_days=config.lookback_days,
            )
        summary.skipped = checked.result()
    summary.conversions = stats.conversions
    summary.journeys = stats.journeys
    summary.sessions = stats.sessions
    summary.truncated = stats.truncated
    summary.without_journey = stats.without_journey
    with _timed(summary, "batches"):
        batch_nos = plan_batches(
            engine, run_id, max_journeys=config.max_journeys, max_sessions=config.max_sessions
        )
    summary.batches = len(batch_nos)
    if config.model in DATA_DRIVEN and config.provider == "local":
        with _timed(summary, "train"):
            summary.model = train_model(engine, run_id, config, rules)
    if provider is None and config.provider == "local":
        provider = local_provider(engine, run_id, config)
    if on_plan is not None:
        on_plan(len(batch_nos))
    with _timed(summary, "attribute"):
        if config.provider == "ihc-api":
            from growthflow.attribution.ihc_client import attribute_with_api

            summary.api = asyncio.run(
                attribute_with_api(
                    engine,
                    run_id,
                    batch_nos,
                    api,
                    max_journeys=config.max_journeys,
                    max_sessions=config.max_sessions,
                    on_batch=on_batch,
                )
            )
            summary.rows_written = summary.api.rows_written
        else:
            attributed = attribute_batches(
                engine, run_id, batch_nos, provider, on_batch=on_batch, recompute=recompute
            )
            summary.rows_written = attributed.rows_written
            summary.unchanged = attributed.unchanged


def local_provider(engine: sa.Engine, run_id: str, config: RunConfig) -> Provider:
    """The in-process provider of a run: a rule-based model, or the credits a data-driven
    model's training step stored for the run."""
    if config.model in DATA_DRIVEN:
        return CreditProvider(engine, run_id, config.model)
    return LocalProvider(config.model, config.params_path)


def update_report(engine: sa.Engine, *, full: bool = False) -> ReportStats:
    """``growthflow attribution report``: refresh the stale days of channel_reporting, or
    (``full``, or when it has no rows) rebuild all of it, without attributing anything."""
    run_id = "report-" + new_run_id()
    with translate_errors(engine):
        schema.init_db(engine, inputs=False)
        rules = InputRules.for_engine(engine)
        try:
            if full or report_is_empty(engine):
                report = full_channel_reporting(engine, run_id, rules)
            else:
                report = refresh_channel_reporting(engine, run_id, rules)
        finally:
            with engine.begin() as conn:
                clear_staging(conn, run_id)
    log_skipped(report.skipped)
    return report


def with_report_mode(engine: sa.Engine, config: RunConfig) -> RunConfig:
    """The config with ``full_report`` set when there is no report to refresh yet."""
    if config.full_report or not report_is_empty(engine):
        return config
    return config.model_copy(update={"full_report": True})


def _finish_quietly(engine: sa.Engine, summary: RunSummary, status: str) -> None:
    """Record the outcome; after a failure, never let bookkeeping hide the original error."""
    try:
        finish_run(engine, summary, status)
    except Exception:
        if status == "succeeded":
            raise
        log.warning("could not record the failed run %s", summary.run_id, exc_info=True)
