"""growthflow commissions as an Airflow 3 DAG: landing zone -> bronze -> silver -> gold -> archive.

The tasks come from the feed configuration (``GROWTHFLOW_COMMISSIONS_SOURCES``, else the
built-in ``feeds.yaml``), read when the DAG file is parsed:
- ``wait_<feed>`` for every required daily feed: a deferrable sensor that waits (in the
  triggerer, holding no worker slot) for ``<landing>/<feed>/<day>.csv``, or finds that day's
  file loaded already, for up to ``wait_hours``; then it gives up as *skipped* and the run goes
  on with what has landed (the gold step records the missing file as a warning). Optional
  feeds have no sensor and never block;
- ``load_<feed>`` (bronze) for every feed: loads that feed's complete files not loaded yet,
  whatever their day (a backlog is loaded too);
- ``validate`` (silver), ``gold`` (promote and recompute the affected days; declares the gold
  tables as Assets), ``archive``.

A second DAG, ``growthflow_commissions_combined``, is scheduled on those Assets: it writes the
``combined`` scope of the days the gold task left stale for it. With ``combined`` = ``inline``
(the default) the gold task writes every scope and that DAG finds nothing to do; with
``own_dag`` the gold task writes events and scrapers only (sooner), and combined follows in
its own run, in one transaction. Until it has run, the combined rows of those days are the
previous ones (``gf_commission_stale_days`` lists the days waiting).
Each task calls a step function of ``growthflow.commissions.pipeline``, under the same run
lock as ``growthflow commissions run``; the state of each file in ``commission_files`` says
what is left to do, so a task retried after a crash finishes exactly the missing work.

Configuration: params, else the variable ``growthflow_commissions`` (JSON with ``LANDING``,
``ARCHIVE``, ``WAIT_HOURS``, ``COMBINED``), else ``GROWTHFLOW_COMMISSIONS_LANDING`` /
``_ARCHIVE``. The database is found as for the other DAGs (``_growthflow.engine``). The day a
run waits for is its data interval's start (``day`` param to choose another).
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pendulum
from _growthflow import engine as _engine
from airflow.sdk import Asset, BaseSensorOperator, Param, Variable, dag, get_current_context, task

from growthflow.commissions.config import load_config

SOURCES = os.environ.get("GROWTHFLOW_COMMISSIONS_SOURCES") or None
CONFIG = load_config(SOURCES)
GOLD_ASSETS = [
    Asset(f"growthflow://commissions/{table}")
    for table in ("commission_source_daily", "commission_operator_monthly", "scraper_daily_amounts")
]
COMBINED_ASSETS = [
    Asset(f"growthflow://commissions/{table}/combined")
    for table in ("commission_source_daily", "commission_operator_monthly")
]
COMBINED_MODES = ("inline", "own_dag")
LOCK_WAIT_SECONDS = 600  # a CLI run holding the lock: wait for it


def _settings(context) -> dict:
    params = context["params"]
    values = Variable.get("growthflow_commissions", default=None, deserialize_json=True) or {}
    landing = (
        params.get("landing")
        or values.get("LANDING")
        or os.environ.get("GROWTHFLOW_COMMISSIONS_LANDING")
    )
    archive = (
        params.get("archive")
        or values.get("ARCHIVE")
        or os.environ.get("GROWTHFLOW_COMMISSIONS_ARCHIVE")
    )
    if not landing or not archive:
        raise ValueError(
            "no landing zone or archive: set the landing/archive params, the variable "
            "growthflow_commissions (LANDING, ARCHIVE) or GROWTHFLOW_COMMISSIONS_LANDING/_ARCHIVE"
        )
    wait_hours = params.get("wait_hours")
    if wait_hours is None:
        wait_hours = values.get("WAIT_HOURS", 6)
    combined = params.get("combined") or values.get("COMBINED") or "inline"
    if combined not in COMBINED_MODES:
        raise ValueError(f"combined must be one of {', '.join(COMBINED_MODES)}, not {combined!r}")
    return {
        "landing": Path(landing),
        "archive": Path(archive),
        "wait_hours": float(wait_hours),
        "combined": combined,
    }


def _day(context) -> date:
    if context["params"].get("day"):
        return date.fromisoformat(context["params"]["day"])
    start = context.get("data_interval_start") or pendulum.now("UTC")
    return start.date()


class LandingFileSensor(BaseSensorOperator):
    """Waits for one daily feed's file of the run's day; deferrable (a FileTrigger watches the
    path in the triggerer). A file already loaded, and perhaps archived, counts as arrived."""

    def __init__(self, *, feed: str, **kwargs):
        super().__init__(**kwargs)
        self.feed = feed

    def _path(self, context) -> Path:
        return _settings(context)["landing"] / self.feed / f"{_day(context).isoformat()}.csv"

    def poke(self, context) -> bool:
        from growthflow.commissions.pipeline import day_loaded

        if self._path(context).is_file():
            return True
        return day_loaded(_engine(create=True), self.feed, _day(context))

    def execute(self, context) -> None:
        from airflow.providers.standard.triggers.file import FileTrigger

        if self.poke(context):
            return
        hours = _settings(context)["wait_hours"]
        self.log.info("waiting up to %s h for %s", hours, self._path(context))
        self.defer(
            trigger=FileTrigger(
                filepath=str(self._path(context)), poke_interval=context["params"]["poke_seconds"]
            ),
            method_name="execute_complete",
            timeout=timedelta(hours=hours),
        )

    def execute_complete(self, context, event=None) -> None:
        self.log.info("%s arrived", self._path(context))


@dag(
    dag_id="growthflow_commissions",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["growthflow", "commissions"],
    params={
        "landing": Param(None, type=["null", "string"], description="The landing zone folder."),
        "archive": Param(None, type=["null", "string"], description="Where files are moved."),
        "day": Param(None, type=["null", "string"], description="Day to wait for (YYYY-MM-DD)."),
        "wait_hours": Param(None, type=["null", "number"], description="Sensor timeout (6)."),
        "poke_seconds": Param(60, type="number", description="How often the trigger looks."),
        "combined": Param(
            None,
            type=["null", "string"],
            enum=[None, *COMBINED_MODES],
            description="The combined scope: inline (in gold), or own_dag (its own DAG).",
        ),
    },
    doc_md=__doc__,
)
def growthflow_commissions():
    @task(retries=2, trigger_rule="none_failed")
    def load(feed: str) -> dict:
        from collections import Counter

        from growthflow.commissions.pipeline import load_feed

        settings = _settings(get_current_context())
        loads = load_feed(
            _engine(create=True),
            CONFIG,
            settings["landing"],
            feed,
            wait_seconds=LOCK_WAIT_SECONDS,
        )
        rejected = {load.item.name: load.reason for load in loads if load.reason}
        return {"outcomes": dict(Counter(load.outcome for load in loads)), "rejected": rejected}

    @task(trigger_rule="none_failed")
    def validate() -> dict:
        from collections import Counter

        from growthflow.commissions.pipeline import validate_loaded

        checks = validate_loaded(_engine(), CONFIG, wait_seconds=LOCK_WAIT_SECONDS)
        quarantined = Counter()
        for check in checks:
            quarantined.update(check.quarantined)
        return {
            "files": len(checks),
            "records": sum(c.records for c in checks),
            "silver_rows": sum(c.silver_rows for c in checks),
            "quarantined": dict(quarantined),
        }

    @task(trigger_rule="none_failed", outlets=GOLD_ASSETS)
    def gold() -> dict:
        from dataclasses import asdict

        from growthflow.commissions.pipeline import compute_gold

        inline = _settings(get_current_context())["combined"] == "inline"
        stats = compute_gold(_engine(), CONFIG, wait_seconds=LOCK_WAIT_SECONDS, combined=inline)
        return asdict(stats)

    @task(trigger_rule="none_failed")
    def archive() -> int:
        from growthflow.commissions.pipeline import archive_landing

        settings = _settings(get_current_context())
        return archive_landing(
            _engine(),
            CONFIG,
            settings["landing"],
            settings["archive"],
            wait_seconds=LOCK_WAIT_SECONDS,
        )

    checked = validate()
    for feed in sorted(CONFIG.feeds.values(), key=lambda f: (f.kind != "snapshot", f.name)):
        loaded = load.override(task_id=f"load_{feed.name}")(feed.name)
        if feed.kind == "daily" and feed.required:
            LandingFileSensor(task_id=f"wait_{feed.name}", feed=feed.name, soft_fail=True) >> loaded
        loaded >> checked
    gold_done = gold()
    checked >> gold_done >> archive()


growthflow_commissions_dag = growthflow_commissions()


@dag(
    dag_id="growthflow_commissions_combined",
    schedule=GOLD_ASSETS,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["growthflow", "commissions"],
    doc_md=__doc__,
)
def growthflow_commissions_combined():
    @task(retries=2, outlets=COMBINED_ASSETS)
    def combined() -> dict:
        from dataclasses import asdict

        from growthflow.commissions.pipeline import compute_combined

        return asdict(
            compute_combined(_engine(create=True), CONFIG, wait_seconds=LOCK_WAIT_SECONDS)
        )

    combined()


growthflow_commissions_combined_dag = growthflow_commissions_combined()
