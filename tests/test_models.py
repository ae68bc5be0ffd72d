"""Attribution models: invariants on random batches, exact values on small journeys, and the
ihc model against real IHC API responses (skipped without ../shared)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from growthflow.attribution.models import MODELS, JourneyBatch, load_params
from growthflow.attribution.providers import LocalProvider
from growthflow.errors import ConfigError

from conftest import SHARED, make_batch

PARAMS = load_params()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_ihc_sums_to_one_per_journey_for_every_model(model):
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 40, 300)
    n = int(lengths.sum())
    hours = np.concatenate([np.sort(rng.exponential(30, k)) for k in lengths])
    batch = make_batch(
        lengths,
        hours=hours,
        channels=rng.choice(["A", "B", "C"], n).tolist(),
        holder=rng.integers(0, 2, n),
        closer=rng.integers(0, 2, n),
    )
    result = LocalProvider(model).attribute(batch)
    np.testing.assert_allclose(batch.journey_sum(result.ihc), 1.0, atol=1e-12)
    assert result.ihc.min() >= 0 and result.ihc.max() <= 1 + 1e-12


def ihc(model, lengths, **kw):
    return LocalProvider(model).attribute(make_batch(lengths, **kw)).ihc


def test_the_last_session_of_each_journey_carries_the_conversion():
    batch = make_batch([3, 1, 2])
    np.testing.assert_array_equal(batch.conversion, [0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(batch.position, [0, 1, 2, 0, 0, 1])


def test_select_and_concat_keep_journeys_whole():
    batch = make_batch([3, 1, 2], channels=list("abcdef"))
    picked = batch.select(np.array([2, 0]))
    assert picked.conv_ids.tolist() == ["c2", "c0"]
    assert picked.channel.tolist() == ["e", "f", "a", "b", "c"]
    np.testing.assert_array_equal(picked.offsets, [0, 2, 5])
    both = JourneyBatch.concat([picked, batch.select(np.array([1]))])
    assert both.conv_ids.tolist() == ["c2", "c0", "c1"]
    assert both.session_ids.tolist() == ["s4", "s5", "s0", "s1", "s2", "s3"]
    np.testing.assert_array_equal(both.conversion, [0, 1, 0, 0, 1, 1])


def test_classic_models_exact_values():
    np.testing.assert_allclose(ihc("linear", [4]), [0.25] * 4)
    np.testing.assert_allclose(ihc("first-touch", [3, 1]), [1, 0, 0, 1])
    np.testing.assert_allclose(ihc("last-touch", [3, 1]), [0, 0, 1, 1])
    np.testing.assert_allclose(
        ihc("position-based", [1, 2, 3, 5]),
        [1, 0.5, 0.5, 0.4, 0.2, 0.4, 0.4, 0.2 / 3, 0.2 / 3, 0.2 / 3, 0.4],
    )


def test_time_decay_halves_per_half_life_from_the_conversion():
    # Sessions 168 h apart, conversion 1 h after the last: weights 1/2 and 1 -> 1/3, 2/3.
    values = ihc("time-decay", [2], hours=[0.0, 168.0], conv_gap_h=1.0)
    np.testing.assert_allclose(values, [1 / 3, 2 / 3])
    # Journeys far older than the half-life must not underflow to 0/0.
    far = ihc("time-decay", [2], hours=[0.0, 168.0], conv_gap_h=1e6)
    np.testing.assert_allclose(far, [1 / 3, 2 / 3])


def test_ihc_single_session_journey():
    result = LocalProvider("ihc").attribute(make_batch([1, 1], holder=[1, 0]))
    np.testing.assert_array_equal(result.initializer, [1, 1])
    np.testing.assert_array_equal(result.holder, [0, 0])
    np.testing.assert_array_equal(result.closer, [1, 1])
    np.testing.assert_array_equal(result.ihc, [1, 1])


# The shipped curves (model_params.toml), as plain (hours, membership) lists for the references.
INITIALIZER = (PARAMS.ihc.initializer.hours, PARAMS.ihc.initializer.membership)
CLOSER = (PARAMS.ihc.closer.hours, PARAMS.ihc.closer.membership)


def holder_reference(init, closer, engaged, kept, power=8.0):
    """The holder's form (issue 12), written out per session: a and b are the initializer and
    closer memberships' shares over the whole journey (sessions before a restart included)."""
    out = []
    for i in range(len(init)):
        a, b = init[i] / sum(init), closer[i] / sum(closer)
        spread = (1 - a) * (1 - b) + ((1 - b) ** 2 * a**power + (1 - a) ** 2 * b**power) / 16
        out.append(engaged[i] * kept[i] * math.sqrt(spread))
    return np.array(out) / sum(out)


