"""The voucher selection API: the most used voucher amount of a customer's segment.

Answers come from memory: the published ``voucher_segments`` (winners per band) and the
segment definitions, read in one snapshot and reloaded when a newer version appears in
``gf_voucher_runs`` (polled every ``poll_s`` seconds, off the request path).

    POST /voucher          {"customer_id": 1, "country_code": "Peru", "last_order_ts": ...}
    GET  /voucher_amount   the same JSON body (the original contract)
    GET  /health
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from growthflow.database import read_only
from growthflow.server import BodyLimit
from growthflow.vouchers.pipeline import runs, voucher_segments
from growthflow.vouchers.segments import Segment

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # a customer is well under 1 KB


def _integer(value: object) -> object:
    """JSON Schema's integer: 7 and 7.0 are integers; true, "7" and 7.5 are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("Input should be a valid integer")
    return value


Integer = Annotated[int, BeforeValidator(_integer)]


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Strict: true or "7" is not an integer; names are short.
    customer_id: Integer
    country_code: StrictStr = Field(min_length=1, max_length=100)
    last_order_ts: datetime
    first_order_ts: datetime
    total_orders: Integer = Field(ge=0)
    segment_name: StrictStr = Field(min_length=1, max_length=100)

    @field_validator("last_order_ts", "first_order_ts")
    @classmethod
    def _naive_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


class VoucherAmount(BaseModel):
    """The original contract's answer (GET /voucher_amount)."""

    voucher_amount: int | float


class VoucherAnswer(VoucherAmount):
    """POST /voucher: the amount, the customer's band and where the amount comes from."""

    band: str | None = Field(
        description="The customer's band in the segment; null when no band holds the value."
    )
    fallback: Literal["segment"] | None = Field(
        description="null: the band's most used amount. 'segment': the band has no data, so "
        "this is the most used amount over all bands of the segment."
    )


class Problem(BaseModel):
    """The body of a 404, 413 or 503."""

    detail: str


def _unprocessable(field: str | None, message: str, kind: str) -> RequestValidationError:
    """A 422 for a rule the schema cannot state, shaped like every other 422."""
    loc = ("body", field) if field else ("body",)
    return RequestValidationError([{"loc": loc, "msg": message, "type": kind}])


