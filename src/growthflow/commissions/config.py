"""The feed configuration (``feeds.yaml``): which files land, their columns, types and checks.

Adding a feed is a configuration change: give it a name, a kind, a role and its columns. The
role is the contract between a feed and the gold rules: it names the silver table the rows go
to and the fields (with their types) the rules need. Several feeds may share a role.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from growthflow.errors import ConfigError, describe_errors

ColumnType = Literal["date", "code", "name", "text", "money", "integer", "deal"]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FEED_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MONEY_SCALE = 10_000  # money is stored as exact integers of 1/10,000 (silver columns *_e4)


class Role(BaseModel):
    """What the gold rules need from the feeds of one role."""

    kind: Literal["daily", "snapshot"]
    table: str  # the silver table
    fields: dict[str, ColumnType]  # required fields and their types
    optional: dict[str, ColumnType] = {}  # fields the table keeps when a feed has them


ROLES: dict[str, Role] = {
    "earnings": Role(
        kind="daily",
        table="commission_silver_earnings",
        fields={"marketing_source": "code", "operator": "name", "raw_earnings": "money"},
        optional={"country": "text", "visits": "integer", "signups": "integer"},
    ),
    "clicks": Role(
        kind="daily",
        table="commission_silver_clicks",
        fields={"voluum_brand": "name", "clicks": "integer"},
    ),
    "running_totals": Role(
        kind="daily",
        table="commission_silver_running_totals",
        fields={"marketing_source": "code", "operator": "name", "total_earnings": "money"},
        optional={"country": "text", "visits": "integer"},
    ),
    "deals": Role(
        kind="snapshot",
        table="commission_silver_deals",
        fields={"marketing_source": "code", "deal": "deal"},
        optional={"comments": "text"},
    ),
    "brand_map": Role(
        kind="snapshot",
        table="commission_silver_brand_map",
        fields={"voluum_brand": "name", "marketing_source": "code"},
    ),
    "operator_map": Role(
        kind="snapshot",
        table="commission_silver_operator_map",
        fields={"variants": "name", "std_operator": "text"},
        optional={"country": "text"},
    ),
}


class Column(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # as in the file's header
    type: ColumnType = "text"
    required: bool = False  # an empty value quarantines the row
    min: int | None = None  # a smaller number quarantines the row
    optional: bool = False  # the file may lack this column
    field: str | None = None  # the silver field it fills (default: its name)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value):
        if isinstance(value, str):  # `date: date`
            return {"type": value}
        return value

    @property
    def target(self) -> str:
        return self.field or self.name


class Feed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["daily", "snapshot"]
    role: str
    required: bool = True  # daily feeds: a day's file is expected (the DAG's sensor waits)
    key: str | None = None  # snapshot feeds: the column that must be unique
    columns: list[Column] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _columns_mapping(cls, value):
        if isinstance(value, dict) and isinstance(value.get("columns"), dict):
            columns = []
            for name, spec in value["columns"].items():
                spec = {"type": spec} if isinstance(spec, str) else dict(spec or {})
                columns.append({**spec, "name": name})
            value = {**value, "columns": columns}
        return value

    @model_validator(mode="after")
    def _check(self) -> Feed:
        if not _FEED_NAME.match(self.name):
            raise ValueError(f"feed name {self.name!r}: use lower-case letters, digits and _")
        role = ROLES.get(self.role)
        if role is None:
            raise ValueError(f"feed {self.name}: unknown role {self.role!r} ({', '.join(ROLES)})")
        if role.kind != self.kind:
            raise ValueError(f"feed {self.name}: role {self.role} needs kind {role.kind}")
        targets = [c.target for c in self.columns]
        for c in self.columns:
            if not _IDENTIFIER.match(c.name) or not _IDENTIFIER.match(c.target):
                raise ValueError(f"feed {self.name}: column {c.name!r} is not a plain identifier")
        lowered = [c.name.lower() for c in self.columns]
        if len(set(lowered)) != len(lowered) or len(set(targets)) != len(targets):
            raise ValueError(f"feed {self.name}: duplicate column")
        dates = [c for c in self.columns if c.type == "date"]
        if self.kind == "daily" and len(dates) != 1:
            raise ValueError(f"feed {self.name}: a daily feed has exactly one date column")
        if self.kind == "snapshot" and dates:
            raise ValueError(f"feed {self.name}: snapshot feeds have no date column")
        by_target = {c.target: c for c in self.columns}
        for field, kind in role.fields.items():
            column = by_target.get(field)
            if column is None:
                raise ValueError(f"feed {self.name}: role {self.role} needs a column {field!r}")
            if column.type != kind or not column.required or column.optional:
                raise ValueError(
                    f"feed {self.name}: column {column.name!r} must be a required {kind}"
                )
        for field, kind in role.optional.items():
            if field in by_target and by_target[field].type != kind:
                raise ValueError(f"feed {self.name}: column {field!r} must be of type {kind}")
        if self.kind == "snapshot":
            if self.key is None or self.key not in by_target:
                raise ValueError(f"feed {self.name}: a snapshot feed names its key column")
        elif self.key is not None:
            raise ValueError(f"feed {self.name}: only snapshot feeds have a key")
        return self

    @property
    def date_column(self) -> Column | None:
        return next((c for c in self.columns if c.type == "date"), None)

    @property
    def silver_table(self) -> str:
        return ROLES[self.role].table


class FeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_per_click: Decimal = Decimal(10)
    settle_seconds: float = Field(default=5.0, ge=0)
    feeds: dict[str, Feed]

    @model_validator(mode="before")
    @classmethod
    def _named_feeds(cls, value):
        if isinstance(value, dict) and isinstance(value.get("feeds"), dict):
            feeds = {
                name: {**spec, "name": name} if isinstance(spec, dict) else spec
                for name, spec in value["feeds"].items()
            }
            value = {**value, "feeds": feeds}
        return value

    @field_validator("rate_per_click", mode="before")
    @classmethod
    def _rate(cls, value):
        try:
            rate = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"rate_per_click {value!r} is not a number") from None
        if not rate.is_finite() or rate < 0 or (rate * MONEY_SCALE) % 1:
            raise ValueError("rate_per_click must be >= 0 with at most 4 decimals")
        return rate

    @model_validator(mode="after")
    def _roles(self) -> FeedConfig:
        for role in ("earnings", "clicks", "deals", "brand_map", "operator_map"):
            if not any(f.role == role for f in self.feeds.values()):
                raise ValueError(f"no feed has the role {role!r}, which the gold rules need")
        for role in ("deals", "brand_map", "operator_map"):
            if sum(f.role == role for f in self.feeds.values()) > 1:
                raise ValueError(f"only one snapshot feed can have the role {role!r}")
        return self

    @property
    def rate_e4(self) -> int:
        return int(self.rate_per_click * MONEY_SCALE)

    def by_role(self, role: str) -> list[Feed]:
        return [f for f in self.feeds.values() if f.role == role]

    def snapshot(self, role: str) -> Feed:
        return self.by_role(role)[0]


DEFAULT_FEEDS = "feeds.yaml"


def load_config(path: Path | str | None = None) -> FeedConfig:
    """The shipped feed configuration, or the YAML file at ``path``."""
    if path is None:
        text = resources.files("growthflow.commissions").joinpath(DEFAULT_FEEDS).read_text()
        where = "the default feeds"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"feed configuration not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the feed configuration {path}: {exc}") from None
        where = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must map rate_per_click, settle_seconds and feeds")
    try:
        return FeedConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid feed configuration in {where}: {describe_errors(exc.errors())}"
        ) from None
