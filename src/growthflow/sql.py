"""SQL fragments that differ between SQLite and PostgreSQL, shared by the pipelines.

Each returns constant SQL text for a column reference (never a value): composing them into
statements keeps every value a bound parameter.
"""

from __future__ import annotations

import math

import sqlalchemy as sa

_PG_DATE_RE = r"'^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$'"
_PG_TIME_RE = r"'^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$'"


def valid_date(col: str, dialect: str) -> str:
    if dialect == "sqlite":
        # date() alone accepts 2023-02-30; a +0 days shift normalises it, so compare.
        return f"(date({col}, '+0 days') = {col})"
    # to_date() raises on 2023-02-30, so check the shape first, then the day of the month.
    return (
        f"(CASE WHEN {col} ~ {_PG_DATE_RE} THEN "
        f"CAST(substr({col}, 9, 2) AS integer) <= CAST(extract(day FROM "
        f"date_trunc('month', to_date(substr({col}, 1, 7), 'YYYY-MM')) "
        f"+ interval '1 month - 1 day') AS integer) ELSE false END)"
    )


def valid_time(col: str, dialect: str) -> str:
    if dialect == "sqlite":
        # time() reads 24:00:00 to 24:59:59 back unchanged: those hours are not times of day
        return f"(time({col}) = {col} AND {col} < '24')"
    return f"({col} ~ {_PG_TIME_RE})"


# A decimal number as text, optionally signed, with an exponent of at most three digits
# (larger ones overflow numeric; they are not finite doubles anyway). Spaces around are fine.
_PG_NUMBER_RE = r"'^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?\s*$'"
_MAX_DOUBLE = "1.7e308"


def number(col: str, dialect: str, kind: str = "number") -> str:
    """SQL for the value of ``col`` as a finite double precision number, or NULL.

    Numbers are read as they are, and so are numbers written as text ('12.5', ' 3 ', '1e5'):
    a table imported from CSV gives the figures of a typed one. Text that is not a number,
    NaN and infinities give NULL. ``kind`` is the column's declared kind on PostgreSQL
    (``number``, ``text`` or ``boolean``); a SQLite column can hold any type in any row.
    """
    if dialect == "sqlite":
        # Comparing with CAST(... AS NUMERIC) applies numeric affinity to the value: text that
        # is a well-formed number becomes that number and compares equal, other text does not.
        return (
            f"(CASE WHEN {col} = CAST({col} AS NUMERIC) "
            f"AND abs(CAST({col} AS REAL)) <= {_MAX_DOUBLE} THEN CAST({col} AS REAL) END)"
        )
    if kind == "text":
        return (
            f"(CASE WHEN {col} ~ {_PG_NUMBER_RE} THEN CASE WHEN abs(CAST({col} AS numeric)) "
            f"<= {_MAX_DOUBLE} THEN CAST({col} AS double precision) END END)"
        )
    if kind == "boolean":
        return f"CAST(CAST({col} AS integer) AS double precision)"
    # NaN compares above every number on PostgreSQL, so this is false for NaN too
    return f"(CASE WHEN abs({col}) <= {_MAX_DOUBLE} THEN CAST({col} AS double precision) END)"


def exact_sum(expr: str, dialect: str) -> str:
    """SUM of double precision values whose result does not depend on the order of the rows.

    A float sum depends on the order of its terms in the last bits, and plans change that
    order (PostgreSQL's parallel workers, SQLite's join order when a query reads fewer rows).
    PostgreSQL sums in numeric, exactly, and rounds once; SQLite calls ``gf_exact_sum``, an
    aggregate every growthflow SQLite connection has (:func:`fsum_aggregate`), which rounds the
    exact sum once too. Both give the correctly rounded sum: equal on any plan.
    """
    if dialect == "sqlite":
        return f"gf_exact_sum({expr})"
    return f"CAST(SUM(CAST({expr} AS numeric)) AS double precision)"


class ExactSum:
    """The ``gf_exact_sum`` aggregate of SQLite connections: :func:`math.fsum` of the non-NULL
    values (NULL when there are none, like SUM)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        return math.fsum(self.values) if self.values else None


def column_kind(type_: object) -> str:
    """``text``, ``boolean`` or ``number``: how :func:`number` reads a column of that type."""
    if isinstance(type_, sa.String):
        return "text"
    if isinstance(type_, sa.Boolean):
        return "boolean"
    return "number"


def collate_c(dialect: str) -> str:
    """Byte-order collation, so PostgreSQL sorts text exactly like SQLite."""
    return ' COLLATE "C"' if dialect == "postgresql" else ""
