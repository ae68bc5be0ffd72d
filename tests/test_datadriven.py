"""The data-driven models: Markov chain removal effects and Shapley values.

Hand-computed examples, invariants against plain reference computations (dense solves of the
chain built from Python dicts, Shapley values by enumerating every order of the players), the
paths the database builds against paths built in Python from the same rows, and whole runs.
"""

from __future__ import annotations

import itertools
from datetime import date
from fractions import Fraction
from math import factorial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from growthflow.attribution import paths as paths_module
from growthflow.attribution.datadriven import credit_model
from growthflow.attribution.markov import markov_model
from growthflow.attribution.paths import Paths
from growthflow.attribution.shapley import OTHER, shapley_model, shapley_values
from growthflow.errors import ConfigError

from conftest import conversion, make_batch, session


# --- Markov, by hand ---------------------------------------------------------------------------
def three_channels() -> Paths:
    """A B -> conversion (revenue 100), A -> null, B C -> conversion (50), C -> null."""
    return Paths.from_lists(
        [["A", "B"], ["A"], ["B", "C"], ["C"]], [1, 0, 1, 0], [0, 1, 0, 1], [100.0, 0, 50.0, 0]
    )


def test_markov_three_channels_solved_on_paper():
    # start: A 2/4, B 1/4, C 1/4.  A: B 1/2, null 1/2.  B: conv 1/2, C 1/2.  C: conv 1/2, null 1/2
    # x_C = 1/2, x_B = 1/2 + x_C/2 = 3/4, x_A = x_B/2 = 3/8; P = 3/16 + 3/16 + 2/16 = 1/2.
    # Without A: 5/16 (effect 3/8); without B: x_A = 0, P = 1/8 (3/4); without C: 1/4 (1/2).
    result = markov_model(three_channels())
    assert result.conversion_probability == pytest.approx(0.5, abs=1e-12)
    assert result.removal_effect == pytest.approx([3 / 8, 3 / 4, 1 / 2], abs=1e-12)
    conversions, revenue = result.credit(2, 150.0)
    assert conversions == pytest.approx([6 / 13, 12 / 13, 8 / 13], abs=1e-12)
    # Revenue chain: B converts 100 of 2 visits, C 50 of 2: x_C = 25, x_B = 62.5, x_A = 31.25,
    # V = 37.5. Without A: 21.875 (5/12); without B: 6.25 (5/6); without C: x_B = 50, 25 (1/3).
    assert result.revenue_removal_effect == pytest.approx([5 / 12, 5 / 6, 1 / 3], abs=1e-12)
    assert revenue.sum() == pytest.approx(150.0)


def test_markov_order_two_states_and_transitions():
    paths = Paths.from_lists([["A", "B", "A"], ["B"]], [1, 0], [0, 2])
    result = markov_model(paths, order=2)
    names = [tuple(result.channels[c] for c in state) for state in result.states]
    assert sorted(names) == [("A",), ("A", "B"), ("B",), ("B", "A")]
    counts = {
        (_name(result, a), _name(result, b)): n
        for a, b, n in zip(*(x.tolist() for x in result.transitions), strict=True)
    }
    assert counts == {
        ("(start)", "A"): 1,
        ("(start)", "B"): 2,
        ("A", "A>B"): 1,
        ("A>B", "B>A"): 1,
        ("B>A", "(conversion)"): 1,
        ("B", "(null)"): 2,
    }


def _name(result, state: int) -> str:
    special = {-1: "(start)", -2: "(conversion)", -3: "(null)"}
    if state in special:
        return special[state]
    return ">".join(result.channels[c] for c in result.states[state])


def test_channel_only_on_null_paths_gets_nothing():
    paths = Paths.from_lists([["A", "B"], ["D"], ["A", "D"]], [3, 0, 0], [1, 4, 2])
    result = markov_model(paths)
    d = result.channels.index("D")
    assert result.removal_effect[d] == 0
    assert result.credit(3, 0)[0][d] == 0


def test_repeated_channel_self_loop_changes_nothing():
    plain = markov_model(Paths.from_lists([["A", "B"], ["A"]], [1, 0], [0, 1]))
    repeated = markov_model(Paths.from_lists([["A", "A", "B"], ["A", "A", "A"]], [1, 0], [0, 1]))
    assert repeated.removal_effect == pytest.approx(plain.removal_effect, abs=1e-12)
    assert repeated.conversion_probability == pytest.approx(plain.conversion_probability)


