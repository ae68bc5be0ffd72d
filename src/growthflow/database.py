"""Database access shared by every pipeline: engines, safe URLs, schema placement, bulk loads.

Only SQLAlchemy 2 Core is used. SQLite is the embedded default; PostgreSQL (psycopg 3) is the
production target. A PostgreSQL ``schema`` is applied through ``search_path`` so that every
statement, Core or text, lands in it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from growthflow.errors import ConfigError, DatabaseError
from growthflow.sql import ExactSum

SQLITE_BUSY_TIMEOUT_S = 60
READ_ONLY_OPTION = "growthflow_read_only"


def parse_url(url: str) -> URL:
    """Parse a SQLAlchemy URL; plain ``postgresql://`` URLs use psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "not a valid database URL (expected sqlite:///path or postgresql+psycopg://...)"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<invalid URL>"
    return url.render_as_string(hide_password=True)


def create_engine(url: str, *, schema: str | None = None, create: bool = False) -> Engine:
    """An engine for ``url``, checked by connecting once.

    ``create=False`` (reading pipelines) refuses a SQLite file that does not exist, so a typo
    never silently creates an empty database. ``create=True`` creates the file, its folder
    and the PostgreSQL ``schema`` when missing.
    """
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed, create=create)
        if schema:
            raise ConfigError("--schema applies to PostgreSQL only; SQLite has no schemas")
    elif backend == "postgresql":
        engine = _postgres_engine(parsed, schema=schema, create=create)
    else:
        raise ConfigError(f"unsupported database backend {backend!r}: use sqlite or postgresql")
    check_connection(engine)
    return engine


def _sqlite_engine(parsed: URL, *, create: bool) -> Engine:
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        path = Path(database)
        if not path.exists():
            if not create:
                raise DatabaseError(f"database file not found: {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that
        # DDL and multi-statement replaces are really atomic (SQLAlchemy's documented recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()
        dbapi_conn.create_aggregate("gf_exact_sum", 1, ExactSum)

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised by every test
        # Transactions that may write take the write lock at once: a deferred transaction
        # that reads, then writes after another connection committed, fails with "database
        # is locked" without waiting. Pure reads (see read_only) stay deferred, so a long
        # read never blocks writers in WAL mode.
        read = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(parsed: URL, *, schema: str | None, create: bool) -> Engine:
    try:
        # JIT compiling growthflow's many mid-sized statements (regex checks in CASE chains)
        # costs more than running them: 2.7 s -> 0.8 s for the bad-row check at scale 10.
        engine = sa.create_engine(
            parsed, pool_pre_ping=True, connect_args={"options": "-c jit=off"}
        )
    except NoSuchModuleError:
        raise ConfigError(f"no driver for {parsed.drivername!r}; use postgresql+psycopg") from None
    if schema:
        quoted = engine.dialect.identifier_preparer.quote(schema)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by PG tests
            cur = dbapi_conn.cursor()
            cur.execute("SELECT set_config('search_path', %s, false)", (quoted,))
            cur.close()
            dbapi_conn.commit()

        if create:
            with _translate_errors(parsed), engine.begin() as conn:
                conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            # Connections made before the schema existed cached no default schema: start afresh.
            engine.dispose()
    return engine


class _translate_errors:
    """Context manager turning driver errors into one clear, password-free message."""

    def __init__(self, url: URL):
        self.url = url

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, SQLAlchemyError):
            return False
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        password = self.url.password
        if password:
            reason = reason.replace(str(password), "***")
        raise DatabaseError(f"cannot use database {safe_url(self.url)}: {reason}") from None


def read_only(engine: Engine) -> sa.Connection:
    """A connection for reads only; on SQLite its transactions never take the write lock."""
    return engine.connect().execution_options(**{READ_ONLY_OPTION: True})


def check_connection(engine: Engine) -> None:
    with _translate_errors(engine.url), read_only(engine) as conn:
        conn.execute(sa.text("SELECT 1"))
        if engine.dialect.name == "postgresql":
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
            if schema is None:
                raise DatabaseError(
                    f"database {safe_url(engine.url)}: the schema does not exist "
                    "(create it, or run `growthflow attribution init-db` with --schema)"
                )


def translate_errors(engine: Engine) -> _translate_errors:
    """Wrap a block so database failures surface as :class:`DatabaseError`."""
    return _translate_errors(engine.url)


def missing_tables(engine: Engine, names: Iterable[str]) -> list[str]:
    inspector = sa.inspect(engine)
    return [name for name in names if not inspector.has_table(name)]


def missing_columns(engine: Engine, table: str, columns: Iterable[str]) -> list[str]:
    present = {c["name"].lower() for c in sa.inspect(engine).get_columns(table)}
    return [c for c in columns if c.lower() not in present]


