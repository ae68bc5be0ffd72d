"""A local server speaking the IHC API's contract, for offline development and real-HTTP tests.

It enforces the key, the request schema and the limits like the real API (400 for a bad or
oversized request, 403 for a wrong key, checked before the body is read), computes values
with growthflow's local ``ihc`` model rounded to 4 decimals, and can inject faults: 500, 429
with ``Retry-After``, slow answers, truncated bodies and 206 partial failures.

    growthflow ihc-server --port 8765 --api-key secret --fault-rate 0.2
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from growthflow.attribution.ihc_contract import (
    MAX_JOURNEYS,
    MAX_SESSIONS,
    MAX_SESSIONS_PER_JOURNEY,
    ApiError,
    ComputeRequest,
    ComputeResponse,
)
from growthflow.attribution.models import JourneyBatch, ModelParams, ihc_model, load_params
from growthflow.errors import describe_errors
from growthflow.server import BodyLimit

FAULTS = ("500", "429", "slow", "truncated", "partial")
MAX_BODY_BYTES = 16 * 1024 * 1024  # 3,000 sessions with long ids and labels fit easily
API_KEY_HEADER = "x-api-key"


@dataclass
class ServerStats:
    """What the server saw; tests read it to check the client's behaviour."""

    requests: int = 0
    answered: int = 0
    max_journeys_seen: int = 0
    max_sessions_seen: int = 0
    rejected: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    computed: Counter = field(default_factory=Counter)  # conversion_id -> times answered
    lock: threading.Lock = field(default_factory=threading.Lock)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"statusCode": status, "message": message}, headers=headers
    )


def _key_matches(given: str | None, expected: str) -> bool:
    return bool(given) and secrets.compare_digest(given.encode(), expected.encode())


class KeyGate:
    """ASGI middleware: with a key configured, a request to the compute endpoint without the
    right ``x-api-key`` is answered 403 before its body is read (a huge or malformed body from
    someone without a key costs nothing and tells them nothing)."""

    def __init__(self, app, api_key: str | None, path: str, stats: ServerStats):
        self.app, self.api_key, self.path, self.stats = app, api_key, path, stats

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.api_key is not None and scope["path"] == self.path:
            given = dict(scope["headers"]).get(API_KEY_HEADER.encode(), b"")
            if not _key_matches(given.decode("latin-1"), self.api_key):
                with self.stats.lock:
                    self.stats.requests += 1
                    self.stats.rejected["key"] += 1
                return await _error(403, "Forbidden")(scope, receive, send)
        return await self.app(scope, receive, send)


def _batch_from_request(request: ComputeRequest) -> JourneyBatch:
    """Group sessions by conversion (in order of first appearance), ordered by time, id."""
    rows = request.customer_journeys
    conv = np.array([r.conversion_id for r in rows], dtype=object)
    _, first, journey = np.unique(conv, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))[journey]  # journeys in order of appearance
    ts = np.array([r.timestamp for r in rows], dtype="datetime64[s]")
    sid = np.array([r.session_id for r in rows], dtype=object)
    order = np.lexsort((sid.astype(str), ts, rank))
    lengths = np.bincount(rank[order])
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)

    def col(name, dtype=object):
        return np.array([getattr(rows[i], name) for i in order.tolist()], dtype=dtype)

    session_ts = ts[order]
    return JourneyBatch(
        batch_no=0,
        conv_ids=conv[order][offsets[:-1]],
        conv_ts=session_ts[offsets[1:] - 1],
        offsets=offsets,
        session_ids=sid[order],
        ts=session_ts,
        channel=col("channel_label"),
        holder_engagement=col("holder_engagement", np.int8),
        closer_engagement=col("closer_engagement", np.int8),
        impression_interaction=col("impression_interaction", np.int8),
    )