def test_one_channel():
    result = markov_model(Paths.from_lists([["A"], ["A", "A"]], [2, 0], [1, 5]))
    assert result.removal_effect == pytest.approx([1.0])
    assert result.credit(2, 10.0)[0] == pytest.approx([2.0])


def test_no_conversions_no_credit():
    result = markov_model(Paths.from_lists([["A", "B"]], [0], [3]))
    assert result.conversion_probability == 0
    assert list(result.credit(0, 0)[0]) == [0, 0]


def test_order_out_of_range():
    with pytest.raises(ConfigError, match="order must be 1 to 4"):
        markov_model(three_channels(), order=5)


def test_deterministic():
    paths = Paths.from_lists([["A", "B", "C"], ["C", "A"], ["B"]], [2, 1, 0], [1, 1, 3])
    runs = [markov_model(paths, 3) for _ in range(3)]
    assert len({r.removal_effect.tobytes() for r in runs}) == 1


# --- Markov against a dense reference ------------------------------------------------------------
def reference_markov(paths: list[list[str]], conv: list[int], null: list[int], order: int):
    """The chain from Python dicts, solved densely with numpy: (probability, effects)."""
    counts: dict = {}

    def add(a, b, n):
        counts.setdefault(a, {})
        counts[a][b] = counts[a].get(b, 0) + n

    for path, c, n in zip(paths, conv, null, strict=True):
        states = [tuple(path[max(0, i - order + 1) : i + 1]) for i in range(len(path))]
        add("start", states[0], c + n)
        for a, b in itertools.pairwise(states):
            add(a, b, c + n)
        add(states[-1], "conv", c)
        add(states[-1], "null", n)
    transient = sorted(s for s in counts if s != "start")

    def probability(removed: str | None) -> float:
        kept = [s for s in transient if removed not in s]
        index = {s: i for i, s in enumerate(kept)}
        q = np.zeros((len(kept), len(kept)))
        r = np.zeros(len(kept))
        for s in kept:
            out = sum(counts[s].values())
            for t, n in counts[s].items():
                if t == "conv":
                    r[index[s]] += n / out
                elif t in index:
                    q[index[s], index[t]] += n / out
        x = np.linalg.solve(np.eye(len(kept)) - q, r) if kept else np.zeros(0)
        start = counts["start"]
        total = sum(start.values())
        return sum(n / total * x[index[s]] for s, n in start.items() if s in index)

    p = probability(None)
    channels = sorted({c for path in paths for c in path})
    effects = [(p - probability(c)) / p if p > 0 else 0.0 for c in channels]
    return p, effects


path_sets = st.lists(
    st.tuples(
        st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=6),
        st.integers(0, 4),
        st.integers(0, 4),
    ).filter(lambda t: t[1] + t[2] > 0),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(path_sets, st.integers(1, 4))
def test_markov_equals_dense_reference(rows, order):
    paths, conv, null = (list(x) for x in zip(*rows, strict=True))
    p, effects = reference_markov(paths, conv, null, order)
    result = markov_model(Paths.from_lists(paths, conv, null), order)
    assert result.conversion_probability == pytest.approx(p, abs=1e-12)
    assert result.removal_effect == pytest.approx(effects, abs=1e-9)
    assert (result.removal_effect >= 0).all() and (result.removal_effect <= 1).all()
    credit = result.credit(sum(conv), 0)[0]
    if sum(conv):
        assert credit.sum() == pytest.approx(sum(conv))


# --- Shapley -----------------------------------------------------------------------------------
def textbook_paths() -> tuple[Paths, dict]:
    """Ten paths per coalition; conversions give the rates v below."""
    v = {"A": 2, "B": 1, "C": 0, "AB": 5, "AC": 3, "BC": 2, "ABC": 6}
    paths, conv, null = [], [], []
    for coalition, converted in v.items():
        paths.append(list(coalition))
        conv.append(converted)
        null.append(10 - converted)
    return Paths.from_lists(paths, conv, null), v


