"""Typing and checking a file's records, vectorised with pyarrow: bronze text -> silver values.

Every record gets either silver values or exactly one quarantine reason (the first check it
fails, in column order). The rules come from the feed configuration; the per-type parsers
below are the only place that decides what a date, a number or a name is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from growthflow.commissions.config import MONEY_SCALE, Column, Feed
from growthflow.commissions.deals import parse_deals
from growthflow.commissions.parse import FileRejected, Records, header_names, split_fields

_NUMBER = r"^[+-]?(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?$"
_DATE = r"^(?P<y>[0-9]{4})[-/](?P<m>[0-9]{1,2})[-/](?P<d>[0-9]{1,2})(?:[ T].*)?$"
_MAX_INT_DIGITS = 14  # money up to 10^14 units: sums stay far inside 64-bit integers

WARN_DATE_FROM_FILE = "date missing or unparsable: day taken from the file name"
WARN_OTHER_DAY = "row dated another day than its file"


@dataclass
class Validated:
    """A file's records split into silver rows and quarantined rows."""

    silver: pa.Table  # columns: line, [day], the role's silver columns
    quarantine_lines: np.ndarray
    quarantine_reasons: list[str]
    quarantine_raw: list[str]
    warnings: list[tuple[str, str, int, int]] = field(default_factory=list)
    # (kind, subject, rows, first line)

    @property
    def reasons(self) -> Counter:
        return Counter(self.quarantine_reasons)


def match_columns(feed: Feed, header: str) -> list[Column | None]:
    """The configured column of each header field; rejects a file whose column set differs."""
    names = header_names(header)
    by_name = {c.name.lower(): c for c in feed.columns}
    matched = [by_name.get(n.lower()) for n in names]
    lowered = [n.lower() for n in names]
    unknown = [n for n, c in zip(names, matched, strict=True) if c is None]
    missing = [c.name for c in feed.columns if c.name.lower() not in lowered and not c.optional]
    if unknown or missing or len(set(lowered)) != len(lowered):
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unexpected {', '.join(unknown)}")
        if len(set(lowered)) != len(lowered):
            parts.append("a column appears twice")
        raise FileRejected("wrong column set", "; ".join(parts) + f" (header: {header[:200]})")
    return matched


def _trimmed(values: pa.Array) -> pa.Array:
    """Trimmed text, with empty values as null."""
    text = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def _on_distinct(values: pa.Array, fn) -> pa.Array:
    """Apply a string kernel once per distinct value (names and codes repeat a lot)."""
    encoded = pc.dictionary_encode(values)
    return pc.take(fn(encoded.dictionary), encoded.indices)


def normalise_name(values: pa.Array) -> pa.Array:
    return _on_distinct(values, lambda v: pc.replace_substring_regex(_trimmed(v), r"\s+", " "))


def name_key(values: pa.Array) -> pa.Array:
    """How names compare: case-insensitively, whitespace collapsed."""
    return _on_distinct(values, pc.utf8_lower)


def normalise_code(values: pa.Array) -> pa.Array:
    return _on_distinct(values, lambda v: pc.utf8_upper(_trimmed(v)))


def parse_number(text: pa.Array, *, whole: bool) -> tuple[pa.Array, pa.Array]:
    """Exact value (money: units of 1/10,000; integers: the integer) and a reason per value
    ('unparsable', 'decimals', 'fraction' or null). ``text`` is trimmed, non-null."""
    parts = pc.extract_regex(text, _NUMBER)
    int_part = pc.struct_field(parts, "int")
    frac = pc.struct_field(parts, "frac")
    has_digit = pc.or_kleene(
        pc.greater(pc.utf8_length(int_part), 0), pc.greater(pc.utf8_length(frac), 0)
    )
    ok = pc.and_kleene(pc.is_valid(parts), has_digit)
    ok = pc.and_kleene(ok, pc.less_equal(pc.utf8_length(int_part), _MAX_INT_DIGITS))
    ok = pc.fill_null(ok, False)  # no match: null parts, and null must not pass as "no reason"
    reason = pc.if_else(ok, pa.scalar(None, pa.string()), "unparsable")
    frac_digits = pc.utf8_length(frac)
    if whole:
        fraction_zero = pc.match_substring_regex(frac, r"^0*$")
        reason = pc.if_else(pc.and_kleene(ok, pc.invert(fraction_zero)), "fraction", reason)
    else:
        reason = pc.if_else(pc.and_kleene(ok, pc.greater(frac_digits, 4)), "decimals", reason)
    good = pc.is_null(reason)
    int_value = pc.cast(
        pc.if_else(pc.and_kleene(good, pc.greater(pc.utf8_length(int_part), 0)), int_part, "0"),
        pa.int64(),
    )
    if whole:
        value = int_value
    else:
        frac4 = pc.utf8_slice_codeunits(pc.utf8_rpad(pc.if_else(good, frac, ""), 4, "0"), 0, 4)
        value = pc.add(pc.multiply(int_value, MONEY_SCALE), pc.cast(frac4, pa.int64()))
    negative = pc.starts_with(text, "-")
    value = pc.if_else(negative, pc.negate(value), value)
    return pc.if_else(good, value, pa.scalar(None, pa.int64())), reason


def parse_day(text: pa.Array) -> pa.Array:
    """The date part of a timestamp as a date, or null: YYYY-MM-DD or YYYY/MM/DD (one-digit
    month or day accepted), optionally followed by a time after a space or a T."""
    # Parsed once per distinct text before the first space: a file holds few days.
    first = pc.list_element(pc.split_pattern(pc.fill_null(text, ""), " ", max_splits=1), 0)
    return _on_distinct(first, _parse_days)


