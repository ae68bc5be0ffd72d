"""What growthflow's DAGs share: the data database, found the way Airflow users keep it.

Airflow puts the DAGs folder on ``sys.path``, so the DAG files import this module directly.
The connection ``growthflow_db`` wins (Postgres, with ``{"schema": "..."}`` in its extra for a
PostgreSQL schema; or SQLite with the file path as host); else ``GROWTHFLOW_DATABASE_URL``
(and ``GROWTHFLOW_DB_SCHEMA``).
"""

from __future__ import annotations

from airflow.exceptions import AirflowNotFoundException
from airflow.sdk import BaseHook


def engine(*, create: bool = False):
    """A SQLAlchemy engine for growthflow's data database."""
    import sqlalchemy as sa

    from growthflow.database import create_engine
    from growthflow.settings import load_settings

    try:
        conn = BaseHook.get_connection("growthflow_db")
    except AirflowNotFoundException:
        settings = load_settings()
        return create_engine(settings.database_url, schema=settings.db_schema, create=create)
    if conn.conn_type == "sqlite":
        return create_engine(f"sqlite:///{conn.host}", create=create)
    url = sa.URL.create(
        "postgresql+psycopg",
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
    )
    schema = conn.extra_dejson.get("schema")
    return create_engine(url.render_as_string(hide_password=False), schema=schema, create=create)
