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
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from growthflow.attribution.models import JourneyBatch

DEFAULT_API_URL = "https://api.ihc-attribution.com/v1/compute_ihc"
MAX_JOURNEYS = 100
MAX_SESSIONS = 3000
MAX_SESSIONS_PER_JOURNEY = 100


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversion_id: str = Field(min_length=1)
    session_id: str = Field(min_length=1)
    timestamp: str = Field(pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
    channel_label: str = Field(min_length=1)
    holder_engagement: Literal[0, 1]
    closer_engagement: Literal[0, 1]
    conversion: Literal[0, 1]
    impression_interaction: Literal[0, 1]


class ComputeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_journeys: list[SessionIn] = Field(min_length=1)
    redistribution_parameter: dict[str, Any] | None = None


class SessionOut(BaseModel):
    conversion_id: str
    session_id: str
    initializer: float
    holder: float
    closer: float
    ihc: float


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