def test_shapley_textbook_three_players():
    # phi_A = 1/3 v(A) + 1/6 (v(AB) - v(B)) + 1/6 (v(AC) - v(C)) + 1/3 (v(ABC) - v(BC))
    #       = (0.2 + 0.2 + ... ) -> 19/60; phi_B = 13/60; phi_C = 4/60; sum = v(ABC) = 0.6
    paths, _ = textbook_paths()
    result = shapley_model(paths)
    assert result.channels == ["A", "B", "C"]
    assert result.shapley_value == pytest.approx([19 / 60, 13 / 60, 4 / 60], abs=1e-12)
    conversions, _ = result.credit(19, 0)
    assert conversions == pytest.approx([19 * 19 / 36, 19 * 13 / 36, 19 * 4 / 36])


def test_shapley_order_within_a_path_does_not_matter():
    a = shapley_model(Paths.from_lists([["A", "B"], ["B"]], [3, 1], [1, 3]))
    b = shapley_model(Paths.from_lists([["B", "A", "B"], ["B", "B"]], [3, 1], [1, 3]))
    assert a.shapley_value == pytest.approx(b.shapley_value, abs=1e-15)


def brute_force_shapley(v: dict[frozenset, float], players: list[str]) -> list[float]:
    """The definition: each player's mean marginal value over every order of the players."""
    totals = dict.fromkeys(players, Fraction(0))
    for order in itertools.permutations(players):
        before: frozenset = frozenset()
        for p in order:
            totals[p] += Fraction(v.get(before | {p}, 0)) - Fraction(v.get(before, 0))
            before = before | {p}
    return [float(totals[p] / factorial(len(players))) for p in players]


@settings(max_examples=60, deadline=None)
@given(path_sets, st.sampled_from(["exact", "subset"]))
def test_shapley_equals_the_definition(rows, value):
    paths, conv, null = (list(x) for x in zip(*rows, strict=True))
    players = sorted({c for p in paths for c in p})
    converted: dict[frozenset, int] = {}
    counted: dict[frozenset, int] = {}
    for path, c, n in zip(paths, conv, null, strict=True):
        key = frozenset(path)
        converted[key] = converted.get(key, 0) + c
        counted[key] = counted.get(key, 0) + c + n
    v = {}
    for size in range(len(players) + 1):
        for combo in itertools.combinations(players, size):
            s = frozenset(combo)
            inside = [t for t in counted if (t <= s if value == "subset" else t == s)]
            total = sum(counted[t] for t in inside)
            v[s] = Fraction(sum(converted[t] for t in inside), total) if total else 0
    result = shapley_model(Paths.from_lists(paths, conv, null), value)
    assert result.shapley_value == pytest.approx(brute_force_shapley(v, players), abs=1e-12)


def test_shapley_values_efficiency():
    rng = np.random.default_rng(7)
    v = rng.random(1 << 6)
    v[0] = 0
    assert shapley_values(v, 6).sum() == pytest.approx(v[-1])


def test_shapley_merges_the_least_frequent_channels():
    names = [f"ch{i:02d}" for i in range(23)]
    paths = [[n] for n in names] + [[n, names[0]] for n in names[:15]]
    conv = [1] * len(paths)
    null = [i % 3 for i in range(len(paths))]
    result = shapley_model(Paths.from_lists(paths, conv, null), max_players=20)
    assert len(result.channels) == 20 and result.channels[-1] == OTHER
    assert len(result.merged) == 4
    # the merged ones are among the channels on a single path, never ch00..ch14
    assert all(int(n[2:]) >= 15 for n in result.merged)


def test_negative_shapley_value_gets_no_credit():
    # paths with B convert worse than without it
    paths = Paths.from_lists([["A"], ["A", "B"], ["B"]], [8, 1, 0], [2, 9, 10])
    result = shapley_model(paths)
    assert result.shapley_value[1] < 0
    conversions, _ = result.credit(9, 0)
    assert conversions == pytest.approx([9.0, 0.0])


# --- touchpoints ------------------------------------------------------------------------------
def test_credit_shares_a_journey_by_channel():
    batch = make_batch([3, 2, 1], channels=["A", "A", "B", "C", "D", "C"])
    ihc = credit_model(batch, {"A": 1.0, "B": 1.0, "C": 3.0, "D": 0.0}).ihc
    # A has half the first journey, split over its two sessions; D has no credit;
    assert ihc == pytest.approx([0.25, 0.25, 0.5, 1.0, 0.0, 1.0])


def test_credit_without_any_credit_splits_evenly():
    batch = make_batch([2], channels=["X", "Y"])
    assert credit_model(batch, {}).ihc == pytest.approx([0.5, 0.5])


