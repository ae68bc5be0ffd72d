"""Writing output files so readers never see half of one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from growthflow.errors import ConfigError


class OutputError(ConfigError):
    """An output file cannot be written where the user asked."""


def check_writable(path: Path | str) -> Path:
    """Fail now, with one clear line, when a file cannot be written at ``path`` (a directory,
    a parent that cannot be created, no permission), rather than after the work is done.
    Creates the missing parent directories, as writing the file would."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory; give a file name")
    probe = path.with_name(f".{path.name}.{os.getpid()}.check")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.open("w").close()
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


@contextmanager
def atomic_write(path: Path | str) -> Iterator[TextIO]:
    """Write to a temporary file next to ``path`` and rename it over ``path`` on success.

    The file gets the usual permissions (the umask applies), unlike ``tempfile``'s 0600.
    """
    path = check_writable(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            handle = tmp.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        with handle:
            yield handle
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
