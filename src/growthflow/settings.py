"""Settings read from the environment (prefix ``GROWTHFLOW_``) and, where given, a ``.env`` file.

Command-line flags override these values; the Airflow DAGs build the same objects from
Airflow connections and variables.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///data/growthflow.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GROWTHFLOW_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the data database (sqlite:///path or postgresql+psycopg://...).",
    )
    db_schema: str | None = Field(
        default=None, description="PostgreSQL schema holding the tables (default: search_path)."
    )
    log_level: str = Field(default="INFO")


def load_settings() -> Settings:
    return Settings()