# --- whole runs, with paths built by the database -------------------------------------------------
def python_paths(sessions, conversions, start, end, lookback) -> tuple[list, list, list]:
    """The converting and non-converting paths of the rows, in plain Python."""
    from datetime import date, datetime, timedelta

    window_start = (date.fromisoformat(start) - timedelta(days=lookback)).isoformat()
    usable = sorted(sessions, key=lambda s: (s[1], s[2], s[3], s[0]))
    paths, conv, null = [], [], []
    by_user: dict[str, list] = {}
    for s in usable:
        by_user.setdefault(s[1], []).append(s)
    window_end = f"{end} 23:59:59"
    for c in conversions:
        if start <= c[2] <= end:
            ts = f"{c[2]} {c[3]}"
            floor = datetime.fromisoformat(ts) - timedelta(days=lookback)
            journey = [
                s[4] for s in by_user.get(c[1], []) if floor.isoformat(" ") <= f"{s[2]} {s[3]}" < ts
            ]
            if journey:
                paths.append(journey[-100:])
                conv.append(1)
                null.append(0)
    for user, rows in by_user.items():
        done = [f"{c[2]} {c[3]}" for c in conversions if c[1] == user]
        done = [t for t in done if t <= window_end]
        last = max(done) if done else ""
        open_ = [s[4] for s in rows if f"{s[2]} {s[3]}" > last and window_start <= s[2] <= end]
        if open_:
            paths.append(open_)
            conv.append(0)
            null.append(1)
    return paths, conv, null


def random_rows(seed: int):
    rng = np.random.default_rng(seed)
    sessions, conversions = [], []
    channels = ["Paid", "Organic", "Mail", "Social"]
    for u in range(40):
        n = int(rng.integers(1, 7))
        for k in range(n):
            day = f"2023-09-{int(rng.integers(1, 9)):02d}"
            time = f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:00"
            sessions.append(session(f"s{u}_{k}", f"u{u}", day, time, str(rng.choice(channels))))
        if rng.random() < 0.5:
            day = f"2023-09-{int(rng.integers(2, 9)):02d}"
            conversions.append(conversion(f"c{u}", f"u{u}", day, "12:00:00", 10.0 + u))
    return sessions, conversions


@pytest.mark.parametrize("model", ["markov", "shapley"])
def test_run_builds_the_paths_of_the_rows(db, model, monkeypatch):
    monkeypatch.setattr(paths_module, "FETCH_ROWS", 4)  # paths that go on in the next chunk
    sessions, conversions = random_rows(3)
    db.load(sessions, conversions)
    summary = db.run("2023-09-03", "2023-09-08", model=model, lookback_days=2)
    paths, conv, null = python_paths(sessions, conversions, "2023-09-03", "2023-09-08", 2)
    expected = Paths.from_lists(paths, conv, null)
    stats = summary.model
    assert stats.window.start.isoformat() == "2023-09-01"
    assert stats.conversions == sum(conv) == summary.journeys
    assert stats.null_paths == sum(null)
    assert stats.distinct_paths == len({tuple(p) for p in paths})
    credit = {
        name: (effect, shapley, conversions_)
        for name, effect, shapley, conversions_ in db.rows(
            "SELECT channel_name, removal_effect, shapley_value, conversions "
            "FROM gf_model_channel_credit WHERE run_id = :r",
            r=summary.run_id,
        )
    }
    if model == "markov":
        fitted = markov_model(expected)
        for name, effect in zip(fitted.channels, fitted.removal_effect, strict=True):
            assert credit[name][0] == pytest.approx(effect, abs=1e-9)
            assert credit[name][1] is None
    else:
        fitted = shapley_model(expected)
        for name, value in zip(fitted.channels, fitted.shapley_value, strict=True):
            assert credit[name][1] == pytest.approx(value, abs=1e-9)
    assert sum(c[2] for c in credit.values()) == pytest.approx(sum(conv))
    sums = db.rows("SELECT conv_id, SUM(ihc) FROM attribution_customer_journey GROUP BY conv_id")
    assert len(sums) == summary.journeys
    assert all(abs(s - 1) < 1e-9 for _, s in sums)
    model_rows = db.rows("SELECT model FROM gf_attributed_conversions")
    assert {m for (m,) in model_rows} == {f"local:{model}"}


