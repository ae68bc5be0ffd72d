"""The voucher segmentation pipeline: extract -> clean -> segment -> publish.

Each step is a plain function; they hand data to each other through growthflow's own tables
(``gf_voucher_raw``, ``gf_voucher_clean``, ``gf_voucher_bands``, ``gf_voucher_next``), so an
Airflow DAG can run them as separate tasks. Extract streams the source file in batches (Python
does the I/O); cleaning and counting run as SQL in the database. Publish replaces
``voucher_segments`` in one transaction and records a new version in ``gf_voucher_runs``,
which the API watches to reload.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from growthflow.database import bulk_insert, translate_errors
from growthflow.errors import ConfigError, InputDataError
from growthflow.sql import number, valid_date
from growthflow.vouchers.segments import Segment

TEXT, FLOAT = sa.Text(), sa.REAL().with_variant(sa.Double(), "postgresql")
metadata = sa.MetaData()

SOURCE_COLUMNS = (
    "timestamp",
    "country_code",
    "last_order_ts",
    "first_order_ts",
    "total_orders",
    "voucher_amount",
)
raw = sa.Table(
    "gf_voucher_raw",
    metadata,
    sa.Column("assigned_ts", TEXT),  # the source's "timestamp"
    sa.Column("country_code", TEXT),
    sa.Column("last_order_ts", TEXT),
    sa.Column("first_order_ts", TEXT),
    sa.Column("total_orders", TEXT),
    sa.Column("voucher_amount", TEXT),  # as written: the clean step reads the number
)
clean_rows = sa.Table(
    "gf_voucher_clean",
    metadata,
    sa.Column("voucher_amount", FLOAT, nullable=False),
    sa.Column("total_orders", sa.Integer),  # NULL: left out of total_orders segments
    sa.Column("recency_days", sa.Integer),  # NULL: left out of recency segments
)
bands = sa.Table(
    "gf_voucher_bands",
    metadata,
    sa.Column("segment_name", TEXT, primary_key=True),
    sa.Column("segment", TEXT, primary_key=True),
    sa.Column("field", TEXT, nullable=False),
    sa.Column("min_value", sa.Integer, nullable=False),
    sa.Column("max_value", sa.Integer),
)


def _segments_table(name: str) -> sa.Table:
    """Counts per segment band and voucher amount (the staged and the published table)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("segment_name", TEXT, primary_key=True),
        sa.Column("segment", TEXT, primary_key=True),
        sa.Column("min_value", sa.Integer, nullable=False),
        sa.Column("max_value", sa.Integer),
        sa.Column("voucher_amount", FLOAT, primary_key=True),
        sa.Column("voucher_count", sa.Integer, nullable=False),
    )


staged = _segments_table("gf_voucher_next")
voucher_segments = _segments_table("voucher_segments")
runs = sa.Table(
    "gf_voucher_runs",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("published_at", TEXT, nullable=False),
    sa.Column("country", TEXT, nullable=False),
    sa.Column("source", TEXT, nullable=False),
    sa.Column("segments", TEXT, nullable=False),  # JSON: the bands, for the API
    sa.Column("summary", TEXT, nullable=False),
)

BATCH_ROWS = 50_000


@dataclass
class CleanStats:
    source_rows: int = 0
    other_country: int = 0
    no_voucher_amount: int = 0  # empty
    voucher_amount_not_a_number: int = 0  # 'abc', NaN, infinities
    duplicates: int = 0
    kept: int = 0
    total_orders_unusable: int = 0  # empty, unparsable or negative: out of frequency segments
    recency_unusable: int = 0  # negative or unparsable: out of recency segments


@dataclass
class VoucherSummary:
    country: str
    source: str
    clean: CleanStats = field(default_factory=CleanStats)
    segment_rows: int = 0
    version: int = 0


def init_db(engine: sa.Engine) -> None:
    with translate_errors(engine), engine.begin() as conn:
        metadata.create_all(conn, checkfirst=True)


# --- extract ------------------------------------------------------------------------------
@contextmanager
def _local_copy(source: str) -> Iterator[Path]:
    """A local path for ``source``: itself, or a download of an http(s)/s3 URL."""
    if source.startswith(("http://", "https://")):
        import httpx

        suffix = Path(source.split("?")[0]).suffix
        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
            try:
                with httpx.stream("GET", source, follow_redirects=True, timeout=60) as response:
                    response.raise_for_status()
                    for chunk in response.iter_bytes():
                        tmp.write(chunk)
            except httpx.HTTPError as exc:
                raise InputDataError(f"cannot download {source}: {exc}") from None
            tmp.flush()
            yield Path(tmp.name)
        return
    if "://" in source:
        try:
            import fsspec
        except ImportError:
            raise ConfigError(
                f"{source.split('://')[0]}:// sources need fsspec: pip install growthflow[s3]"
            ) from None
        suffix = Path(source).suffix
        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp, fsspec.open(source, "rb") as f:
            while chunk := f.read(1 << 20):
                tmp.write(chunk)
            tmp.flush()
            yield Path(tmp.name)
        return
    path = Path(source)
    if not path.exists():
        raise InputDataError(f"source not found: {source}")
    yield path


