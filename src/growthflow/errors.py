"""Exception hierarchy, and turning validation errors into one readable line.

Every error a user can cause derives from :class:`GrowthflowError`; the CLI prints its
message (never a traceback) and exits non-zero. Messages must never contain secrets.
"""


class GrowthflowError(Exception):
    """Base class for errors caused by input, configuration or external services."""

    exit_code = 1


class ConfigError(GrowthflowError):
    """Invalid settings or command-line options."""

    exit_code = 2


class DatabaseError(GrowthflowError):
    """The database cannot be reached, or lacks the expected tables or columns."""


class InputDataError(GrowthflowError):
    """Input data cannot be used at all (bad rows alone are counted and skipped instead)."""


def describe_errors(errors: list[dict], limit: int = 10) -> str:
    """pydantic/FastAPI error dicts as ``field.path: message; ...`` (first ``limit``)."""
    return "; ".join(
        (f"{'.'.join(map(str, e['loc']))}: " if e.get("loc") else "") + e["msg"]
        for e in errors[:limit]
    )
