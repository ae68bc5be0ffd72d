"""Load on the voucher API over loopback: requests per second and latency percentiles.

    python benchmarks/bench_vouchers_api.py [--requests 5000] [--concurrency 8]

Publishes segments from the real 2018 data when ../shared is present (else from 50,000
synthetic rows), starts `growthflow vouchers serve` as its own process on 127.0.0.1, sends a
fixed number of POST /voucher requests (both segments, varied customers) with a bounded number
in flight, checks every answer, prints the figures, and stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from bench_attribution import BIN, DATA
from bench_ihc_api import free_port

from growthflow.vouchers.pipeline import SOURCE_COLUMNS

REAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "vouchers"
REAL_FILE = REAL / "voucher_assignments_2018.parquet"


def source_file() -> str:
    if REAL_FILE.exists():
        return str(REAL_FILE)
    DATA.mkdir(exist_ok=True)
    path = DATA / "vouchers_synthetic.csv"
    rng = random.Random(1)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SOURCE_COLUMNS)
        for i in range(50_000):
            days = rng.randint(0, 200)
            writer.writerow(
                [
                    f"2018-06-{1 + i % 28:02d} 10:00:00",
                    "Peru",
                    f"2018-01-{1 + days % 28:02d}",
                    "2017-01-01 00:00:00",
                    f"{rng.randint(0, 60)}.0",
                    rng.choice([2640.0, 3520.0, 4400.0]),
                ]
            )
    return str(path)


def customers(n: int) -> list[dict]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        last = f"2018-{rng.choice(['03', '04', '05'])}-{rng.randint(1, 28):02d} 00:00:00"
        out.append(
            {
                "customer_id": i,
                "country_code": "Peru",
                "last_order_ts": last,
                "first_order_ts": "2017-05-03 00:00:00",
                "total_orders": rng.randint(0, 60),
                "segment_name": rng.choice(["frequent_segment", "recency_segment"]),
            }
        )
    return out


async def drive(url: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append(time.perf_counter() - t0)
                if response.status_code not in (200, 404):
                    raise SystemExit(f"unexpected answer {response.status_code}: {response.text}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    db = f"sqlite:///{DATA / 'vouchers.db'}"
    source = source_file()
    subprocess.run(
        [*BIN, "vouchers", "run", "--db", db, "--source", source],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    env = {**os.environ, "GROWTHFLOW_VOUCHERS_REFERENCE_DATE": "2018-06-15"}
    server = subprocess.Popen(
        [*BIN, "vouchers", "serve", "--db", db, "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        bodies = customers(args.requests)
        asyncio.run(drive(base + "/voucher", bodies[:200], args.concurrency))  # warm-up
        wall, latencies = asyncio.run(drive(base + "/voucher", bodies, args.concurrency))
    finally:
        server.terminate()
        server.wait(timeout=10)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"source: {Path(source).name}")
    print(
        f"{'requests':>8} {'in flight':>9} {'seconds':>7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(
        f"{len(latencies):>8} {args.concurrency:>9} {wall:>7.2f} {len(latencies) / wall:>7.0f} "
        f"{p50:>7.2f} {p99:>7.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
