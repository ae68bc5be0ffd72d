"""The IHC attribution API's contract, shared by our client and our local server.

``POST {api_url}?conv_type_id={id}`` with header ``x-api-key`` and body
``{"customer_journeys": [session, ...], "redistribution_parameter": {...}?}``; the answer is
``{"statusCode": 200|206, "value": [result, ...], "partialFailureErrors": [...]}``. A request
holds at most 100 journeys and 3,000 sessions (free accounts: 200), a journey at most 100
sessions; the API rounds values to 4 decimals.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from growthflow.attribution.models import JourneyBatch

DEFAULT_API_URL = "https://api.ihc-attribution.com/v1/compute_ihc"
MAX_JOURNEYS = 100
MAX_SESSIONS = 3000
MAX_SESSIONS_PER_JOURNEY = 100
# As tight as a pattern can be; the calendar (no 2023-02-30) is checked when parsed.
TIMESTAMP_PATTERN = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r" ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$"
)


Flag = Annotated[StrictInt, Field(ge=0, le=1)]  # 0 or 1; true, 1.0 and "1" are not flags


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversion_id: str = Field(min_length=1)
    session_id: str = Field(min_length=1)
    timestamp: str = Field(pattern=TIMESTAMP_PATTERN, examples=["2023-09-01 10:00:00"])
    channel_label: str = Field(min_length=1)
    holder_engagement: Flag
    closer_engagement: Flag
    conversion: Flag
    impression_interaction: Flag

    @field_validator("timestamp")
    @classmethod
    def _a_real_time(cls, value: str) -> str:
        try:
            datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise ValueError(f"{value!r} is not a date and time (YYYY-MM-DD HH:MM:SS)") from None
        return value


class ComputeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_journeys: list[SessionIn] = Field(min_length=1, max_length=MAX_SESSIONS)
    redistribution_parameter: dict[str, Any] | None = None


class SessionOut(BaseModel):
    conversion_id: str
    session_id: str
    initializer: float
    holder: float
    closer: float
    ihc: float


class ApiError(BaseModel):
    """Every error the API answers: 400 bad request, 403 wrong key, 413, 429, 500."""

    statusCode: StrictInt  # noqa: N815 (the API's field name)
    message: str


class ComputeResponse(BaseModel):
    statusCode: StrictInt  # noqa: N815 (the API's field name)
    value: list[SessionOut]
    partialFailureErrors: list[Any] = Field(default_factory=list)  # noqa: N815


def timestamps(batch: JourneyBatch) -> list[str]:
    """Session times as the API writes them: ``YYYY-MM-DD HH:MM:SS``."""
    text = np.datetime_as_string(batch.ts.astype("datetime64[s]"), unit="s")
    return np.char.replace(text, "T", " ").tolist()


def request_sessions(batch: JourneyBatch) -> list[dict[str, Any]]:
    """The ``customer_journeys`` list of a request for this batch (ids as text, flags 0/1)."""
    return [
        {
            "conversion_id": str(conv),
            "session_id": str(sid),
            "timestamp": ts,
            "channel_label": str(channel),
            "holder_engagement": int(h),
            "closer_engagement": int(c),
            "conversion": int(conv_flag),
            "impression_interaction": int(i),
        }
        for conv, sid, ts, channel, h, c, conv_flag, i in zip(
            batch.conv_id_per_session().tolist(),
            batch.session_ids.tolist(),
            timestamps(batch),
            batch.channel.tolist(),
            batch.holder_engagement.tolist(),
            batch.closer_engagement.tolist(),
            batch.conversion.tolist(),
            batch.impression_interaction.tolist(),
            strict=True,
        )
    ]


def fingerprints(
    sessions: list[dict[str, Any]],
    offsets: np.ndarray,
    conv_type_id: str,
    redistribution_parameter: dict[str, Any] | None,
) -> list[str]:
    """Per journey, a SHA-256 of exactly what is sent for it and how it is scored."""
    context = json.dumps(
        {"conv_type_id": conv_type_id, "redistribution_parameter": redistribution_parameter},
        sort_keys=True,
    )
    out = []
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        digest = hashlib.sha256(context.encode())
        digest.update(json.dumps(sessions[start:end], sort_keys=True).encode())
        out.append(digest.hexdigest())
    return out
