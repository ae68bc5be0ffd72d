"""Attribution through the commercial IHC API: an async httpx client that survives a hostile
network without wasting the account's quota.

- Planned batches are sent concurrently (at most ``concurrency`` requests in flight, and only
  that many batches in memory).
- 429 (honouring ``Retry-After``), 500/502/503/504, timeouts, connection errors and malformed
  or truncated bodies are retried with exponential backoff and full jitter. 400 and 403 stop
  the run with one clear message, and so does a circuit breaker when ``unreachable_after``
  attempts in a row (over all concurrent requests) could not even connect: a wrong URL or a
  closed port fails in about a second, not after every journey's retries.
- Every journey of a response is checked (same sessions as sent, values in [0, 1], ihc summing
  to 1 within 1e-3, then normalised). A journey failing a check or listed in
  ``partialFailureErrors`` is sent again in a later request; after ``journey_attempts`` it is
  reported and never written. Nothing partial is ever stored for a journey.
- Good journeys are stored as each response arrives (one transaction per response), with a
  fingerprint of what was sent; a rerun skips journeys whose fingerprint matches, so a run
  killed half-way resends only what is missing.
- The API key is only ever placed in the request header; it never reaches logs, messages,
  the database or files.
"""

from __future__ import annotations

import asyncio
import csv
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from growthflow.attribution import schema
from growthflow.attribution.attribute import load_batch, store_attribution
from growthflow.attribution.batches import pack
from growthflow.attribution.ihc_contract import (
    DEFAULT_API_URL,
    ComputeResponse,
    fingerprints,
    request_sessions,
)
from growthflow.attribution.models import Attribution, JourneyBatch
from growthflow.database import read_only
from growthflow.errors import ConfigError, GrowthflowError, describe_errors
from growthflow.files import atomic_write

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
SUM_TOLERANCE = 1e-3


class IhcApiError(GrowthflowError):
    """The IHC API refused the run (wrong key, rejected request, unexpected answer)."""


class IhcApiConfig(BaseModel):
    """How to reach the IHC API. The key is a ``SecretStr``: it prints as ``**********``."""

    model_config = ConfigDict(frozen=True)

    api_key: SecretStr
    conv_type_id: str = Field(min_length=1)
    api_url: str = DEFAULT_API_URL
    concurrency: int = Field(default=4, ge=1, le=64)
    timeout_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, description="tries per request")
    unreachable_after: int = Field(
        default=8, ge=1, description="connection failures in a row that stop the run"
    )
    journey_attempts: int = Field(default=3, ge=1, description="requests per journey")
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    redistribution_parameter: dict[str, Any] | None = None
    force: bool = False

    @property
    def model_name(self) -> str:
        return f"ihc-api:{self.conv_type_id}"


def api_config_from_settings(
    settings,
    *,
    api_key: str | None = None,
    conv_type_id: str | None = None,
    api_url: str | None = None,
    concurrency: int | None = None,
    force: bool = False,
) -> IhcApiConfig:
    """Explicit values (flags, an Airflow variable) over the ``GROWTHFLOW_IHC_*`` settings."""
    key = api_key or (settings.ihc_api_key.get_secret_value() if settings.ihc_api_key else None)
    conv_type_id = conv_type_id or settings.ihc_conv_type_id
    if not key:
        raise ConfigError("the ihc-api provider needs an API key: set GROWTHFLOW_IHC_API_KEY")
    if not conv_type_id:
        raise ConfigError(
            "the ihc-api provider needs a conv_type_id (--conv-type-id or "
            "GROWTHFLOW_IHC_CONV_TYPE_ID)"
        )
    values = {
        "api_key": key,
        "conv_type_id": conv_type_id,
        "concurrency": concurrency or settings.ihc_concurrency,
        "redistribution_parameter": settings.ihc_redistribution_parameter,
        "force": force,
    }
    if api_url or settings.ihc_api_url:
        values["api_url"] = api_url or settings.ihc_api_url
    try:
        return IhcApiConfig(**values)
    except ValidationError as exc:
        raise ConfigError(f"invalid IHC API settings: {describe_errors(exc.errors())}") from None


@dataclass
class ApiStats:
    requests: int = 0
    request_retries: int = 0
    journeys_skipped: int = 0
    journeys_sent: int = 0
    journeys_retried: int = 0
    journeys_failed: int = 0
    rows_written: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


class _RequestFailed(Exception):
    """A request still failing after every retry (its journeys may go into a later one)."""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _api_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict):
            body = body.get("message") or body.get("detail") or body.get("error") or body
        text = body if isinstance(body, str) else json.dumps(body)
    except ValueError:
        text = response.text
    return " ".join(text.split())[:500] or response.reason_phrase


def _where(url: str) -> str:
    """The API's address without any credentials in it, for messages."""
    try:
        return str(httpx.URL(url).copy_with(username=None, password=None, query=None))
    except (httpx.InvalidURL, TypeError):
        return "the configured --api-url"


