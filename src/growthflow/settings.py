"""Settings read from the environment (prefix ``GROWTHFLOW_``) and, where given, a ``.env`` file.

Command-line flags override these values; the Airflow DAGs build the same objects from
Airflow connections and variables.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field, SecretStr
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

    # The IHC attribution API (provider ihc-api). The key is a secret: never logged or stored.
    ihc_api_key: SecretStr | None = Field(default=None)
    ihc_api_url: str | None = Field(default=None, description="Default: the commercial API.")
    ihc_conv_type_id: str | None = Field(default=None)
    ihc_concurrency: int = Field(default=4, ge=1, le=64)
    vouchers_reference_date: date | None = Field(
        default=None, description="'Today' for the voucher API's recency (default: UTC today)."
    )
    ihc_redistribution_parameter: dict[str, Any] | None = Field(
        default=None, description="JSON passed through to the API as redistribution_parameter."
    )


def load_settings() -> Settings:
    return Settings()