def has_unique_key(engine: Engine, table: str, columns: Sequence[str]) -> bool:
    """Whether ``columns`` are declared unique (primary key, unique constraint or index)."""
    wanted = [c.lower() for c in columns]
    inspector = sa.inspect(engine)
    pk = [c.lower() for c in inspector.get_pk_constraint(table).get("constrained_columns") or []]
    if pk == wanted:
        return True
    for uc in inspector.get_unique_constraints(table):
        if [c.lower() for c in uc["column_names"]] == wanted:
            return True
    for ix in inspector.get_indexes(table):
        if ix.get("unique") and [str(c).lower() for c in ix["column_names"]] == wanted:
            return True
    return False


def has_lookup_index(engine: Engine, table: str, column: str) -> bool:
    """Whether some index (or the primary key) starts with ``column``: lookups by it are
    B-tree searches, not scans."""
    inspector = sa.inspect(engine)
    pk = inspector.get_pk_constraint(table).get("constrained_columns") or []
    if pk and pk[0].lower() == column.lower():
        return True
    return any(
        ix["column_names"] and str(ix["column_names"][0]).lower() == column.lower()
        for ix in inspector.get_indexes(table)
    ) or any(
        uc["column_names"] and uc["column_names"][0].lower() == column.lower()
        for uc in inspector.get_unique_constraints(table)
    )


@contextmanager
def sort_threads(conn: sa.Connection) -> Iterator[None]:
    """On SQLite, let the statements inside sort with helper threads (one per core, at most 8;
    index builds and large ORDER BY / window sorts), and turn them off after. Elsewhere a
    no-op."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    raw.execute(f"PRAGMA threads = {min(os.cpu_count() or 1, 8)}")
    try:
        yield
    finally:
        raw.execute("PRAGMA threads = 0")


@contextmanager
def _driver_errors(conn: sa.Connection, statement: str) -> Iterator[None]:
    """Errors of the DBAPI cursor, used directly, raised as SQLAlchemy's (as a statement run
    through SQLAlchemy would raise them), so :func:`translate_errors` turns them into one
    message too."""
    base = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except base as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, base) from exc


def fetch_tuples(conn: sa.Connection, statement: sa.Executable, params: dict) -> list[tuple]:
    """All rows of ``statement`` as the driver's plain tuples, fetched on the connection's
    DBAPI cursor (in its transaction). SQLAlchemy's Row objects cost ~1 µs each, which shows
    when a step reads a few hundred thousand rows into numpy arrays."""
    state = statement.compile(dialect=conn.dialect).construct_expanded_state(params)
    args: Sequence | dict = state.parameters
    if state.positiontup is not None:  # qmark (sqlite3); psycopg takes the dict
        args = [state.parameters[name] for name in state.positiontup]
    cursor = conn.connection.driver_connection.cursor()
    try:
        with _driver_errors(conn, state.statement):
            cursor.execute(state.statement, args)
            return cursor.fetchall()
    finally:
        cursor.close()


def bulk_insert(conn: sa.Connection, table: sa.Table, rows: Iterable[Sequence]) -> int:
    """Insert tuples in the column order of ``table``, as fast as the backend allows.

    PostgreSQL uses ``COPY FROM STDIN``; SQLite uses ``executemany`` on the raw cursor. Both
    keep values out of the SQL text. Returns the number of rows written.
    """
    columns = [c.name for c in table.columns]
    dbapi = conn.connection.driver_connection
    written = 0
    if conn.dialect.name == "postgresql":
        from psycopg import sql

        stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with _driver_errors(conn, f"COPY {table.name}"):
            with dbapi.cursor() as cur, cur.copy(stmt) as copy:
                for row in rows:
                    copy.write_row(row)
                    written += 1
        return written
    placeholders = ", ".join("?" for _ in columns)
    quote = conn.dialect.identifier_preparer.quote
    stmt = (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) "  # noqa: S608
        f"VALUES ({placeholders})"
    )
    # executemany consumes the iterator lazily, in C: no page of Python rows is built here
    cur = dbapi.cursor()
    try:
        with _driver_errors(conn, stmt):
            cur.executemany(stmt, rows)
        return max(cur.rowcount, 0)
    finally:
        cur.close()


def insert_ignore(conn: sa.Connection, table: sa.Table):
    """INSERT that skips rows whose key exists (ON CONFLICT DO NOTHING on both databases; on
    SQLite an INSERT ... SELECT needs a WHERE in its SELECT to parse)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def is_postgres(engine_or_conn: Engine | sa.Connection) -> bool:
    return engine_or_conn.dialect.name == "postgresql"
