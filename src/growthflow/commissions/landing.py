"""The landing zone and the archive: which files are there, and moving them away once loaded.

Daily feeds land as ``<landing>/<feed>/YYYY-MM-DD.csv``, snapshot feeds as
``<landing>/<feed>.csv``. A file modified less than ``settle_seconds`` ago may still be being
written and is left for a later run. Once its load has committed, a file moves to
``<archive>/<feed>/<day or feed>.<hash>.csv`` (every version keeps its own name); a rejected
file moves to ``<archive>/_rejected/<feed>/``. Moves are atomic renames (copy, fsync, rename
across file systems), so a crash leaves the file in the landing zone or in the archive,
and a rerun that finds it loaded already only finishes the move.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from growthflow.commissions.config import FeedConfig
from growthflow.errors import ConfigError

_DAY_NAME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\.csv$")


@dataclass
class LandingFile:
    feed: str
    path: Path
    name: str  # relative to the landing zone
    day: date | None = None  # daily feeds
    bad_name: str | None = None  # why the name cannot be a file of the feed

    @property
    def archive_name(self) -> str:
        return self.day.isoformat() if self.day else self.path.stem


@dataclass
class Discovery:
    files: list[LandingFile] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # still being written
    ignored: list[str] = field(default_factory=list)  # not in any feed's place


def discover(landing: Path, config: FeedConfig, now: float | None = None) -> Discovery:
    """Every complete file in the landing zone, in a stable order (feed, then name)."""
    if not landing.is_dir():
        raise ConfigError(f"landing zone not found: {landing}")
    now = time.time() if now is None else now
    found = Discovery()
    known = set()
    for feed in config.feeds.values():
        if feed.kind == "snapshot":
            candidates = [landing / f"{feed.name}.csv"]
            known.add(f"{feed.name}.csv")
        else:
            folder = landing / feed.name
            known.add(feed.name)
            candidates = sorted(folder.iterdir()) if folder.is_dir() else []
        for path in candidates:
            if path.name.startswith(".") or not path.is_file():
                continue
            name = path.relative_to(landing).as_posix()
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if now - modified < config.settle_seconds:
                found.waiting.append(name)
                continue
            item = LandingFile(feed=feed.name, path=path, name=name)
            if feed.kind == "daily":
                item.day, item.bad_name = _day_of(path.name)
            found.files.append(item)
    for path in sorted(landing.iterdir()):
        if path.name not in known and not path.name.startswith("."):
            found.ignored.append(path.name)
    return found


def _day_of(name: str) -> tuple[date | None, str | None]:
    m = _DAY_NAME.match(name)
    if not m:
        return None, "name is not a date (YYYY-MM-DD.csv)"
    try:
        return date(int(m[1]), int(m[2]), int(m[3])), None
    except ValueError:
        return None, "name is not a date (YYYY-MM-DD.csv)"


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive_path(archive: Path, item: LandingFile, digest: str, rejected: bool) -> Path:
    if rejected:
        return archive / "_rejected" / item.feed / f"{item.path.name}.{digest[:16]}"
    return archive / item.feed / f"{item.archive_name}.{digest[:16]}.csv"


def move(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` atomically; a target already there (same content, by
    its name) means an earlier run moved it and only the source is left to remove."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        source.unlink(missing_ok=True)
        return
    try:
        os.replace(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # the archive is on another file system
            raise
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with source.open("rb") as src, tmp.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, target)
    source.unlink(missing_ok=True)
