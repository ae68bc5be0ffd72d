"""Attribution providers: where a batch of journeys gets its numbers.

A provider takes a :class:`JourneyBatch` and returns an :class:`Attribution`. The local
provider runs one of the registered models in-process.
"""

from __future__ import annotations

import json
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
    #: Optional: everything besides the journey that decides the provider's numbers (model,
    #: parameters, code version), as text. A provider that has one lets a rerun keep the stored
    #: attribution of journeys that did not change
    #: (:func:`growthflow.attribution.attribute.journey_fingerprints`).
    # context: str

    def attribute(self, batch: JourneyBatch) -> Attribution: ...


class LocalProvider:
    """Runs a model from :data:`growthflow.attribution.models.MODELS` in-process."""

    def __init__(self, model: str = "ihc", params: ModelParams | Path | None = None):
        self._fn = get_model(model)
        self.params = params if isinstance(params, ModelParams) else load_params(params)
        self.name = f"local:{model}"
        self.context = model_context(self.name, self.params.model_dump(mode="json"))

    def attribute(self, batch: JourneyBatch) -> Attribution:
        return self._fn(batch, self.params)


def model_context(name: str, settings: object) -> str:
    """A local provider's :attr:`Provider.context`: its name, its settings (JSON-able) and
    growthflow's version (a release may change a model's numbers)."""
    from growthflow import __version__

    return json.dumps(
        {"provider": name, "settings": settings, "growthflow": __version__}, sort_keys=True
    )
