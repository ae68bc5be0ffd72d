"""Reading a landing file: bytes -> records (raw text and line number) -> string columns.

A record is one CSV row; its line is the file line it starts on (the header is line 1). Bronze
keeps every record's raw text, so the silver step can parse it again from the database alone.
Files without a double quote (the common case) are split with vectorised pyarrow kernels;
files that quote fields go through Python's csv module, which handles quoted commas and line
breaks. Records with the wrong number of fields are kept as records and flagged, never dropped.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class FileRejected(Exception):  # noqa: N818 - a verdict on a file, raised and caught locally
    """The whole file cannot be loaded (empty, not UTF-8, wrong column set ...)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Records:
    header: str  # the header line as in the file
    lines: np.ndarray  # int64: the line each record starts on
    raw: list[str]  # each record's text (line breaks inside quotes kept)
    blank_lines: int = 0  # empty lines between records: not records, only counted

    def __len__(self) -> int:
        return len(self.raw)


def decode(data: bytes) -> str:
    """The file's text: UTF-8 (a byte-order mark is dropped), line ends normalised to \\n."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            "not UTF-8", f"byte {exc.start}: {data[exc.start : exc.start + 4]!r}"
        ) from None
    if "\x00" in text:
        raise FileRejected("not a text file", "it contains NUL bytes")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_records(text: str) -> Records:
    """The header line and the records after it."""
    physical = text.split("\n")
    if physical and physical[-1] == "":
        physical.pop()
    if not physical or not physical[0].strip():
        raise FileRejected("empty file" if not text.strip() else "no header on line 1")
    header, body = physical[0], physical[1:]
    if '"' not in text:
        numbers = [i for i, line in enumerate(body, 2) if line.strip()]
        raw = [body[i - 2] for i in numbers]
        return Records(header, np.asarray(numbers, dtype=np.int64), raw, len(body) - len(raw))
    # Quoted fields may hold line breaks: group physical lines into records with csv's rules.
    numbers, raw, blank = [], [], 0
    reader = csv.reader(body)
    start = 0
    try:
        for row in reader:
            end = reader.line_num
            if row and any(field.strip() for field in row) or len(row) > 1:
                numbers.append(start + 2)
                raw.append("\n".join(body[start:end]))
            else:
                blank += end - start
            start = end
    except csv.Error:
        # An unterminated quote swallows the rest of the file: keep the rest as one record.
        numbers.append(start + 2)
        raw.append("\n".join(body[start:]))
    return Records(header, np.asarray(numbers, dtype=np.int64), raw, blank)


def header_names(header: str) -> list[str]:
    return [name.strip() for name in next(csv.reader([header]), [])]


def split_fields(raw: list[str], width: int) -> tuple[list[pa.Array], np.ndarray]:
    """The records' fields as ``width`` string columns, and which records have ``width``
    fields (the others get nulls)."""
    if not raw:
        return [pa.array([], pa.string()) for _ in range(width)], np.zeros(0, dtype=bool)
    if not any('"' in r for r in raw):
        lists = pc.split_pattern(pa.array(raw, pa.string()), ",")
        mask = pc.list_value_length(lists).to_numpy(zero_copy_only=False) == width
        every = bool(mask.all())
        fields = pc.list_flatten(lists if every else lists.filter(pa.array(mask)))
        columns = [fields.take(np.arange(i, len(fields), width)) for i in range(width)]
        if not every:  # the others get nulls
            where = pa.array(np.cumsum(mask) - 1, mask=~mask)
            columns = [column.take(where) for column in columns]
        return columns, mask
    rows = [_csv_fields(r) for r in raw]
    mask = np.fromiter((len(r) == width for r in rows), dtype=bool, count=len(rows))
    padded = [r if ok else [None] * width for r, ok in zip(rows, mask, strict=True)]
    return [pa.array(col, pa.string()) for col in zip(*padded, strict=True)], mask


def _csv_fields(record: str) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(record, newline=""), strict=True))
    except csv.Error:
        return []
    if len(rows) == 1:
        return rows[0]
    return []  # not one record: malformed
