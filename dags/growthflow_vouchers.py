"""growthflow voucher segmentation as an Airflow 3 DAG: extract -> clean -> segment -> publish.

Each task calls one step function of ``growthflow.vouchers.pipeline``; data passes through the
database (``gf_voucher_raw``, ``gf_voucher_clean``, ``gf_voucher_next``), and publish replaces
``voucher_segments`` in one transaction (the API reloads it within a second). The database is
found as for the attribution DAG (``_growthflow.engine``). ``source`` defaults to the variable
``growthflow_vouchers`` (JSON ``{"SOURCE": ..., "COUNTRY": ..., "SEGMENTS": ...}``) or to
``GROWTHFLOW_VOUCHERS_SOURCE``.
"""

from __future__ import annotations

import os

import pendulum
from _growthflow import engine as _engine
from airflow.sdk import Asset, Param, Variable, dag, get_current_context, task

VOUCHER_SEGMENTS = Asset("growthflow://vouchers/voucher_segments")


def _settings() -> dict:
    params = get_current_context()["params"]
    values = Variable.get("growthflow_vouchers", default=None, deserialize_json=True) or {}
    source = (
        params.get("source") or values.get("SOURCE") or os.environ.get("GROWTHFLOW_VOUCHERS_SOURCE")
    )
    if not source:
        raise ValueError("no source: set the source param or growthflow_vouchers.SOURCE")
    return {
        "source": source,
        "country": params.get("country") or values.get("COUNTRY") or "Peru",
        "segments": params.get("segments") or values.get("SEGMENTS"),
        "allow_empty": bool(params.get("allow_empty")),
    }


@dag(
    dag_id="growthflow_vouchers",
    schedule="@daily",
    start_date=pendulum.datetime(2018, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["growthflow", "vouchers"],
    params={
        "source": Param(None, type=["null", "string"], description="Parquet/CSV path or URL."),
        "country": Param(None, type=["null", "string"], description="Default: Peru."),
        "segments": Param(None, type=["null", "string"], description="Segments YAML file."),
        "allow_empty": Param(
            False,
            type="boolean",
            description="Publish an empty result (else the task fails; the live version stays).",
        ),
    },
    doc_md=__doc__,
)
def growthflow_vouchers():
    @task(retries=2)
    def extract() -> int:
        from growthflow.vouchers.pipeline import extract as load

        return load(_engine(create=True), _settings()["source"])

    @task
    def clean(_rows: int) -> dict:
        from dataclasses import asdict

        from growthflow.vouchers.pipeline import clean as clean_rows

        return asdict(clean_rows(_engine(), _settings()["country"]))

    @task
    def segment(_clean: dict) -> int:
        from growthflow.vouchers.pipeline import segment as count
        from growthflow.vouchers.segments import load_segments

        return count(_engine(), load_segments(_settings()["segments"]))

    @task(outlets=[VOUCHER_SEGMENTS])
    def publish(clean_stats: dict, segment_rows: int) -> int:
        from growthflow.vouchers.pipeline import CleanStats, VoucherSummary, publish
        from growthflow.vouchers.segments import load_segments

        settings = _settings()
        summary = VoucherSummary(
            country=settings["country"],
            source=settings["source"],
            clean=CleanStats(**clean_stats),
            segment_rows=segment_rows,
        )
        return publish(
            _engine(),
            summary,
            load_segments(settings["segments"]),
            allow_empty=settings["allow_empty"],
        )

    cleaned = clean(extract())
    publish(cleaned, segment(cleaned))


growthflow_vouchers_dag = growthflow_vouchers()
