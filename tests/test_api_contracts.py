"""Both HTTP APIs keep the promises of their OpenAPI documents (issue 10 item 12).

schemathesis, with every check it has, generates requests from each document (valid ones,
invalid ones, boundary values) against a real server on 127.0.0.1 and checks every answer:
no 5xx, only documented status codes, content types, headers and bodies, invalid input
rejected, valid input accepted, the key not ignored. Bounded: a fixed seed and a few dozen
examples per operation, so a run takes seconds and gives the same cases every time.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

from growthflow.attribution.ihc_server import create_app as create_ihc_app
from growthflow.database import create_engine
from growthflow.server import BackgroundServer
from growthflow.vouchers.api import create_app as create_voucher_app
from growthflow.vouchers.pipeline import run_vouchers
from growthflow.vouchers.segments import DEFAULT_SEGMENTS

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
KEY = "contract-test-key"


def schemathesis(
    server: BackgroundServer,
    tmp_path: Path,
    accepted: list[str],
    *args: str,
    server_errors: tuple[str, ...] = (),
):
    """Run ``schemathesis run --checks all`` against the server's document; fail with its
    report when it finds anything.

    ``accepted``: the statuses a schema-valid request may get. Besides 2xx these are the
    rules JSON Schema cannot state, each documented: a date that the pattern admits but the
    calendar does not (2023-02-30), limits per journey, dates that contradict each other, a
    country without data. ``server_errors``: 5xx statuses that are the documented answer
    (503 while nothing is published), so not a failure of ``not_a_server_error``.
    """
    config = tmp_path / "schemathesis.toml"
    statuses = ", ".join(f'"{s}"' for s in accepted)
    fine = ", ".join(f'"{s}"' for s in ("2xx", "3xx", "4xx", *server_errors))
    config.write_text(
        f"[checks.positive_data_acceptance]\nexpected-statuses = [{statuses}]\n"
        f"[checks.not_a_server_error]\nexpected-statuses = [{fine}]\n"
    )
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{server.base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "25",
        "--seed",
        "20261123",
        "--phases",
        "examples,coverage,fuzzing",
        *args,
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failure" not in done.stdout.lower(), done.stdout


def test_the_ihc_server_keeps_its_openapi_contract(tmp_path):
    app = create_ihc_app(api_key=KEY)
    with BackgroundServer(app) as server:
        schemathesis(server, tmp_path, ["2xx", "400", "403"], "--header", f"x-api-key: {KEY}")
    assert app.state.stats.answered > 0  # valid requests were computed, not only refused


def write_assignments(path: Path) -> str:
    """A few voucher assignments in several bands of both default segments."""
    rows = ["timestamp,country_code,last_order_ts,first_order_ts,total_orders,voucher_amount"]
    for i, (days, orders, amount) in enumerate(
        [(10, 1, 2640), (10, 2, 2640), (45, 6, 3520), (45, 20, 4400), (200, 40, 2640)]
    ):
        last = date.fromordinal(date(2018, 6, 1).toordinal() - days)
        rows.append(f"2018-06-01 10:00:0{i},Peru,{last},2017-01-01,{orders},{amount}")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_the_voucher_api_keeps_its_openapi_contract(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'v.db'}", create=True)
    run_vouchers(engine, write_assignments(tmp_path / "v.csv"), DEFAULT_SEGMENTS)
    app = create_voucher_app(engine, reference_date=date(2018, 6, 15), poll_s=0.05)
    with BackgroundServer(app) as server:
        schemathesis(server, tmp_path, ["2xx", "404", "422"])


def test_the_voucher_api_keeps_its_contract_before_anything_is_published(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}", create=True)
    with BackgroundServer(create_voucher_app(engine, poll_s=0.05)) as server:
        schemathesis(server, tmp_path, ["2xx", "503"], server_errors=("503",))