def test_markov_run_is_repeatable_and_stores_the_chain(db):
    sessions, conversions = random_rows(5)
    db.load(sessions, conversions)
    first = db.run("2023-09-03", "2023-09-08", model="markov", order=2)
    again = db.run("2023-09-03", "2023-09-08", model="markov", order=2)
    query = (
        "SELECT channel_name, removal_effect, conversions FROM gf_model_channel_credit "
        "WHERE run_id = :r ORDER BY channel_name"
    )
    assert db.rows(query, r=first.run_id) == db.rows(query, r=again.run_id)
    transitions = db.rows(
        "SELECT from_state, to_state, transitions FROM gf_markov_transitions WHERE run_id = :r",
        r=again.run_id,
    )
    starts = sum(n for a, _, n in transitions if a == "(start)")
    ends = sum(n for _, b, n in transitions if b in ("(conversion)", "(null)"))
    assert starts == ends == again.model.conversions + again.model.null_paths
    (probability,) = db.rows(
        "SELECT conversion_probability FROM gf_model_runs WHERE run_id = :r", r=again.run_id
    )[0]
    assert 0 < probability <= 1


def test_markov_cli(db):
    from test_cli import cli

    sessions, conversions = random_rows(11)
    db.load(sessions, conversions)
    run = ("attribution", "run", *db.cli_args(), "--start", "2023-09-03", "--end", "2023-09-08")
    result = cli(*run, "--model", "markov", "--order", "2", "--train-start", "2023-09-02")
    assert result.returncode == 0, result.stderr
    assert "removal effect" in result.stdout and "2023-09-02 to 2023-09-08" in result.stdout
    bad = cli(*run, "--model", "shapley", "--provider", "ihc-api")
    assert bad.returncode == 2 and "local provider only" in bad.stderr
    assert "Traceback" not in bad.stderr


@settings(max_examples=25, deadline=None)
@given(path_sets, st.integers(1, 4))
def test_iterative_and_direct_solves_agree(rows, order):
    paths, conv, null = (list(x) for x in zip(*rows, strict=True))
    data = Paths.from_lists(paths, conv, null)
    direct = markov_model(data, order, direct_states=10**9)
    iterative = markov_model(data, order, direct_states=0)
    assert iterative.conversion_probability == pytest.approx(direct.conversion_probability)
    assert iterative.removal_effect == pytest.approx(direct.removal_effect, abs=1e-10)
    assert iterative.revenue_removal_effect == pytest.approx(
        direct.revenue_removal_effect, abs=1e-10
    )


# --- the peers (installed by benchmarks/bench_models.py in its own environment) ---------------
def random_path_counts(seed: int, channels: str, n: int, longest: int, conv: int, null: int):
    """``n`` random paths with conversion counts below ``conv`` and null counts below ``null``
    (at least one of the two per path)."""
    rng = np.random.default_rng(seed)
    paths = [
        list(rng.choice(list(channels), size=int(rng.integers(1, longest + 1)))) for _ in range(n)
    ]
    conversions = [int(rng.integers(0, conv)) for _ in paths]
    nulls = [int(rng.integers(0, null)) + (c == 0) for c in conversions]
    return paths, conversions, nulls


def test_order_one_removal_effects_equal_mams_absorbing_chain():
    """MAM solves the order-1 chain by inverting (I - Q): its removal effects are exact."""
    pd = pytest.importorskip("pandas")
    mam = pytest.importorskip("mam")
    paths, conv, null = random_path_counts(21, "ABCDEF", 300, longest=5, conv=3, null=5)
    rows = [
        {"path": " > ".join(p), "has_conv": flag, "occurrences": count}
        for p, c, n in zip(paths, conv, null, strict=True)
        for flag, count in ((True, c), (False, n))
        if count
    ]
    theirs = mam.MAM(
        pd.DataFrame(rows),
        format_type="grouped_journey",
        channels_colname="path",
        journey_with_conv_colname="has_conv",
        occurrences_colname="occurrences",
    ).run_markov(transition_to_same_state=True)
    effect = theirs.metadata["removal_effect"]["removal_effect"]
    ours = markov_model(Paths.from_lists(paths, conv, null))
    for name, value in zip(ours.channels, ours.removal_effect, strict=True):
        assert value == pytest.approx(float(effect[name]), rel=1e-9)


