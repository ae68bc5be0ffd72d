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


def _temporary(path: Path) -> tuple[Path, TextIO]:
    """The temporary file beside ``path`` that a write goes to, opened; one clear error when it
    cannot be (``path`` a directory, a parent that cannot be created, no permission)."""
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory; give a file name")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tmp, tmp.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def check_writable(path: Path | str) -> Path:
    """Fail now, with one clear line, when ``path`` cannot be written, rather than after the
    work is done. Creates the missing parent directories, as writing the file would."""
    path = Path(path)
    tmp, handle = _temporary(path)
    handle.close()
    tmp.unlink()
    return path


@contextmanager
def atomic_write(path: Path | str) -> Iterator[TextIO]:
    """Write to a temporary file next to ``path`` and rename it over ``path`` on success.

    The file gets the usual permissions (the umask applies), unlike ``tempfile``'s 0600.
    """
    path = Path(path)
    tmp, handle = _temporary(path)
    try:
        with handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