class JsonBodyRoute(APIRoute):
    """A body FastAPI cannot parse (not UTF-8, nested too deep, a 5,000-digit number) is a
    422 like malformed JSON, not FastAPI's bare 400."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except StarletteHTTPException as exc:  # what FastAPI raises for an unparsable body
                if exc.status_code != 400:  # growthflow itself never answers 400
                    raise
                raise _unprocessable(None, "the body is not valid JSON", "json_invalid") from None

        return route


@dataclass(frozen=True)
class Choice:
    amount: float
    band: str | None
    fallback: Literal["segment"] | None


@dataclass(frozen=True)
class Published:
    """One published version, as the API serves it."""

    version: int
    country: str
    segments: dict[str, Segment]
    winners: dict[tuple[str, str], float]  # (segment_name, band label) -> amount
    segment_winners: dict[str, float]  # segment_name -> amount, counted over all its bands


def current_version(engine: sa.Engine) -> int | None:
    """The newest published version; None when nothing was ever published."""
    with read_only(engine) as conn:
        if not sa.inspect(conn).has_table(runs.name):
            return None
        return conn.execute(sa.select(sa.func.max(runs.c.version))).scalar()


def load_published(engine: sa.Engine) -> Published | None:
    """The newest version, read in one transaction (one consistent snapshot)."""
    with read_only(engine) as conn:
        if not sa.inspect(conn).has_table(runs.name):
            return None
        latest = conn.execute(
            sa.select(runs.c.version, runs.c.country, runs.c.segments)
            .order_by(runs.c.version.desc())
            .limit(1)
        ).first()
        if latest is None:
            return None
        rows = conn.execute(
            sa.select(
                voucher_segments.c.segment_name,
                voucher_segments.c.segment,
                voucher_segments.c.voucher_amount,
                voucher_segments.c.voucher_count,
            )
        ).all()
    per_band: dict[tuple[str, str], Counter[float]] = defaultdict(Counter)
    per_segment: dict[str, Counter[float]] = defaultdict(Counter)
    for name, band, amount, count in rows:
        per_band[name, band][amount] += count
        per_segment[name][amount] += count
    segments = {n: Segment.model_validate(s) for n, s in json.loads(latest.segments).items()}
    return Published(
        version=latest.version,
        country=latest.country,
        segments=segments,
        winners={key: _most_used(counts) for key, counts in per_band.items()},
        segment_winners={name: _most_used(counts) for name, counts in per_segment.items()},
    )


def _most_used(counts: Counter[float]) -> float:
    """The highest count wins; ties go to the smaller amount."""
    return min(counts, key=lambda amount: (-counts[amount], amount))


def choose_voucher(published: Published, customer: Customer, today: date) -> Choice:
    """The winning amount for the customer, or HTTPException 404/422 with a clear message.

    A band without data (or a value no band holds) falls back to the most used amount over
    the whole segment; 404 only when the segment has no data at all.
    """
    segment = published.segments.get(customer.segment_name)
    if segment is None:  # the OpenAPI document lists the published names as an enum
        raise _unprocessable(
            "segment_name",
            f"unknown segment_name; expected one of: {', '.join(sorted(published.segments))}",
            "enum",
        )
    if customer.country_code.strip().lower() != published.country.strip().lower():
        raise HTTPException(
            404,
            f"no segments for country {customer.country_code[:100]!r}; "
            f"the pipeline was run for {published.country!r}",
        )
    if customer.last_order_ts.date() > today:
        raise _unprocessable(
            "last_order_ts", f"last_order_ts is after the reference date {today}", "date_order"
        )
    if customer.last_order_ts < customer.first_order_ts:
        raise _unprocessable(
            "last_order_ts", "last_order_ts is before first_order_ts", "date_order"
        )
    if segment.field == "total_orders":
        value = customer.total_orders
    else:
        value = (today - customer.last_order_ts.date()).days
    band = segment.band_of(value)
    label = band.label if band else None
    amount = published.winners.get((customer.segment_name, label)) if label else None
    if amount is not None:
        return Choice(amount, label, None)
    amount = published.segment_winners.get(customer.segment_name)
    if amount is None:
        raise HTTPException(404, f"{customer.segment_name}: no voucher data in any band")
    return Choice(amount, label, "segment")


def create_app(
    engine: sa.Engine,
    *,
    reference_date: date | None = None,
    poll_s: float = 1.0,
    clock: Callable[[], date] | None = None,
) -> FastAPI:
    """``reference_date`` fixes "today" (reproducible answers); otherwise today in UTC."""
    state: dict[str, Published | None] = {"published": None}

    def today() -> date:
        if reference_date is not None:
            return reference_date
        return clock() if clock else datetime.now(UTC).date()

    async def reload_if_newer() -> None:
        version = await asyncio.to_thread(current_version, engine)
        loaded = state["published"]
        if version is not None and (loaded is None or version != loaded.version):
            state["published"] = await asyncio.to_thread(load_published, engine)
            log.info("serving voucher segments version %s", version)

    async def poll() -> None:
        said = None  # the last problem logged: each is said once, not at every poll
        while True:
            await asyncio.sleep(poll_s)
            try:
                await reload_if_newer()
            except Exception as exc:  # keep serving the last good version
                problem = f"could not check for new voucher segments ({exc.__class__.__name__})"
            else:
                problem = None
            if problem is None and state["published"] is None:
                problem = "nothing published yet: run `growthflow vouchers run`"
            if problem is not None and problem != said:
                loaded = state["published"]
                serving = f"serving version {loaded.version}" if loaded else "answering 503"
                log.warning("%s; %s", problem, serving)
            said = problem

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        state["published"] = await asyncio.to_thread(load_published, engine)
        task = asyncio.create_task(poll())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(
        title="growthflow voucher selection",
        description="The most used voucher amount in a customer's segment.",
        lifespan=lifespan,
    )
    app.router.route_class = JsonBodyRoute
    app.state.vouchers = state
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    openapi_cache: dict[int | None, dict] = {}

    def openapi() -> dict:
        """The document of the version being served: ``segment_name`` is an enum of its
        segments (rebuilt when a new version is published)."""
        published = state["published"]
        version = published.version if published else None
        if version not in openapi_cache:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            if published is not None:
                field = doc["components"]["schemas"]["Customer"]["properties"]["segment_name"]
                field["enum"] = sorted(published.segments)
            openapi_cache.clear()
            openapi_cache[version] = doc
        return openapi_cache[version]

    app.openapi = openapi  # type: ignore[method-assign]
    problems = {
        404: {"model": Problem, "description": "No data for this country or segment"},
        413: {"model": Problem, "description": f"Body over {MAX_BODY_BYTES:,} bytes"},
        503: {"model": Problem, "description": "Nothing published yet"},
    }

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each bad input, which may be huge or not JSON at all (NaN).
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:300], "type": e["type"]}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    def answer(customer: Customer) -> VoucherAnswer:
        published = state["published"]
        if published is None:
            raise HTTPException(503, "no voucher segments published yet: run the pipeline")
        choice = choose_voucher(published, customer, today())
        amount = choice.amount
        return VoucherAnswer(
            voucher_amount=int(amount) if amount.is_integer() else amount,
            band=choice.band,
            fallback=choice.fallback,
        )

    @app.post("/voucher", response_model=VoucherAnswer, responses=problems)
    async def voucher(customer: Customer) -> VoucherAnswer:
        return answer(customer)

    @app.get("/voucher_amount", response_model=VoucherAmount, responses=problems)
    async def voucher_amount(customer: Customer, response: Response) -> VoucherAmount:
        """The original contract: a GET with the customer as JSON body, answered with the
        amount alone. The band, and a fallback to the whole segment, are in the headers."""
        full = answer(customer)
        if full.band is not None:
            response.headers["X-Voucher-Band"] = full.band
        if full.fallback is not None:
            response.headers["X-Voucher-Fallback"] = full.fallback
        return VoucherAmount(voucher_amount=full.voucher_amount)

    @app.get("/health")
    async def health() -> dict:
        published = state["published"]
        return {"status": "ok", "version": published.version if published else None}

    return app