def test_ihc_phases_follow_membership_curves():
    # s0 first (initializer 1); s1 1 h later (under 2 h: 0); s2 29 h after s1 (on the curve).
    # Closer: every session is closer-engaged; by hours before the last (30, 29, 0).
    result = LocalProvider("ihc").attribute(make_batch([3], hours=[0.0, 1.0, 30.0]))
    init = np.array([1.0, 0.0, np.interp(29.0, *INITIALIZER)])
    np.testing.assert_allclose(result.initializer, init / init.sum())
    closer = np.interp([30.0, 29.0, 0.0], *CLOSER)
    np.testing.assert_allclose(result.closer, closer / closer.sum())
    holder = holder_reference(init, closer, [1, 1, 1], [1, 1, 1])
    np.testing.assert_allclose(result.holder, holder)
    w = PARAMS.ihc.phase_weights
    expected = (
        w.initializer * init / init.sum() + w.holder * holder + w.closer * closer / closer.sum()
    ) / (w.initializer + w.holder + w.closer)
    np.testing.assert_allclose(result.ihc, expected)


def test_ihc_holder_edge_a_session_holding_a_whole_phase():
    """A session holding the whole initializer phase (a = 1) gets W = (1 - b) / 4: here the
    first of two sessions 1 h apart (the second's initializer membership is 0)."""
    result = LocalProvider("ihc").attribute(make_batch([2], hours=[0.0, 1.0]))
    c = np.interp(1.0, *CLOSER)
    b = np.array([c, 1.0]) / (c + 1.0)
    w_first = (1 - b[0]) / 4
    w_second = math.sqrt((1 - 0) * (1 - b[1]) + (0 + 1 * b[1] ** 8) / 16)
    np.testing.assert_allclose(result.holder, np.array([w_first, w_second]) / (w_first + w_second))
    # holder_engagement 0: no holder share; the other session holds it all
    result = LocalProvider("ihc").attribute(make_batch([2], hours=[0.0, 1.0], holder=[0, 1]))
    np.testing.assert_allclose(result.holder, [0.0, 1.0])


def test_ihc_a_long_pause_restarts_the_journey():
    """Issue 12: a session 52.7 h or more after the previous one starts the journey again;
    every earlier session gets 0 in all three phases."""
    result = LocalProvider("ihc").attribute(make_batch([3, 3], hours=[0, 1, 101, 0, 60, 61]))
    np.testing.assert_allclose(result.ihc[:3], [0.0, 0.0, 1.0])
    for phase in (result.initializer, result.holder, result.closer):
        assert phase[0] == phase[1] == phase[3] == 0.0
    # second journey: s1 restarts (60 h), s2 1 h later has initializer 0; the holder's shares
    # count the dropped s0 (initializer 1, closer 0) in a and b
    np.testing.assert_allclose(result.initializer[3:], [0.0, 1.0, 0.0])
    closer = np.interp([61.0, 1.0, 0.0], *CLOSER)
    holder = holder_reference([1.0, 1.0, 0.0], closer, [1, 1, 1], [0, 1, 1])
    np.testing.assert_allclose(result.holder[3:], holder)
    assert result.ihc[3:].sum() == pytest.approx(1.0)
    # just under the threshold: no restart
    kept = LocalProvider("ihc").attribute(make_batch([2], hours=[0.0, 52.6]))
    assert kept.ihc[0] > 0


def test_ihc_closer_counts_engaged_sessions_and_always_the_last():
    result = LocalProvider("ihc").attribute(
        make_batch([3], hours=[0.0, 10.0, 10.5], closer=[1, 1, 0])
    )
    # The last session counts although it is not closer-engaged; the others by hours before it.
    closer = np.interp([10.5, 0.5, 0.0], *CLOSER)
    np.testing.assert_allclose(result.closer, closer / closer.sum())
    # No engaged session at all: the last session holds the whole closer phase.
    result = LocalProvider("ihc").attribute(make_batch([2], hours=[0.0, 0.5], closer=[0, 0]))
    np.testing.assert_allclose(result.closer, [0.0, 1.0])