def _batches(path: Path) -> Iterator:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".csv":
            # Every column as text: a value that is not a number is a counted bad row in the
            # clean step, not a conversion error that stops the whole file.
            reader = pacsv.open_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in SOURCE_COLUMNS},
                    strings_can_be_null=False,
                ),
            )
            names = reader.schema.names
            batches = iter(reader)
        else:
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            batches = None
        missing = [c for c in SOURCE_COLUMNS if c not in names]
        if missing:
            raise InputDataError(f"{path.name} lacks the columns {', '.join(missing)}")
        if batches is None:
            batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=list(SOURCE_COLUMNS))
        yield from batches
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(f"cannot read {path.name} as CSV or parquet: {exc}") from None


def _as_text(column):
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        return pc.strftime(column, format="%Y-%m-%d %H:%M:%S").to_pylist()
    if pa.types.is_floating(column.type):  # a missing value written as NaN is missing
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return pc.cast(column, pa.string()).to_pylist()


def extract(engine: sa.Engine, source: str) -> int:
    """Load the source file into ``gf_voucher_raw`` (replacing it); returns the rows loaded.

    Every value is stored as text, as written; the clean step decides what is a number.
    """
    init_db(engine)
    loaded = 0
    with translate_errors(engine), _local_copy(source) as path, engine.begin() as conn:
        # Recreated, not emptied: a table made by an older version held a float column.
        raw.drop(conn, checkfirst=True)
        raw.create(conn)
        for batch in _batches(path):
            columns = [_as_text(batch.column(c)) for c in SOURCE_COLUMNS]
            loaded += bulk_insert(conn, raw, zip(*columns, strict=True))
    return loaded


# --- clean --------------------------------------------------------------------------------
def _amount(dialect: str) -> str:
    """The voucher amount as a finite number, or NULL (empty, not a number, NaN, infinite)."""
    return number("voucher_amount", dialect, kind="text")


def _clean_statement(dialect: str) -> sa.TextClause:
    orders = "trim(r.total_orders)"
    if dialect == "sqlite":
        orders_value = (
            f"CASE WHEN {orders} GLOB '[0-9]*' AND {orders} NOT GLOB '*[^0-9.]*' "
            f"AND {orders} NOT GLOB '*.*.*' "
            f"AND CAST({orders} AS REAL) = CAST(CAST({orders} AS REAL) AS INTEGER) "
            f"THEN CAST(CAST({orders} AS REAL) AS INTEGER) END"
        )
        days = (
            "CAST(julianday(substr(r.assigned_ts, 1, 10)) "
            "- julianday(substr(r.last_order_ts, 1, 10)) AS INTEGER)"
        )
    else:
        orders_value = (
            f"CASE WHEN {orders} ~ '^[0-9]+(\\.[0-9]+)?$' THEN CASE WHEN "
            f"CAST({orders} AS numeric) = trunc(CAST({orders} AS numeric)) "
            f"THEN CAST(CAST({orders} AS numeric) AS integer) END END"
        )
        days = (
            "(CAST(substr(r.assigned_ts, 1, 10) AS date) "
            "- CAST(substr(r.last_order_ts, 1, 10) AS date))"
        )
    amount = _amount(dialect)
    dates_ok = (
        f"{valid_date('substr(r.assigned_ts, 1, 10)', dialect)} "
        f"AND {valid_date('substr(r.last_order_ts, 1, 10)', dialect)}"
    )
    # Constant SQL fragments; the country is the one (bound) value.
    return sa.text(
        f"""
        INSERT INTO gf_voucher_clean (voucher_amount, total_orders, recency_days)
        SELECT voucher_amount, total_orders,
               CASE WHEN recency_days >= 0 THEN recency_days END
        FROM (
            SELECT r.voucher_amount, {orders_value} AS total_orders,
                   CASE WHEN COALESCE({dates_ok}, false) THEN {days} END AS recency_days
            FROM (
                -- duplicates compare the amount's value: '2640' and '2640.0' are one voucher
                SELECT DISTINCT assigned_ts, country_code, last_order_ts, first_order_ts,
                       total_orders, {amount} AS voucher_amount
                FROM gf_voucher_raw
                WHERE lower(trim(country_code)) = lower(trim(:country))
                  AND {amount} IS NOT NULL
            ) r
        ) c
        """  # noqa: S608
    )