def test_order_one_removal_effects_within_channelattributions_simulation():
    """ChannelAttribution simulates the chain: the same effects within its convergence. Its
    default max_step (the longest path of the data) cuts simulated walks short, which lowers
    every effect by ~6 % here; with room to walk it agrees to ~0.5 %."""
    pd = pytest.importorskip("pandas")
    ca = pytest.importorskip("ChannelAttribution")
    paths, conv, null = random_path_counts(5, "ABCDE", 400, longest=4, conv=4, null=6)
    frame = pd.DataFrame({"path": [">".join(p) for p in paths], "conversions": conv, "nulls": null})
    theirs = ca.markov_model(
        frame,
        "path",
        "conversions",
        var_null="nulls",
        out_more=True,
        verbose=False,
        flg_pro=False,
        conv_par=0.01,
        seed=1,
        max_step=100,
    )["removal_effects"]
    effect = dict(zip(theirs["channel_name"], theirs["removal_effect"], strict=True))
    ours = markov_model(Paths.from_lists(paths, conv, null))
    for name, value in zip(ours.channels, ours.removal_effect, strict=True):
        assert value == pytest.approx(effect[name], rel=0.02)


def test_a_missing_params_file_fails_before_the_run_is_recorded(db, tmp_path):
    """The provider of a rule-based model is built before the run starts (data-driven ones
    after their training step)."""
    sessions, conversions = random_rows(2)
    db.load(sessions, conversions)
    with pytest.raises(ConfigError, match="parameter file not found"):
        db.run("2023-09-03", "2023-09-08", model="ihc", params_path=tmp_path / "missing.toml")
    assert db.rows("SELECT COUNT(*) FROM gf_runs") == [(0,)]


@pytest.mark.parametrize("model", ["markov", "shapley"])
def test_ranges_without_conversions_or_paths(db, model):
    sessions, conversions = random_rows(4)
    db.load(sessions, conversions)
    # sessions in the window but no conversion dated in the range: only null paths
    only_null = db.run("2023-09-09", "2023-09-09", model=model, train_start=date(2023, 9, 1))
    assert only_null.journeys == 0 and only_null.model.null_paths > 0
    assert only_null.model.conversions == 0
    assert all(row["conversions"] == 0 for row in only_null.model.channels)
    # nothing at all: no journeys, no sessions in the window
    nothing = db.run("2024-01-01", "2024-01-02", model=model)
    assert nothing.model.distinct_paths == 0 and nothing.model.channels == []
    assert db.rows("SELECT COUNT(*) FROM gf_model_runs WHERE run_id = :r", r=nothing.run_id) == [
        (1,)
    ]


def test_shapley_run_credits_merged_channels_as_other(db):
    """Above 20 channels the rare ones share (other)'s credit in the touchpoint attribution."""
    sessions, conversions = [], []
    for u in range(80):  # 20 frequent channels, a third of their users converting
        channel = f"F{u % 20:02d}"
        sessions.append(session(f"a{u}", f"u{u}", "2023-09-02", "10:00:00", channel))
        if u % 3 == 0:
            conversions.append(conversion(f"c{u}", f"u{u}", "2023-09-03", "12:00:00"))
    for r in range(4):  # 4 rare channels, each once, after a frequent one, converting
        user = f"r{r}"
        sessions.append(session(f"r{r}a", user, "2023-09-02", "10:00:00", "F00"))
        sessions.append(session(f"r{r}b", user, "2023-09-02", "11:00:00", f"R{r}"))
        conversions.append(conversion(f"rc{r}", user, "2023-09-03", "12:00:00"))
    db.load(sessions, conversions)
    summary = db.run(
        "2023-09-03", "2023-09-03", model="shapley", shapley_value="subset", lookback_days=2
    )
    assert set(summary.model.merged) >= {"R0", "R1", "R2", "R3"}  # and one F channel
    other = next(r for r in summary.model.channels if r["channel_name"] == "(other)")
    assert other["conversions"] > 0
    sums = db.rows("SELECT conv_id, SUM(ihc) FROM attribution_customer_journey GROUP BY conv_id")
    assert len(sums) == 27 + 4 and all(abs(s - 1) < 1e-9 for _, s in sums)
    rare = db.rows(
        "SELECT session_id, ihc FROM attribution_customer_journey WHERE session_id LIKE 'r%b'"
    )
    assert len(rare) == 4 and all(0 < ihc < 1 for _, ihc in rare)  # (other)'s credit