def create_app(
    *,
    api_key: str | None = None,
    max_journeys: int = MAX_JOURNEYS,
    max_sessions: int = MAX_SESSIONS,
    max_journey_sessions: int = MAX_SESSIONS_PER_JOURNEY,
    fault_rate: float = 0.0,
    faults: tuple[str, ...] = FAULTS,
    latency_s: float = 0.0,
    slow_s: float = 2.0,
    retry_after_s: float = 1.0,
    seed: int | None = None,
    params: ModelParams | None = None,
) -> FastAPI:
    params = params or load_params()
    rng = random.Random(seed)  # noqa: S311 (fault injection, not security)
    stats = ServerStats()
    app = FastAPI(
        title="growthflow IHC-compatible server",
        description="The IHC attribution API's contract, computed with growthflow's local "
        "ihc model. For development and tests; not the commercial service.",
    )
    app.state.stats = stats
    path = "/v1/compute_ihc"
    # The key is checked first, then the body's size, then its content.
    app.add_middleware(
        BodyLimit,
        max_bytes=MAX_BODY_BYTES,
        shape=lambda message: {"statusCode": 413, "message": message},
    )
    app.add_middleware(KeyGate, api_key=api_key, path=path, stats=stats)
    # Declared so the OpenAPI document says a key is needed; KeyGate does the checking.
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        with stats.lock:
            stats.rejected["schema"] += 1
        return _error(400, f"invalid request: {describe_errors(list(exc.errors()), limit=5)}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unparsable bodies (400), oversized ones (413), unknown paths: the API's error shape.
        status = exc.status_code
        message = exc.detail if status != 400 else "invalid request: the body is not JSON"
        return _error(status, str(message), getattr(exc, "headers", None))

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    errors = {
        status: {"model": ApiError, "description": what}
        for status, what in (
            (400, "Invalid or too large request (schema, limits, timestamps)"),
            (403, "Missing or wrong x-api-key"),
            (413, f"Body over {MAX_BODY_BYTES:,} bytes"),
            (429, "Too many requests (with Retry-After)"),
            (500, "Server error"),
        )
    }
    errors[206] = {"model": ComputeResponse, "description": "Some journeys failed"}

    @app.post(
        path,
        response_model=ComputeResponse,
        responses=errors,
        dependencies=[Security(key_header)] if api_key is not None else [],
    )
    async def compute_ihc(body: ComputeRequest, conv_type_id: Annotated[str, Query(min_length=1)]):
        with stats.lock:
            stats.requests += 1
        if latency_s:
            await asyncio.sleep(latency_s)
        batch = _batch_from_request(body)
        with stats.lock:
            stats.max_journeys_seen = max(stats.max_journeys_seen, batch.n_journeys)
            stats.max_sessions_seen = max(stats.max_sessions_seen, batch.n_sessions)
        if batch.n_journeys > max_journeys or batch.n_sessions > max_sessions:
            with stats.lock:
                stats.rejected["limits"] += 1
            return _error(
                400,
                f"request too large: {batch.n_journeys} journeys / {batch.n_sessions} sessions "
                f"(limits {max_journeys} / {max_sessions})",
            )
        if batch.lengths.max() > max_journey_sessions:
            with stats.lock:
                stats.rejected["limits"] += 1
            return _error(400, f"a journey exceeds {max_journey_sessions} sessions")

        fault = rng.choice(faults) if faults and rng.random() < fault_rate else None
        if fault:
            with stats.lock:
                stats.faults[fault] += 1
        if fault == "500":
            return _error(500, "Internal Server Error")
        if fault == "429":
            return JSONResponse(
                status_code=429,
                content={"statusCode": 429, "message": "Too Many Requests"},
                headers={"Retry-After": f"{retry_after_s:g}"},
            )
        if fault == "slow":
            await asyncio.sleep(slow_s)

        result = ihc_model(batch, params)
        values = np.round(
            np.column_stack([result.initializer, result.holder, result.closer, result.ihc]), 4
        )
        dropped: set[str] = set()
        if fault == "partial":
            k = max(1, batch.n_journeys // 3)
            dropped = set(rng.sample(batch.conv_ids.tolist(), k))
        conv = batch.conv_id_per_session().tolist()
        value = [
            {
                "conversion_id": c,
                "session_id": s,
                "initializer": v[0],
                "holder": v[1],
                "closer": v[2],
                "ihc": v[3],
            }
            for c, s, v in zip(conv, batch.session_ids.tolist(), values.tolist(), strict=True)
            if c not in dropped
        ]
        answer = {
            "statusCode": 206 if dropped else 200,
            "value": value,
            "partialFailureErrors": [
                {"conversion_id": c, "message": "internal error computing this journey"}
                for c in sorted(dropped)
            ],
        }
        content = json.dumps(answer).encode()
        if fault == "truncated":
            return Response(content=content[: len(content) // 2], media_type="application/json")
        with stats.lock:
            stats.answered += 1
            stats.computed.update(c for c in batch.conv_ids.tolist() if c not in dropped)
        return Response(content=content, media_type="application/json")

    return app
