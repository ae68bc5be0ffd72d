"""The data-driven models against their peers, side by side (issue 13).

    python benchmarks/bench_models.py [--paths 1000000] [--channels 16] [--no-peers]
                                      [--input distinct|rows]

Generates path data once (``--paths`` paths over ``--channels`` channels, lengths like the demo
data's journeys and non-converting runs, ~5 % converting, with revenue) as a CSV of distinct
paths with their conversion and null counts (what growthflow's database step hands its models;
``--input rows``: one row per path), and times on it, each in its own process (wall time of
parsing the paths and the model, and the process's peak memory):
- growthflow's markov (orders 1 and 4) and shapley, after counting equal paths once (what its
  database step does before any model; with ``--input rows`` that grouping is timed too);
- ChannelAttribution's markov_model (order 1 and 4; a simulation) and MAM's run_markov (order 1,
  an absorbing chain solved by matrix inversion) and run_shapley, installed in the benchmark's
  own environment (benchmarks/.peers, from benchmarks/peers.lock, created on first use).
It prints the seconds, peak memory, growthflow's speed-up and the largest difference of the
removal effects (relative) from each peer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data" / "models"
PEERS = HERE / ".peers"
SEP = " > "


# --- data --------------------------------------------------------------------------------------
def generate(path: Path, n_paths: int, n_channels: int, aggregate: bool, seed: int = 13) -> None:
    """Paths with conversions, nulls and revenue, as a CSV every tool can read: one row per
    distinct path (``aggregate``) or one per path."""
    import numpy as np

    rng = np.random.default_rng(seed)
    # journeys of the demo data average ~3.7 sessions, non-converting runs ~2: geometric lengths
    lengths = np.minimum(rng.geometric(0.42, n_paths), 40)
    popularity = 1.0 / np.arange(1, n_channels + 1) ** 0.8
    codes = rng.choice(n_channels, size=int(lengths.sum()), p=popularity / popularity.sum())
    offsets = np.r_[0, np.cumsum(lengths)]
    # channels differ in how much they help: a path converts more when it holds good ones
    lift = rng.uniform(0.2, 2.0, n_channels)
    score = np.add.reduceat(lift[codes], offsets[:-1]) / lengths
    converted = rng.random(n_paths) < 0.05 * score / score.mean()
    revenue = np.where(converted, np.round(rng.gamma(2.0, 40.0, n_paths), 2), 0.0)
    names = [f"channel {i:02d}" for i in range(n_channels)]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not aggregate:
        with path.open("w") as out:
            out.write("path,conversions,nulls,revenue\n")
            for p in range(n_paths):
                text = SEP.join(names[k] for k in codes[offsets[p] : offsets[p + 1]].tolist())
                won = int(converted[p])
                out.write(f"{text},{won},{1 - won},{revenue[p]:.2f}\n")
        return
    keys: dict[tuple, list] = {}
    for p in range(n_paths):
        key = tuple(codes[offsets[p] : offsets[p + 1]].tolist())
        entry = keys.setdefault(key, [0, 0, 0.0])
        if converted[p]:
            entry[0] += 1
            entry[2] += revenue[p]
        else:
            entry[1] += 1
    with path.open("w") as out:
        out.write("path,conversions,nulls,revenue\n")
        for key, (c, n, r) in sorted(keys.items()):
            out.write(f"{SEP.join(names[k] for k in key)},{c},{n},{r:.2f}\n")


def ensure_data(n_paths: int, n_channels: int, aggregate: bool) -> Path:
    kind = "distinct" if aggregate else "rows"
    path = DATA / f"paths_{n_paths}_{n_channels}_{kind}.csv"
    if not path.exists():
        print(f"generating {n_paths:,} paths over {n_channels} channels ...", flush=True)
        generate(path.with_suffix(".tmp"), n_paths, n_channels, aggregate)
        path.with_suffix(".tmp").rename(path)
    return path


# --- the workers (each runs in its own process, prints JSON) -------------------------------
def work_growthflow(data: Path, model: str, order: int) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from growthflow.attribution.markov import markov_model
    from growthflow.attribution.paths import Paths
    from growthflow.attribution.shapley import shapley_model

    table = pacsv.read_csv(data)
    t0 = time.perf_counter()
    # growthflow counts every distinct path once before any model sees it (the database step
    # groups the sessions' paths by their channel sequence); here paths come as text: equal
    # texts are the same sequence
    micros = np.round(table["revenue"].to_numpy() * 1e6).astype(np.int64)  # exact sums
    table = table.append_column("revenue_micros", pa.array(micros))
    sums = [(name, "sum") for name in ("conversions", "nulls", "revenue_micros")]
    table = table.group_by("path").aggregate(sums)
    table = table.rename_columns([name.removesuffix("_sum") for name in table.column_names])
    lists = pc.split_pattern(table["path"].combine_chunks(), SEP)
    names = pc.list_flatten(lists).dictionary_encode()
    channels = names.dictionary.to_pylist()
    codes = names.indices.to_numpy()
    offsets = np.r_[0, np.cumsum(pc.list_value_length(lists).to_numpy())]
    paths = Paths(
        channels,
        codes.astype(np.int64),
        offsets.astype(np.int64),
        table["conversions"].to_numpy().astype(np.int64),
        table["nulls"].to_numpy().astype(np.int64),
        table["revenue_micros"].to_numpy().astype(np.int64),
    )
    if model == "markov":
        result = markov_model(paths, order)
        effects = dict(zip(result.channels, result.removal_effect.tolist(), strict=True))
    else:
        result = shapley_model(paths)
        effects = dict(zip(result.channels, result.shapley_value.tolist(), strict=True))
    return {"seconds": time.perf_counter() - t0, "effects": effects}


def work_channelattribution(data: Path, order: int) -> dict:
    import pandas as pd
    from ChannelAttribution import markov_model

    frame = pd.read_csv(data)
    frame["path"] = frame["path"].str.replace(SEP, ">", regex=False)
    t0 = time.perf_counter()
    result = markov_model(
        frame,
        "path",
        "conversions",
        var_null="nulls",
        var_value="revenue",
        order=order,
        out_more=True,
        verbose=False,
        flg_pro=False,
    )
    seconds = time.perf_counter() - t0
    removal = result["removal_effects"]
    effects = dict(
        zip(removal["channel_name"], removal["removal_effects_conversion"].tolist(), strict=True)
    )
    return {"seconds": seconds, "effects": effects}


def work_mam(data: Path, model: str) -> dict:
    import pandas as pd
    from mam import MAM

    frame = pd.read_csv(data)
    rows = pd.concat(
        [
            frame.assign(has_conv=True, occurrences=frame["conversions"])[
                lambda f: f["occurrences"] > 0
            ],
            frame.assign(has_conv=False, occurrences=frame["nulls"], revenue=0.0)[
                lambda f: f["occurrences"] > 0
            ],
        ]
    )[["path", "has_conv", "occurrences", "revenue"]]
    t0 = time.perf_counter()
    mam = MAM(
        rows,
        format_type="grouped_journey",
        channels_colname="path",
        journey_with_conv_colname="has_conv",
        occurrences_colname="occurrences",
        path_separator=SEP,
    )
    if model == "markov":
        result = mam.run_markov(transition_to_same_state=True)
        removal = result.metadata["removal_effect"]["removal_effect"]
        effects = {str(k): float(v) for k, v in removal.items()}
    else:
        result = mam.run_shapley()
        effects = {}
    return {"seconds": time.perf_counter() - t0, "effects": effects}


# --- the driver -------------------------------------------------------------------------------
def ensure_peers() -> Path | None:
    python = PEERS / "bin" / "python"
    if not python.exists():
        print("installing ChannelAttribution and MAM into benchmarks/.peers ...", flush=True)
        venv.create(PEERS, with_pip=True)
        install = subprocess.run(
            [python, "-m", "pip", "install", "-q", "--require-hashes", "-r"]
            + [str(HERE / "peers.lock")],
            capture_output=True,
            text=True,
        )
        if install.returncode:
            print(f"could not install the peers: {install.stderr[-1500:]}")
            return None
    return python


def measured(python: Path, *args: str) -> dict:
    import _measure

    result = _measure.measured([str(python), str(Path(__file__)), "--worker", *args])
    out = json.loads(result["stdout"].strip().splitlines()[-1])
    return {**out, "peak_mib": result["peak_mib"]}


def largest_difference(ours: dict, theirs: dict) -> float | None:
    common = [k for k in ours if k in theirs and theirs[k]]
    if not common:
        return None
    return max(abs(ours[k] - theirs[k]) / abs(theirs[k]) for k in common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--input",
        choices=("distinct", "rows"),
        default="distinct",
        help="what every tool reads: one row per distinct path with its counts (default), "
        "or one row per path",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tool, rest = args.worker[0], args.worker[1:]
        data = Path(rest[0])
        if tool == "growthflow":
            out = work_growthflow(data, rest[1], int(rest[2]))
        elif tool == "channelattribution":
            out = work_channelattribution(data, int(rest[1]))
        else:
            out = work_mam(data, rest[1])
        print(json.dumps(out))
        return
    data = ensure_data(args.paths, args.channels, args.input == "distinct")
    rows = sum(1 for _ in data.open()) - 1
    print(f"{args.paths:,} paths over {args.channels} channels, read as {rows:,} rows")
    peers = None if args.no_peers else ensure_peers()
    ours = sys.executable
    cases = [
        ("markov order 1", [ours, "growthflow", str(data), "markov", "1"]),
        ("markov order 4", [ours, "growthflow", str(data), "markov", "4"]),
        ("shapley", [ours, "growthflow", str(data), "shapley", "0"]),
    ]
    peer_cases = {
        "markov order 1": [
            ("ChannelAttribution", ["channelattribution", str(data), "1"]),
            ("MAM", ["mam", str(data), "markov"]),
        ],
        "markov order 4": [("ChannelAttribution", ["channelattribution", str(data), "4"])],
        "shapley": [("MAM", ["mam", str(data), "shapley"])],
    }
    for label, (python, *worker) in cases:
        mine = measured(Path(python), *worker)
        print(
            f"{label:>15}: growthflow {mine['seconds']:6.2f} s, peak {mine['peak_mib']:5.0f} MiB",
            flush=True,
        )
        for peer, peer_args in peer_cases[label] if peers else []:
            try:
                theirs = measured(peers, *peer_args)
            except SystemExit as failed:
                print(f"{'':>17}{peer} failed: {str(failed)[-300:]}")
                continue
            difference = largest_difference(mine["effects"], theirs["effects"])
            note = "" if difference is None else f", removal effects differ by {difference:.2e}"
            print(
                f"{'':>17}{peer} {theirs['seconds']:6.2f} s, peak {theirs['peak_mib']:5.0f} MiB:"
                f" growthflow {theirs['seconds'] / mine['seconds']:.1f}x as fast{note}",
                flush=True,
            )


if __name__ == "__main__":
    main()
