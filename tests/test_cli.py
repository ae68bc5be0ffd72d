"""The command line: the README's flow, configuration, and user errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa


def cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("GROWTHFLOW_DATABASE_URL", None) if env is None else None
    return subprocess.run(
        [sys.executable, "-m", "growthflow", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )


def test_demo_run_export_end_to_end(db, tmp_path):
    args = db.cli_args()
    r = cli("attribution", "demo-data", *args, "--scale", "0.01", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "4,500 sessions" in r.stdout
    again = cli("attribution", "demo-data", *args, "--scale", "0.01")
    assert again.returncode != 0 and "--force" in again.stderr and "Traceback" not in again.stderr
    out = tmp_path / "out" / "report.csv"
    r = cli(
        "attribution",
        "run",
        *args,
        "--start",
        "2023-09-01",
        "--end",
        "2023-09-07",
        "--csv",
        str(out),
        "--model",
        "position-based",
    )
    assert r.returncode == 0, r.stderr
    for label in (
        "conversions in range",
        "journeys truncated",
        "conversions without a journey",
        "attribution rows written",
        "time: journeys",
    ):
        assert label in r.stdout
    exported = tmp_path / "exported.csv"
    r = cli("attribution", "export", *args, "--csv", str(exported))
    assert r.returncode == 0, r.stderr
    assert exported.read_bytes() == out.read_bytes()


def test_database_url_from_environment(tmp_path):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    assert cli("attribution", "init-db", env={"GROWTHFLOW_DATABASE_URL": url}).returncode == 0
    assert (tmp_path / "env.db").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--db", "sqlite:///{tmp}/nope.db"], "database file not found"),
        (["--db", "not a url"], "not a valid database URL"),
        (["--db", "mysql://x@127.0.0.1/db"], "unsupported database backend"),
        (["--db", "postgresql://growthflow:s3cr3t-pw@127.0.0.1:1/db"], "cannot use database"),
        (["--db", "sqlite:///{tmp}/x.db", "--schema", "s"], "PostgreSQL only"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    (tmp_path / "x.db").touch()
    r = cli("attribution", "run", *args, "--start", "2023-09-01", "--end", "2023-09-02")
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "s3cr3t-pw" not in r.stderr + r.stdout


@pytest.mark.parametrize("target", ["a directory", "under a file"])
def test_an_unwritable_output_fails_before_the_run(tmp_path, target):
    """Issue 10 item 11: one clear line, exit 2, and no run started (nothing committed)."""
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    assert cli("attribution", "demo-data", "--db", db, "--scale", "0.01").returncode == 0
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path if target == "a directory" else tmp_path / "file.txt" / "report.csv"
    for command in (
        ["attribution", "run", "--start", "2023-09-01", "--end", "2023-09-02", "--csv"],
        ["attribution", "export", "--csv"],
    ):
        r = cli(*command, str(out), "--db", db)
        assert r.returncode == 2, r.stderr
        assert f"cannot write {out}" in r.stderr
        assert "Traceback" not in r.stderr + r.stdout
    runs = sa.create_engine(db).connect().execute(sa.text("SELECT COUNT(*) FROM gf_runs"))
    assert runs.scalar_one() == 0


def test_invalid_settings_are_reported(tmp_path):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    assert cli("attribution", "init-db", "--db", db).returncode == 0
    r = cli("attribution", "run", "--db", db, "--start", "2023-09-05", "--end", "2023-09-01")
    assert r.returncode == 2 and "end 2023-09-01 is before start 2023-09-05" in r.stderr
    r = cli(
        "attribution",
        "run",
        "--db",
        db,
        "--start",
        "2023-09-01",
        "--end",
        "2023-09-02",
        "--max-sessions",
        "50",
    )
    assert r.returncode == 2 and "cannot exceed max_sessions" in r.stderr
    r = cli(
        "attribution",
        "run",
        "--db",
        db,
        "--start",
        "2023-09-01",
        "--end",
        "2023-09-02",
        "--model",
        "nope",
    )
    assert r.returncode == 2 and "unknown model 'nope'" in r.stderr
    r = cli("attribution", "run", "--db", db, "--start", "2023-09-31", "--end", "2023-09-02")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_missing_tables_message(tmp_path):
    (tmp_path / "empty.db").touch()
    r = cli(
        "attribution",
        "run",
        "--db",
        f"sqlite:///{tmp_path / 'empty.db'}",
        "--start",
        "2023-09-01",
        "--end",
        "2023-09-02",
    )
    assert r.returncode == 1
    assert "missing input tables: session_sources, conversions, session_costs" in r.stderr


def test_help_lists_the_commands():
    r = cli("attribution", "--help")
    assert r.returncode == 0
    for command in ("demo-data", "init-db", "run", "export"):
        assert command in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        ({"--start": "2023-02-30"}, "'2023-02-30' is not a date: day is out of range for month"),
        ({"--start": "2023-9-1"}, "'2023-9-1' is not a date: expected YYYY-MM-DD"),
        ({"--db": ""}, "--db is empty"),
    ],
)
def test_small_cli_mistakes_get_a_precise_line(tmp_path, args, message):
    """Issue 10 item 19: the message names the invalid day; an empty --db is not the default."""
    options = {"--start": "2023-09-01", "--end": "2023-09-02", **args}
    r = cli("attribution", "run", *[x for kv in options.items() for x in kv], cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "formats" not in r.stderr
    assert "Traceback" not in r.stderr and "╭" not in r.stderr  # plain when not a terminal
    assert not (tmp_path / "data").exists()  # the default database was not created


def test_piped_help_is_not_cut_at_80_columns():
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    r = subprocess.run(
        [sys.executable, "-m", "growthflow", "attribution", "run", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0
    words = " ".join(r.stdout.split())
    assert "postgresql+psycopg://user@host/db). Default: GROWTHFLOW_DATABASE_URL." in words
    assert "…" not in r.stdout and "╭" not in r.stdout


def test_readme_demo_command_is_the_makefile_target():
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "attribution run --db $(DEMO_DB) --start 2023-09-01 --end 2023-09-07" in makefile
    assert "make demo" in readme and "make test" in readme