def _parse_days(text: pa.Array) -> pa.Array:
    parts = pc.extract_regex(text, _DATE)
    iso = pc.binary_join_element_wise(
        pc.struct_field(parts, "y"),
        pc.utf8_lpad(pc.struct_field(parts, "m"), 2, "0"),
        pc.utf8_lpad(pc.struct_field(parts, "d"), 2, "0"),
        "-",
    )
    parsed = pc.strptime(iso, format="%Y-%m-%d", unit="s", error_is_null=True)
    day = pc.cast(parsed, pa.date32())
    # strptime may roll 2024-02-30 over to March: keep only dates that read back the same.
    same = pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), iso)
    return pc.if_else(pc.fill_null(same, False), day, pa.scalar(None, pa.date32()))


def _first_line(lines: np.ndarray, mask: np.ndarray) -> int:
    return int(lines[np.argmax(mask)])


def validate(
    feed: Feed, records: Records, file_day: date | None, matched: list[Column | None]
) -> Validated:
    """Silver values and quarantine reasons for every record of one file."""
    columns, wellformed = split_fields(records.raw, len(matched))
    n = len(records)
    null_reason = pa.nulls(n, pa.string())
    reason = pc.if_else(pa.array(wellformed, pa.bool_()), null_reason, "wrong number of fields")
    values: dict[str, pa.Array] = {}
    present = {c.name: col for c, col in zip(matched, columns, strict=True) if c is not None}
    warnings: list[tuple[str, str, int, int]] = []
    for column in feed.columns:
        raw = present.get(column.name, pa.nulls(n, pa.string()))
        text = _trimmed(raw)
        missing = pc.is_null(text)
        col_reason = null_reason
        if column.required:
            col_reason = pc.if_else(missing, f"missing {column.name}", null_reason)
        target = column.target
        if column.type == "date":
            day = parse_day(text)
            if file_day is not None:
                fallback = pc.is_null(day)
                day = pc.fill_null(day, pa.scalar(file_day, pa.date32()))
                other = pc.not_equal(day, pa.scalar(file_day, pa.date32()))
                values["day"] = day
                for kind, mask in ((WARN_DATE_FROM_FILE, fallback), (WARN_OTHER_DAY, other)):
                    hits = pc.and_kleene(mask, pa.array(wellformed)).to_numpy(zero_copy_only=False)
                    if hits.any():
                        warnings.append(
                            (kind, column.name, int(hits.sum()), _first_line(records.lines, hits))
                        )
            continue
        if column.type in ("money", "integer"):
            number, why = parse_number(pc.fill_null(text, "0"), whole=column.type == "integer")
            why = pc.if_else(missing, pa.scalar(None, pa.string()), why)
            messages = {
                "unparsable": f"unparsable number in {column.name}",
                "decimals": f"more than 4 decimals in {column.name}",
                "fraction": f"not a whole number in {column.name}",
            }
            for code, message in messages.items():
                col_reason = pc.if_else(
                    pc.fill_null(pc.equal(why, code), False), message, col_reason
                )
            number = pc.if_else(missing, pa.scalar(None, pa.int64()), number)
            if column.min is not None:
                low = pc.fill_null(
                    pc.less(number, column.min * (MONEY_SCALE if column.type == "money" else 1)),
                    False,
                )
                word = "negative" if column.min == 0 else f"below {column.min}:"
                col_reason = pc.if_else(
                    pc.and_kleene(low, pc.is_null(col_reason)), f"{word} {column.name}", col_reason
                )
            values[f"{target}_e4" if column.type == "money" else target] = number
        elif column.type == "code":
            values[target] = normalise_code(text)
        elif column.type == "name":
            name = normalise_name(text)
            values[target] = name
            values[f"{target}_key"] = name_key(name)
        elif column.type == "deal":
            deal = parse_deals(text)
            col_reason = pc.if_else(
                pc.and_kleene(pc.invert(missing), pc.is_null(deal.field("kind"))),
                "unknown deal",
                col_reason,
            )
            values["deal"] = deal.field("label")
            values["deal_kind"] = deal.field("kind")
            values["deal_fee_e4"] = deal.field("fee_e4")
            values["deal_per_click"] = deal.field("per_click")
        else:
            values[target] = text
        reason = pc.coalesce(reason, col_reason)
    if feed.key is not None:
        reason = _flag_duplicates(feed, values, reason)
    bad = pc.is_valid(reason).to_numpy(zero_copy_only=False)
    keep = pa.array(~bad)
    silver = pa.table({"line": pa.array(records.lines), **values}).filter(keep)
    quarantine_idx = np.flatnonzero(bad)
    return Validated(
        silver=silver,
        quarantine_lines=records.lines[quarantine_idx],
        quarantine_reasons=pc.take(reason, pa.array(quarantine_idx)).to_pylist(),
        quarantine_raw=[records.raw[i] for i in quarantine_idx],
        warnings=warnings,
    )


def _flag_duplicates(feed: Feed, values: dict[str, pa.Array], reason: pa.Array) -> pa.Array:
    """Snapshot files: a later row with the key of an earlier usable row is quarantined."""
    key_column = next(c for c in feed.columns if c.name == feed.key)
    keys = values.get(
        f"{key_column.target}_key" if key_column.type == "name" else key_column.target
    ).to_pylist()
    usable = pc.is_null(reason).to_pylist()
    seen: set = set()
    flags = []
    for key, ok in zip(keys, usable, strict=True):
        duplicate = ok and key in seen
        if ok:
            seen.add(key)
        flags.append(f"duplicate {feed.key}" if duplicate else None)
    return pc.coalesce(reason, pa.array(flags, pa.string()))
