"""The IHC API provider against the local IHC-compatible server with added latency.

    python benchmarks/bench_ihc_api.py [--scale 1] [--latency-ms 100] [--concurrency 4]

Starts `growthflow ihc-server` as its own process on 127.0.0.1 (stopped at the end), then runs
`growthflow attribution run --provider ihc-api --force` on the demo database for the default
limits and for a free account (200 sessions per request). Prints requests sent against the
lower bound max(ceil(journeys / 100), ceil(sessions / max_sessions)), and the attribute step's
wall time against requests x latency / concurrency.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import subprocess
import time
import urllib.request

from bench_attribution import BIN, ensure_demo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def number(label: str, text: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+│\s+([\d,.]+)", text)
    if not match:
        raise SystemExit(f"no {label!r} in the run's output:\n{text}")
    return float(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    target = ensure_demo(args.scale)
    port = free_port()
    key = "bench-key"
    server = subprocess.Popen(
        [
            *BIN,
            "ihc-server",
            "--port",
            str(port),
            "--api-key",
            key,
            "--latency-ms",
            str(args.latency_ms),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)  # noqa: S310
                break
            except OSError:
                time.sleep(0.05)
        print(
            f"{'max_sessions':>12} {'journeys':>8} {'sessions':>8} {'requests':>8} "
            f"{'bound':>5} {'attribute s':>11} {'req*lat/conc s':>14}"
        )
        for max_sessions in (3000, 200):
            env = {**os.environ, "GROWTHFLOW_IHC_API_KEY": key, "COLUMNS": "200"}
            run = subprocess.run(
                [
                    *BIN,
                    "attribution",
                    "run",
                    *target,
                    "--start",
                    "2023-09-01",
                    "--end",
                    "2023-09-10",
                    "--provider",
                    "ihc-api",
                    "--conv-type-id",
                    "bench",
                    "--api-url",
                    f"http://127.0.0.1:{port}/v1/compute_ihc",
                    "--force",
                    "--max-sessions",
                    str(max_sessions),
                    "--concurrency",
                    str(args.concurrency),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            if run.returncode != 0:
                raise SystemExit(run.stderr)
            journeys = number("journeys", run.stdout)
            sessions = number("sessions in journeys", run.stdout)
            requests = number("IHC requests sent", run.stdout)
            seconds = number("time: attribute", run.stdout)
            bound = max(math.ceil(journeys / 100), math.ceil(sessions / max_sessions))
            ideal = requests * args.latency_ms / 1000 / args.concurrency
            print(
                f"{max_sessions:>12} {journeys:>8,.0f} {sessions:>8,.0f} {requests:>8,.0f} "
                f"{bound:>5} {seconds:>11.2f} {ideal:>14.2f}"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
