"""Attribution providers: where a batch of journeys gets its numbers.

A provider takes a :class:`JourneyBatch` and returns an :class:`Attribution`. The local
provider runs one of the registered models in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from growthflow.attribution.models import (
    Attribution,
    JourneyBatch,
    ModelParams,
    get_model,
    load_params,
)


class Provider(Protocol):
    #: recorded with every stored attribution (``gf_attributed_conversions.model``)
    name: str

    def attribute(self, batch: JourneyBatch) -> Attribution: ...


class LocalProvider:
    """Runs a model from :data:`growthflow.attribution.models.MODELS` in-process."""

    def __init__(self, model: str = "ihc", params: ModelParams | Path | None = None):
        self._fn = get_model(model)
        self.params = params if isinstance(params, ModelParams) else load_params(params)
        self.name = f"local:{model}"

    def attribute(self, batch: JourneyBatch) -> Attribution:
        return self._fn(batch, self.params)
