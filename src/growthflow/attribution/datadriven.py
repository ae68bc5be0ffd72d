"""The data-driven models' training step and their touchpoint attribution.

``train_model`` runs after the journeys step: it reads the run's paths (``paths.py``), fits
the Markov chain (``markov.py``) or the Shapley values (``shapley.py``) and stores, in one
transaction replacing the run's earlier rows, each channel's credit in
``gf_model_channel_credit`` (with ``gf_model_runs`` and, for markov, the transition counts).

The attribute step then shares each conversion among its journey's sessions by these credits
(:func:`credit_model`): a channel's part of the journey is proportional to its credit among the
journey's channels, split equally among its sessions; a journey whose channels all have no
credit splits equally among its sessions. So every journey sums to 1, like every other model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.models import Attribution, JourneyBatch
from growthflow.attribution.providers import model_context
from growthflow.attribution.rules import InputRules
from growthflow.database import bulk_insert

if TYPE_CHECKING:
    from growthflow.attribution.paths import TrainingWindow
    from growthflow.attribution.pipeline import RunConfig

DATA_DRIVEN = ("markov", "shapley")
ShapleyValue = Literal["exact", "subset"]


@dataclass
class TrainStats:
    model: str
    window: TrainingWindow
    distinct_paths: int = 0
    conversions: int = 0
    null_paths: int = 0
    revenue: float = 0.0
    conversion_probability: float | None = None
    channels: list[dict] = field(default_factory=list)  # the stored credit rows
    merged: list[str] = field(default_factory=list)  # shapley: channels merged into (other)
    negative: list[str] = field(default_factory=list)  # shapley: channels given no credit


def _state_name(codes: tuple[int, ...], channels: list[str]) -> str:
    return " > ".join(channels[c] for c in codes)


def train_model(engine: sa.Engine, run_id: str, config: RunConfig, rules: InputRules) -> TrainStats:
    """Fit ``config.model`` on the run's paths and store the channel credits."""
    from growthflow.attribution.markov import CONVERSION, NULL, START, markov_model
    from growthflow.attribution.paths import read_paths, training_window
    from growthflow.attribution.shapley import shapley_model

    window = training_window(
        engine,
        run_id,
        config.start,
        config.end,
        config.lookback_days,
        config.train_start,
        config.train_end,
    )
    paths = read_paths(engine, run_id, rules, window)
    stats = TrainStats(
        model=config.model,
        window=window,
        distinct_paths=paths.n_paths,
        conversions=paths.total_conversions,
        null_paths=int(paths.nulls.sum()),
        revenue=paths.total_revenue,
    )
    transitions = []
    if config.model == "markov":
        fitted = markov_model(paths, config.order)
        settings = {"order": config.order}
        stats.conversion_probability = fitted.conversion_probability
        names = fitted.channels
        effect, revenue_effect, shapley = fitted.removal_effect, fitted.revenue_removal_effect, None
        special = {START: "(start)", CONVERSION: "(conversion)", NULL: "(null)"}
        states = [_state_name(s, names) for s in fitted.states]
        source, target, count = fitted.transitions
        transitions = [  # in the table's column order, for bulk_insert
            (run_id, special.get(a) or states[a], special.get(b) or states[b], n)
            for a, b, n in zip(source.tolist(), target.tolist(), count.tolist(), strict=True)
        ]
    else:
        fitted = shapley_model(paths, config.shapley_value)
        settings = {"value": config.shapley_value}
        names = fitted.channels
        shapley, revenue_effect, effect = fitted.shapley_value, fitted.revenue_shapley_value, None
        stats.merged = fitted.merged
        stats.negative = [n for n, v in zip(names, shapley, strict=True) if v < 0]
    conversions, revenue = fitted.credit(stats.conversions, stats.revenue)
    stats.channels = [
        {
            "run_id": run_id,
            "model": config.model,
            "channel_name": name,
            "removal_effect": None if effect is None else float(effect[i]),
            "shapley_value": None if shapley is None else float(shapley[i]),
            "conversions": float(conversions[i]),
            "revenue": float(revenue[i]),
            "revenue_effect": float(revenue_effect[i]),
        }
        for i, name in enumerate(names)
    ]
    if stats.merged:  # every merged channel is credited as (other)
        settings["merged_into_other"] = len(stats.merged)
    with engine.begin() as conn:
        for table in schema.MODEL_TABLES:
            conn.execute(sa.delete(table).where(table.c.run_id == run_id))
        if stats.channels:
            conn.execute(sa.insert(schema.model_channel_credit), stats.channels)
        bulk_insert(conn, schema.markov_transitions, transitions)
        conn.execute(
            sa.insert(schema.model_runs).values(
                run_id=run_id,
                model=config.model,
                settings=json.dumps(settings, sort_keys=True),
                train_start=window.start.isoformat(),
                train_end=window.end.isoformat(),
                distinct_paths=stats.distinct_paths,
                conversions=stats.conversions,
                null_paths=stats.null_paths,
                revenue=stats.revenue,
                conversion_probability=stats.conversion_probability,
                merged_channels=json.dumps(stats.merged) if stats.merged else None,
            )
        )
    return stats


def with_merged(credit: dict[str, float], merged: list[str]) -> dict[str, float]:
    """Channel credits with every channel merged into ``(other)`` credited as ``(other)``."""
    from growthflow.attribution.shapley import OTHER

    return credit | dict.fromkeys(merged, credit.get(OTHER, 0.0)) if merged else credit


def credit_model(batch: JourneyBatch, credit: dict[str, float]) -> Attribution:
    """Each journey's conversion shared by its channels' ``credit`` (see the module doc)."""
    names, codes = np.unique(batch.channel, return_inverse=True)
    weight = np.array([max(credit.get(str(n), 0.0), 0.0) for n in names])[codes]
    pair = batch.journey_of * len(names) + codes
    _, inverse, repeats = np.unique(pair, return_inverse=True, return_counts=True)
    per_session = weight / repeats[inverse]  # the channel's weight, split among its sessions
    sums = batch.per_session(batch.journey_sum(per_session))
    even = 1.0 / batch.per_session(batch.lengths)
    ihc = np.divide(per_session, sums, out=even.copy(), where=sums > 0)
    return Attribution.without_phases(ihc)


class CreditProvider:
    """Attributes with the channel credits a run's training step stored."""

    def __init__(self, engine: sa.Engine, run_id: str, model: str):
        credit_table, runs = schema.model_channel_credit, schema.model_runs
        with engine.connect() as conn:
            trained = conn.execute(
                sa.select(runs.c.merged_channels).where(runs.c.run_id == run_id)
            ).first()
            if trained is None:
                raise LookupError(f"run {run_id} has no trained {model} model")
            rows = conn.execute(
                sa.select(credit_table.c.channel_name, credit_table.c.conversions).where(
                    credit_table.c.run_id == run_id
                )
            ).all()
        merged = json.loads(trained.merged_channels) if trained.merged_channels else []
        self.credit = with_merged({name: float(value) for name, value in rows}, merged)
        self.name = f"local:{model}"
        # the learned credits decide the numbers: a retrained model that learned anything
        # else (to the last bit) recomputes every journey
        self.context = model_context(
            self.name, sorted((k, repr(v)) for k, v in self.credit.items())
        )

    def attribute(self, batch: JourneyBatch) -> Attribution:
        return credit_model(batch, self.credit)
