"""What makes an input row usable, as SQL evaluated in the database.

Each rule is a boolean SQL expression that is true for a good row. A row failing several
rules is counted under the first. Expressions are constant SQL text per dialect (column
references and literals, never user values), so they can be composed into the pipeline's
queries while every value stays a bound parameter.

Dates must be real calendar dates written ``YYYY-MM-DD`` and times ``HH:MM:SS``; with those
fixed-width formats, ``date || ' ' || time`` compares correctly as text, which is how
journeys are ordered and cut in SQL.

Numeric columns (revenue, cost, the engagement flags) are read with :func:`number`: a number
written as text is that number (tables imported from CSV hold only text), text that is not a
number is a bad row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa

from growthflow.database import has_unique_key
from growthflow.sql import column_kind, number, valid_date, valid_time


@dataclass(frozen=True)
class TableRules:
    table: str
    id_column: str
    alias: str
    rules: tuple[tuple[str, str], ...]  # (reason, SQL true for a good row)

    @property
    def valid(self) -> str:
        """SQL true exactly for rows passing every rule (NULL counts as failing)."""
        if not self.rules:
            return "(1 = 1)"
        return "(" + " AND ".join(f"COALESCE({sql}, false)" for _, sql in self.rules) + ")"

    @property
    def reason(self) -> str:
        """SQL giving the first failing rule's reason, or NULL for a good row."""
        if not self.rules:
            return "CAST(NULL AS text)"
        whens = " ".join(
            f"WHEN NOT COALESCE({sql}, false) THEN '{reason}'" for reason, sql in self.rules
        )
        return f"(CASE {whens} END)"


def _duplicate_rule(table: str, id_col: str, alias: str) -> tuple[str, str]:
    return (
        f"duplicate {id_col}",
        f"({alias}.{id_col} NOT IN (SELECT {id_col} FROM {table} "  # noqa: S608 (constant names)
        f"WHERE {id_col} IS NOT NULL "
        f"GROUP BY {id_col} HAVING count(*) > 1))",
    )


# The numeric columns of the inputs, read with growthflow.sql.number().
NUMERIC_COLUMNS = (
    ("session_sources", "holder_engagement"),
    ("session_sources", "closer_engagement"),
    ("session_sources", "impression_interaction"),
    ("conversions", "revenue"),
    ("session_costs", "cost"),
)
Kinds = tuple[tuple[str, str], ...]  # ((table.column, kind), ...): hashable, for @cache


def _number(kinds: Kinds, dialect: str, table: str, alias: str, column: str) -> str:
    return number(f"{alias}.{column}", dialect, dict(kinds).get(f"{table}.{column}", "number"))


@cache
def _session_rules(dialect: str, dedupe: bool, alias: str, kinds: Kinds) -> TableRules:
    s = alias
    flags = " AND ".join(
        f"{_number(kinds, dialect, 'session_sources', s, flag)} IN (0, 1)"
        for flag in ("holder_engagement", "closer_engagement", "impression_interaction")
    )
    rules = [
        (
            "missing session_id or user_id",
            f"({s}.session_id IS NOT NULL AND {s}.user_id IS NOT NULL)",
        ),
        ("unparsable event_date", valid_date(f"{s}.event_date", dialect)),
        ("unparsable event_time", valid_time(f"{s}.event_time", dialect)),
        (
            "missing channel_name",
            f"({s}.channel_name IS NOT NULL AND trim({s}.channel_name) <> '')",
        ),
        ("engagement flag not 0/1", f"({flags})"),
    ]
    if dedupe:
        rules.append(_duplicate_rule("session_sources", "session_id", s))
    return TableRules("session_sources", "session_id", s, tuple(rules))


@cache
def _conversion_rules(dialect: str, dedupe: bool, alias: str, kinds: Kinds) -> TableRules:
    c = alias
    revenue = _number(kinds, dialect, "conversions", c, "revenue")
    rules = [
        ("missing conv_id or user_id", f"({c}.conv_id IS NOT NULL AND {c}.user_id IS NOT NULL)"),
        ("unparsable conv_date", valid_date(f"{c}.conv_date", dialect)),
        ("unparsable conv_time", valid_time(f"{c}.conv_time", dialect)),
        ("revenue missing, negative or not a number", f"({revenue} >= 0)"),
    ]
    if dedupe:
        rules.append(_duplicate_rule("conversions", "conv_id", c))
    return TableRules("conversions", "conv_id", c, tuple(rules))


@cache
def _cost_rules(dialect: str, dedupe: bool, alias: str, kinds: Kinds) -> TableRules:
    k = alias
    cost = _number(kinds, dialect, "session_costs", k, "cost")
    rules = [
        ("missing session_id", f"({k}.session_id IS NOT NULL)"),
        # A session's cost is spend: a negative one is an error in the data, not a refund
        ("cost negative or not a number", f"({k}.cost IS NULL OR {cost} >= 0)"),
    ]
    if dedupe:
        rules.append(_duplicate_rule("session_costs", "session_id", k))
    return TableRules("session_costs", "session_id", k, tuple(rules))


@dataclass(frozen=True)
class InputRules:
    """The rules of the three input tables for one database."""

    dialect: str
    sessions_dedupe: bool
    conversions_dedupe: bool
    costs_dedupe: bool
    kinds: Kinds = ()  # the declared kind of each numeric column (PostgreSQL)

    @classmethod
    def for_engine(cls, engine: sa.Engine) -> InputRules:
        # Duplicate ids are only possible (and only checked) when the user's table lacks a key.
        inspector = sa.inspect(engine)
        types = {
            table: {c["name"].lower(): c["type"] for c in inspector.get_columns(table)}
            for table in {table for table, _ in NUMERIC_COLUMNS}
        }
        kinds = tuple((f"{t}.{c}", column_kind(types[t].get(c))) for t, c in NUMERIC_COLUMNS)
        return cls(
            dialect=engine.dialect.name,
            sessions_dedupe=not has_unique_key(engine, "session_sources", ["session_id"]),
            conversions_dedupe=not has_unique_key(engine, "conversions", ["conv_id"]),
            costs_dedupe=not has_unique_key(engine, "session_costs", ["session_id"]),
            kinds=kinds,
        )

    def sessions(self, alias: str = "s") -> TableRules:
        return _session_rules(self.dialect, self.sessions_dedupe, alias, self.kinds)

    def conversions(self, alias: str = "c") -> TableRules:
        return _conversion_rules(self.dialect, self.conversions_dedupe, alias, self.kinds)

    def costs(self, alias: str = "k") -> TableRules:
        return _cost_rules(self.dialect, self.costs_dedupe, alias, self.kinds)

    def number(self, table: str, alias: str, column: str) -> str:
        """SQL for ``alias.column`` of ``table`` as a finite number, or NULL."""
        return _number(self.kinds, self.dialect, table, alias, column)

    def reportable_day(self, alias: str) -> str:
        """SQL true when ``alias.channel_name`` and ``alias.event_date`` can key a report row.

        Spend is real even when a session is unusable for journeys (bad time or flags), so a
        session's cost is reported whenever its channel and date are usable.
        """
        session = dict(self.sessions(alias).rules)
        return (
            f"(COALESCE({session['missing channel_name']}, false) "
            f"AND COALESCE({session['unparsable event_date']}, false))"
        )