def test_ihc_channel_weights_shift_credit(tmp_path: Path):
    params = tmp_path / "p.toml"
    params.write_text('[ihc.channel_weights."B"]\ninitializer = 3.0\nholder = 3.0\ncloser = 3.0\n')
    batch = make_batch([2], hours=[0.0, 20.0], channels=["A", "B"])
    plain = LocalProvider("ihc").attribute(batch).ihc
    weighted = LocalProvider("ihc", params).attribute(batch).ihc
    assert weighted[1] > plain[1]
    assert weighted.sum() == pytest.approx(1.0)


def test_parameter_file_errors_are_clear(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[ihc]\ninitializer = { hours = [2.0, 1.0], membership = [0.0, 1.0] }\n")
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_params(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("[ihc\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_params(tmp_path / "broken.toml")
    with pytest.raises(ConfigError, match="unknown model"):
        LocalProvider("magic")


TRACES = SHARED / "ihc_api_traces" / "ihc_api_traces.csv"


@pytest.mark.skipif(not TRACES.exists(), reason="../shared/datasets is not present")
def test_ihc_model_is_closer_to_the_real_api_than_linear_and_u_shaped():
    rows = sorted(
        csv.DictReader(TRACES.open()),
        key=lambda r: (r["journey_key"], r["timestamp"], r["session_id"]),
    )
    keys = [r["journey_key"] for r in rows]
    starts = [i for i in range(len(rows)) if i == 0 or keys[i] != keys[i - 1]]
    ts = np.array([r["timestamp"] for r in rows], dtype="datetime64[s]")
    batch = JourneyBatch(
        batch_no=0,
        conv_ids=np.array([keys[i] for i in starts], dtype=object),
        conv_ts=ts[np.r_[starts[1:], len(rows)] - 1],
        offsets=np.r_[starts, len(rows)],
        session_ids=np.array([r["session_id"] for r in rows], dtype=object),
        ts=ts,
        channel=np.array([r["channel_label"] for r in rows], dtype=object),
        holder_engagement=np.array([int(r["holder_engagement"]) for r in rows], dtype=np.int8),
        closer_engagement=np.array([int(r["closer_engagement"]) for r in rows], dtype=np.int8),
        impression_interaction=np.array(
            [int(r["impression_interaction"]) for r in rows], dtype=np.int8
        ),
    )
    truth = np.array([float(r["ihc"]) for r in rows])
    multi = batch.per_session(batch.lengths) >= 2
    errors = {
        m: np.abs(LocalProvider(m).attribute(batch).ihc - truth)[multi].mean()
        for m in ("ihc", "linear", "position-based")
    }
    # The README of the traces reports 0.186 (linear) and 0.183 (U-shaped) on these journeys.
    assert errors["linear"] == pytest.approx(0.186, abs=0.002)
    assert errors["ihc"] < errors["position-based"] < errors["linear"]
    # Issue 12: the restart rule, the closer's eligibility (the last session always), the
    # holder's form, the tie rule and the curves fitted to the API's answers took the mean
    # absolute error from 0.132 to 0.0004 (measured 2026-11-23: initializer 0.0004, holder
    # 0.0008, closer 0.0009), with the shipped defaults.
    assert errors["ihc"] < 0.0006
    result = LocalProvider("ihc").attribute(batch)
    for phase, bound in (("initializer", 0.0006), ("holder", 0.0012), ("closer", 0.0012)):
        observed = np.array([float(r[phase]) for r in rows])
        assert np.abs(getattr(result, phase) - observed)[multi].mean() < bound, phase
    np.testing.assert_allclose(batch.journey_sum(truth), 1.0, atol=2e-3)


def test_ihc_sessions_at_the_same_second_the_last_listed_is_the_initializer():
    """Issue 12: the API made the second-listed of two sessions at the same timestamp the
    initializer (journey 29-16c704db03b9f978 of the shared traces: initializer 0 and 1)."""
    result = LocalProvider("ihc").attribute(make_batch([2, 3], hours=[5.0, 5.0, 0.0, 0.0, 3.0]))
    np.testing.assert_allclose(result.initializer[:2], [0.0, 1.0])
    init = np.array([0.0, 1.0, np.interp(3.0, *INITIALIZER)])
    np.testing.assert_allclose(result.initializer[2:], init / init.sum())
    np.testing.assert_allclose(batch_sums(result.ihc, [2, 3]), [1.0, 1.0])


def batch_sums(values, lengths):
    return np.add.reduceat(values, np.r_[0, np.cumsum(lengths)[:-1]])
