"""`growthflow attribution fit-ihc` (issue 12): fitting the local ihc model to IHC API answers."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from growthflow.attribution.fit import (
    COLUMNS,
    cross_validate,
    evaluate,
    fit_ihc,
    read_traces_csv,
    read_traces_db,
)
from growthflow.attribution.models import Curve, PhaseWeights, ihc_model, load_params
from growthflow.errors import InputDataError

from conftest import SHARED, conversion, make_batch, session

TRACES = SHARED / "ihc_api_traces" / "ihc_api_traces.csv"
BASE = load_params()


def write_traces(path: Path, params, seed: int = 0, journeys: int = 600) -> None:
    """Traces answered by the model itself with ``params``: random journeys of 1-6 sessions,
    gaps from minutes to days, in 20 requests."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, journeys).tolist()
    n = sum(lengths)
    gaps = np.where(rng.random(n) < 0.5, rng.exponential(1.5, n), rng.uniform(0, 60, n))
    batch = make_batch(
        lengths,
        hours=np.cumsum(gaps).tolist(),
        holder=rng.integers(0, 2, n).tolist(),
        closer=(rng.random(n) < 0.8).astype(int).tolist(),
    )
    result = ihc_model(batch, params)
    request = batch.per_session(np.arange(batch.n_journeys) % 20)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(batch.n_sessions):
            writer.writerow(
                [
                    batch.conv_id_per_session()[i],
                    request[i],
                    batch.session_ids[i],
                    str(batch.ts[i]).replace("T", " "),
                    batch.channel[i],
                    batch.holder_engagement[i],
                    batch.closer_engagement[i],
                    0,
                    result.initializer[i],
                    result.holder[i],
                    result.closer[i],
                    result.ihc[i],
                ]
            )


def test_fit_recovers_the_parameters_that_answered(tmp_path):
    """Round trip: traces made by the model with known curves and weights give them back."""
    init, closer = BASE.ihc.initializer, BASE.ihc.closer
    known = BASE.model_copy(
        update={
            "ihc": BASE.ihc.model_copy(
                update={
                    "initializer": Curve(
                        hours=init.hours,
                        membership=[min(1.0, m * 0.8 + 0.1) for m in init.membership],
                    ),
                    "closer": Curve(
                        hours=closer.hours, membership=[m**1.5 for m in closer.membership]
                    ),
                    "phase_weights": PhaseWeights(initializer=0.5, holder=0.2, closer=0.3),
                }
            )
        }
    )
    path = tmp_path / "traces.csv"
    write_traces(path, known)
    fitted = fit_ihc(read_traces_csv(path), BASE).ihc
    covered = np.asarray(init.hours) <= 60  # the gaps reach 60 h
    np.testing.assert_allclose(
        np.asarray(fitted.initializer.membership)[covered],
        np.asarray(known.ihc.initializer.membership)[covered],
        atol=2e-3,
    )
    np.testing.assert_allclose(fitted.closer.membership, known.ihc.closer.membership, atol=2e-3)
    w = fitted.phase_weights
    np.testing.assert_allclose([w.initializer, w.holder, w.closer], [0.5, 0.2, 0.3], atol=2e-3)
    errors = cross_validate(read_traces_csv(path), BASE)
    assert errors["fitted"]["ihc"] < 1e-3 < errors["base"]["ihc"]


def test_traces_that_are_not_api_answers_are_refused(tmp_path):
    path = tmp_path / "traces.csv"
    write_traces(path, BASE, journeys=50)
    rows = list(csv.reader(path.open()))
    rows[3][COLUMNS.index("holder")] = "0.9"  # a journey's holder no longer sums to 1
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(InputDataError, match="not IHC API answers: the holder values"):
        read_traces_csv(path)
    cli = subprocess.run(
        [sys.executable, "-m", "growthflow", "attribution", "fit-ihc", "--traces", str(path)]
        + ["--out", str(tmp_path / "p.toml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1 and "not IHC API answers" in cli.stderr
    assert "Traceback" not in cli.stderr and not (tmp_path / "p.toml").exists()
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputDataError, match="not a traces file"):
        read_traces_csv(tmp_path / "other.csv")


def test_fit_from_the_answers_stored_in_the_database_and_run_with_them(db, tmp_path):
    """Answers stored by --provider ihc-api runs (here: stored by the local model and marked
    as the API's) are read back as traces; the written file runs as --params."""
    sessions, conversions = [], []
    for u in range(12):
        for k in range(u % 4 + 1):
            sessions.append(session(f"s{u}_{k}", f"u{u}", "2023-09-02", f"0{k}:30:00"))
        conversions.append(conversion(f"c{u}", f"u{u}", "2023-09-02", "12:00:00"))
    db.load(sessions=sessions, conversions=conversions)
    db.run("2023-09-01", "2023-09-30")
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE gf_attributed_conversions SET model = 'ihc-api'"))
    traces = read_traces_db(db.engine)
    assert traces.batch.n_journeys == 12
    errors = cross_validate(traces, BASE, folds=3)
    assert errors["base"]["ihc"] < 1e-9  # the answers are the model's own
    out = tmp_path / "fitted.toml"
    cli = subprocess.run(
        [sys.executable, "-m", "growthflow", "attribution", "fit-ihc", *db.cli_args()]
        + ["--out", str(out), "--folds", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "12 journeys" in cli.stdout and out.exists()
    summary = db.run("2023-09-01", "2023-09-30", params_path=out)
    assert summary.journeys == 12


@pytest.mark.skipif(not TRACES.exists(), reason="../shared/datasets is not present")
def test_cross_validated_error_on_the_real_api_answers():
    """Issue 12's bar: 5 folds of whole requests, MAE per session on journeys of 2+ sessions:
    ihc <= 0.002, each phase <= 0.003, fitted and with the shipped defaults (measured
    2026-11-23: fitted ihc 0.0004, initializer 0.0004, holder 0.0008, closer 0.0010)."""
    errors = cross_validate(read_traces_csv(TRACES), BASE, folds=5)
    print("cross-validated MAE per session, 5 folds of whole requests:", errors)
    for name in ("fitted", "base"):
        assert errors[name]["ihc"] <= 0.002, (name, errors[name])
        for phase in ("initializer", "holder", "closer"):
            assert errors[name][phase] <= 0.003, (name, phase, errors[name])


def test_evaluate_scores_any_local_model_overall_and_by_journey_length(tmp_path):
    path = tmp_path / "traces.csv"
    write_traces(path, BASE, journeys=200)
    traces = read_traces_csv(path)
    rows = {
        label: (journeys, sessions, e) for label, journeys, sessions, e in evaluate(traces, BASE)
    }
    assert rows["2+ sessions"][2]["ihc"] < 1e-12  # the answers are the model's own
    assert sum(rows[k][0] for k in rows if k != "2+ sessions") == traces.batch.n_journeys
    linear = {label: e for label, _j, _s, e in evaluate(traces, BASE, "linear")}
    assert linear["2+ sessions"]["holder"] is None and linear["2+ sessions"]["ihc"] > 0.01
    cli = subprocess.run(
        [sys.executable, "-m", "growthflow", "attribution", "evaluate", "--traces", str(path)]
        + ["--model", "position-based"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "position-based against the IHC API" in cli.stdout and "2+ sessions" in cli.stdout
