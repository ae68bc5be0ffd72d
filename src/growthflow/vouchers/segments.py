"""Customer segments: named sets of integer bands over one customer measure.

A band is written ``"0-4"`` (both bounds inclusive), ``"38+"`` (38 and more) or, when the label
should differ from its bounds, ``{label: "180+", min: 181}``. The YAML file passed with
``--segments`` maps segment names to their measure and bands::

    frequent_segment:
      field: total_orders
      bands: ["0-4", "5-13", "14-37", "38+"]
    recency_segment:
      field: recency_days
      bands: ["0-29", "30-60", "61-90", "91-120", "121-180", {label: "180+", min: 181}]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from growthflow.errors import ConfigError, describe_errors

Measure = Literal["total_orders", "recency_days"]
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_OPEN = re.compile(r"^\s*(\d+)\s*\+\s*$")


class Band(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Printable ASCII: the GET endpoint sends the band in an HTTP header.
    label: str = Field(min_length=1, max_length=100, pattern=r"^[\x20-\x7e]+$")
    min: int = Field(ge=0)
    max: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_label(cls, value):
        if isinstance(value, str):
            if m := _RANGE.match(value):
                return {"label": value.strip(), "min": int(m[1]), "max": int(m[2])}
            if m := _OPEN.match(value):
                return {"label": value.strip(), "min": int(m[1]), "max": None}
            raise ValueError(f"band {value!r} is neither 'a-b' nor 'a+'")
        return value

    @model_validator(mode="after")
    def _check(self) -> Band:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"band {self.label!r}: max {self.max} is below min {self.min}")
        return self

    def contains(self, value: int) -> bool:
        return value >= self.min and (self.max is None or value <= self.max)


class Segment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: Measure
    bands: list[Band] = Field(min_length=1)

    @field_validator("bands")
    @classmethod
    def _no_overlap(cls, bands: list[Band]) -> list[Band]:
        ordered = sorted(bands, key=lambda b: b.min)
        for low, high in zip(ordered, ordered[1:], strict=False):
            if low.max is None or low.max >= high.min:
                raise ValueError(f"bands {low.label!r} and {high.label!r} overlap")
        if len({b.label for b in bands}) != len(bands):
            raise ValueError("band labels must be unique")
        return ordered

    def band_of(self, value: int) -> Band | None:
        return next((b for b in self.bands if b.contains(value)), None)


DEFAULT_SEGMENTS: dict[str, Segment] = {
    "frequent_segment": Segment(field="total_orders", bands=["0-4", "5-13", "14-37", "38+"]),
    "recency_segment": Segment(
        field="recency_days",
        bands=["0-29", "30-60", "61-90", "91-120", "121-180", {"label": "180+", "min": 181}],
    ),
}


def load_segments(path: Path | str | None = None) -> dict[str, Segment]:
    """The default segments, or those of a YAML file."""
    if path is None:
        return dict(DEFAULT_SEGMENTS)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"segments file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"segments file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"segments file {path} must map segment names to segments")
    try:
        return {str(name): Segment.model_validate(spec) for name, spec in data.items()}
    except ValidationError as exc:
        raise ConfigError(f"invalid segments in {path}: {describe_errors(exc.errors())}") from None