class IhcClient:
    """Sends one request with retries; knows nothing about the database.

    All concurrent requests share one circuit breaker: ``unreachable_after`` connection
    failures in a row, with no HTTP answer in between, stop the run with one message.
    """

    def __init__(self, http: httpx.AsyncClient, config: IhcApiConfig, stats: ApiStats):
        self.http = http
        self.config = config
        self.stats = stats
        self.connect_failures = 0  # in a row, over all requests; any HTTP answer resets it

    def _cannot_connect(self, reason: str) -> None:
        self.connect_failures += 1
        if self.connect_failures >= self.config.unreachable_after:
            raise IhcApiError(
                f"cannot reach the IHC API at {_where(self.config.api_url)}: "
                f"{self.connect_failures} connection attempts in a row failed ({reason}); "
                "check --api-url / GROWTHFLOW_IHC_API_URL and the network. Journeys stored "
                "so far are kept; a rerun sends only the rest"
            )

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # noqa: S311 (jitter, not security)

    async def compute(self, sessions: list[dict[str, Any]]) -> ComputeResponse:
        body: dict[str, Any] = {"customer_journeys": sessions}
        if self.config.redistribution_parameter is not None:
            body["redistribution_parameter"] = self.config.redistribution_parameter
        headers = {"x-api-key": self.config.api_key.get_secret_value()}
        params = {"conv_type_id": self.config.conv_type_id}
        reason = "no attempt made"
        for attempt in range(1, self.config.max_attempts + 1):
            wait = None
            try:
                self.stats.requests += 1
                response = await self.http.post(
                    self.config.api_url, params=params, json=body, headers=headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                reason = f"cannot connect ({type(exc).__name__})"
                self._cannot_connect(reason)
            except httpx.TimeoutException:
                reason = "timed out"
            except httpx.TransportError as exc:
                reason = f"connection error ({type(exc).__name__})"
            else:
                self.connect_failures = 0
                status = response.status_code
                if status == 403:
                    raise IhcApiError(
                        "the IHC API rejected the API key (403 Forbidden): check "
                        "GROWTHFLOW_IHC_API_KEY"
                    )
                if status == 400:
                    raise IhcApiError(
                        f"the IHC API rejected a request (400): {_api_message(response)}"
                    )
                if status in (200, 206):
                    try:
                        parsed = ComputeResponse.model_validate_json(response.content)
                    except ValidationError:
                        reason = f"malformed or truncated response body (HTTP {status})"
                    else:
                        if parsed.statusCode in (200, 206):
                            return parsed
                        reason = f"statusCode {parsed.statusCode} in the response body"
                elif status in RETRY_STATUS:
                    reason = f"HTTP {status}"
                    if status == 429:
                        wait = _retry_after(response)
                else:
                    raise IhcApiError(
                        f"unexpected answer from the IHC API (HTTP {status}): "
                        f"{_api_message(response)}"
                    )
            if attempt == self.config.max_attempts:
                break
            self.stats.request_retries += 1
            delay = wait if wait is not None else self._backoff(attempt)
            log.info("IHC request failed (%s); retry %d in %.2f s", reason, attempt, delay)
            await asyncio.sleep(delay)
        raise _RequestFailed(f"{reason} after {self.config.max_attempts} attempts")


def check_response(
    batch: JourneyBatch, response: ComputeResponse
) -> tuple[np.ndarray, Attribution, dict[int, str]]:
    """Split a response into good journeys (indices and their values) and failed ones."""
    index = {
        key: i
        for i, key in enumerate(
            zip(batch.conv_id_per_session().tolist(), batch.session_ids.tolist(), strict=True)
        )
    }
    values = np.full((batch.n_sessions, 4), np.nan)
    seen = np.zeros(batch.n_sessions, dtype=np.int64)
    failed: dict[int, str] = {}
    journey_of_conv = {c: j for j, c in enumerate(batch.conv_ids.tolist())}
    for row in response.value:
        i = index.get((row.conversion_id, row.session_id))
        if i is None:
            j = journey_of_conv.get(row.conversion_id)
            if j is not None:
                failed.setdefault(j, f"unexpected session {row.session_id} in the response")
            continue
        seen[i] += 1
        values[i] = (row.initializer, row.holder, row.closer, row.ihc)
    for error in response.partialFailureErrors:
        text = json.dumps(error) if not isinstance(error, str) else error
        conv = error.get("conversion_id") if isinstance(error, dict) else None
        for c, j in journey_of_conv.items():
            if conv == c or (conv is None and c in text):
                failed.setdefault(j, f"partial failure: {text[:200]}")
    journey = batch.journey_of
    missing = np.bincount(journey, weights=seen != 1, minlength=batch.n_journeys) > 0
    out_of_range = ~((values >= 0) & (values <= 1)).all(axis=1)
    bad_values = np.bincount(journey, weights=out_of_range, minlength=batch.n_journeys) > 0
    sums = batch.journey_sum(np.nan_to_num(values[:, 3]))
    for j in np.flatnonzero(missing):
        failed.setdefault(int(j), "sessions missing or repeated in the response")
    for j in np.flatnonzero(bad_values & ~missing):
        failed.setdefault(int(j), "values outside [0, 1]")
    for j in np.flatnonzero(np.abs(sums - 1) > SUM_TOLERANCE):
        failed.setdefault(int(j), f"ihc sums to {sums[j]:.4f}, not 1")
    good = np.setdiff1d(np.arange(batch.n_journeys), np.fromiter(failed, dtype=np.int64))
    kept = batch.select(good)
    rows = values[np.isin(journey, good)]
    ihc = rows[:, 3] / kept.per_session(kept.journey_sum(rows[:, 3]))
    return good, Attribution(rows[:, 0], rows[:, 1], rows[:, 2], ihc), failed


async def attribute_with_api(
    engine: sa.Engine,
    run_id: str,
    batch_nos: list[int],
    config: IhcApiConfig,
    *,
    max_journeys: int,
    max_sessions: int,
    on_batch: Callable[[JourneyBatch], None] | None = None,
) -> ApiStats:
    """Attribute the run's planned batches through the API and store the results."""
    stats = ApiStats()
    attempts: dict[str, int] = {}
    retry_pool: list[JourneyBatch] = []
    slots = asyncio.Semaphore(config.concurrency)
    limits = httpx.Limits(max_connections=config.concurrency)
    timeout = httpx.Timeout(config.timeout_s)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        client = IhcClient(http, config, stats)

        async def send(batch: JourneyBatch) -> None:
            sessions = request_sessions(batch)
            prints = fingerprints(
                sessions, batch.offsets, config.conv_type_id, config.redistribution_parameter
            )
            for conv in batch.conv_ids.tolist():
                if conv not in attempts:
                    stats.journeys_sent += 1
                attempts[conv] = attempts.get(conv, 0) + 1
            try:
                response = await client.compute(sessions)
            except _RequestFailed as exc:
                good, failed = (
                    np.empty(0, dtype=np.int64),
                    dict.fromkeys(range(batch.n_journeys), str(exc)),
                )
            else:
                good, result, failed = check_response(batch, response)
                if len(good):
                    kept = batch.select(good)
                    kept_prints = [prints[j] for j in good.tolist()]
                    # Await first, then add: `x += await ...` reads x before the await and
                    # loses the updates of the tasks that finish meanwhile.
                    written = await asyncio.to_thread(
                        _store, engine, run_id, kept, result, config.model_name, kept_prints
                    )
                    stats.rows_written += written
            for j, reason in sorted(failed.items()):
                conv = str(batch.conv_ids[j])
                if attempts[conv] < config.journey_attempts:
                    stats.journeys_retried += attempts[conv] == 1
                    retry_pool.append(batch.select(np.array([j])))
                else:
                    stats.journeys_failed += 1
                    stats.failures.append((conv, reason))
                    log.warning("conversion %s failed: %s", conv, reason)

        async def planned(batch_no: int) -> None:
            async with slots:
                batch, skipped = await asyncio.to_thread(
                    _load_unsent, engine, run_id, batch_no, config
                )
                stats.journeys_skipped += skipped
                if batch.n_journeys:
                    await send(batch)
                if on_batch is not None:
                    on_batch(batch)

        async def retry(batch: JourneyBatch) -> None:
            async with slots:
                await send(batch)

        try:
            async with asyncio.TaskGroup() as group:
                for batch_no in batch_nos:
                    group.create_task(planned(batch_no))
            while retry_pool:  # failed journeys, regrouped into new requests
                pending = JourneyBatch.concat(retry_pool)
                retry_pool.clear()
                plan = pack(pending.lengths, max_journeys, max_sessions)
                async with asyncio.TaskGroup() as group:
                    for b in range(int(plan.max()) + 1):
                        group.create_task(retry(pending.select(np.flatnonzero(plan == b))))
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
    return stats


def _first_error(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups, e.g. a 403 that stopped a run."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _load_unsent(
    engine: sa.Engine, run_id: str, batch_no: int, config: IhcApiConfig
) -> tuple[JourneyBatch, int]:
    """The planned batch without the journeys already stored with the same fingerprint."""
    ac = schema.attributed_conversions
    with read_only(engine) as conn:
        batch = load_batch(conn, run_id, batch_no)
        if config.force:
            return batch, 0
        stored = dict(
            conn.execute(
                sa.select(ac.c.conv_id, ac.c.fingerprint).where(
                    ac.c.conv_id.in_(batch.conv_ids.tolist())
                )
            ).all()
        )
    if not stored:
        return batch, 0
    prints = fingerprints(
        request_sessions(batch), batch.offsets, config.conv_type_id, config.redistribution_parameter
    )
    unsent = [j for j, conv in enumerate(batch.conv_ids.tolist()) if stored.get(conv) != prints[j]]
    return batch.select(np.array(unsent, dtype=np.int64)), batch.n_journeys - len(unsent)


def _store(
    engine: sa.Engine,
    run_id: str,
    batch: JourneyBatch,
    result: Attribution,
    model: str,
    prints: list[str],
) -> int:
    with engine.begin() as conn:
        return store_attribution(conn, run_id, batch, result, model, prints)


def write_failures(path: Path, failures: list[tuple[str, str]]) -> None:
    with atomic_write(path) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("conv_id", "reason"))
        writer.writerows(sorted(failures))