def clean(engine: sa.Engine, country: str = "Peru") -> CleanStats:
    """Replace ``gf_voucher_clean`` with the usable rows of ``country``; counts per rule."""
    init_db(engine)
    dialect = engine.dialect.name
    in_country = "lower(trim(country_code)) = lower(trim(:country))"
    with translate_errors(engine), engine.begin() as conn:
        conn.execute(sa.delete(clean_rows))
        total, country_rows, empty, with_voucher = conn.execute(
            sa.text(
                "SELECT count(*), "  # noqa: S608
                f"COALESCE(SUM(CASE WHEN {in_country} THEN 1 ELSE 0 END), 0), "
                f"COALESCE(SUM(CASE WHEN {in_country} AND COALESCE(trim(voucher_amount), '') "
                "= '' THEN 1 ELSE 0 END), 0), "
                f"COALESCE(SUM(CASE WHEN {in_country} AND {_amount(dialect)} IS NOT NULL "
                "THEN 1 ELSE 0 END), 0) FROM gf_voucher_raw"
            ),
            {"country": country},
        ).one()
        conn.execute(_clean_statement(dialect), {"country": country})
        kept, no_orders, no_recency = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count() - sa.func.count(clean_rows.c.total_orders),
                sa.func.count() - sa.func.count(clean_rows.c.recency_days),
            )
        ).one()
    return CleanStats(
        source_rows=int(total),
        other_country=int(total - country_rows),
        no_voucher_amount=int(empty),
        voucher_amount_not_a_number=int(country_rows - empty - with_voucher),
        duplicates=int(with_voucher - kept),
        kept=int(kept),
        total_orders_unusable=int(no_orders),
        recency_unusable=int(no_recency),
    )


# --- segment and publish -------------------------------------------------------------------
def segment(engine: sa.Engine, segments: dict[str, Segment]) -> int:
    """Count vouchers per band and amount into ``gf_voucher_next``; returns its rows."""
    init_db(engine)
    measure = "CASE b.field WHEN 'total_orders' THEN c.total_orders ELSE c.recency_days END"
    statement = sa.text(
        f"""
        INSERT INTO gf_voucher_next
            (segment_name, segment, min_value, max_value, voucher_amount, voucher_count)
        SELECT b.segment_name, b.segment, b.min_value, b.max_value, c.voucher_amount, count(*)
        FROM gf_voucher_clean c JOIN gf_voucher_bands b
          ON {measure} >= b.min_value AND (b.max_value IS NULL OR {measure} <= b.max_value)
        GROUP BY b.segment_name, b.segment, b.min_value, b.max_value, c.voucher_amount
        """  # noqa: S608
    )
    with translate_errors(engine), engine.begin() as conn:
        conn.execute(sa.delete(bands))
        conn.execute(sa.delete(staged))
        rows = [
            {
                "segment_name": name,
                "segment": b.label,
                "field": spec.field,
                "min_value": b.min,
                "max_value": b.max,
            }
            for name, spec in segments.items()
            for b in spec.bands
        ]
        conn.execute(sa.insert(bands), rows)
        conn.execute(statement)
        return conn.execute(sa.select(sa.func.count()).select_from(staged)).scalar_one()


class NothingToPublish(InputDataError):
    """The run found no voucher to count: publishing would empty the live segments."""


def publish(
    engine: sa.Engine,
    summary: VoucherSummary,
    segments: dict[str, Segment],
    *,
    allow_empty: bool = False,
) -> int:
    """Replace ``voucher_segments`` with the staged counts in one transaction; returns the
    new version (readers see the old table or the new one, never a mix).

    An empty result (a country with no rows, a source with only a header) is refused, and
    the published version stays live, unless ``allow_empty``: replacing the segments by
    nothing would make the API answer 404 to every customer.
    """
    with translate_errors(engine), engine.begin() as conn:
        staged_rows = conn.execute(sa.select(sa.func.count()).select_from(staged)).scalar_one()
        if not staged_rows and not allow_empty:
            live = conn.execute(sa.select(sa.func.max(runs.c.version))).scalar_one()
            c = summary.clean
            raise NothingToPublish(
                f"nothing to publish: {c.source_rows:,} source rows, {c.kept:,} kept for "
                f"country {summary.country!r}, no voucher in any segment band; "
                + (f"version {live} stays published" if live else "nothing is published")
                + " (pass --allow-empty to publish an empty result anyway)"
            )
        conn.execute(sa.delete(voucher_segments))
        conn.execute(
            sa.insert(voucher_segments).from_select(
                [c.name for c in voucher_segments.columns], sa.select(*staged.columns)
            )
        )
        version = (
            conn.execute(sa.select(sa.func.coalesce(sa.func.max(runs.c.version), 0))).scalar_one()
            + 1
        )
        summary.version = version
        conn.execute(
            sa.insert(runs).values(
                version=version,
                published_at=datetime.now(UTC).isoformat(timespec="seconds"),
                country=summary.country,
                source=summary.source,
                segments=json.dumps({n: s.model_dump() for n, s in segments.items()}),
                summary=json.dumps(asdict(summary)),
            )
        )
    return version


def run_vouchers(
    engine: sa.Engine,
    source: str,
    segments: dict[str, Segment],
    country: str = "Peru",
    *,
    allow_empty: bool = False,
) -> VoucherSummary:
    """extract -> clean -> segment -> publish."""
    summary = VoucherSummary(country=country.strip(), source=source)
    extract(engine, source)
    summary.clean = clean(engine, country)
    summary.segment_rows = segment(engine, segments)
    publish(engine, summary, segments, allow_empty=allow_empty)
    return summary
