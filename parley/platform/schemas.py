"""What the platform hands out: the shapes of agents, calls, costs and invoices (also the API's schemas)."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from parley.engine.agent import AgentConfig, AgentName
from parley.inputs import E164, JsonObject, SafeStr, UtcDatetime

T = TypeVar("T")

Direction = Literal["inbound", "outbound", "web"]


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(
        None, description="pass as `cursor` to get the next page; null at the end"
    )


class AgentOut(BaseModel):
    id: str
    name: str
    description: str
    version: int = Field(description="the latest version")
    config: AgentConfig | dict[str, Any] = Field(
        description="the configuration; as stored (not normalized) when it has a `problem`"
    )
    problem: str | None = Field(
        None,
        description="why this version no longer loads under this release's checks (calls cannot use it); "
        "PATCH a fixed configuration",
    )
    source: Literal["api", "file"] = Field(
        "api",
        description="`file`: the record an operator's YAML or Python agent's calls are filed under "
        "(read-only here)",
    )
    created_at: datetime
    updated_at: datetime


class AgentVersionOut(BaseModel):
    agent_id: str
    version: int
    config: AgentConfig | dict[str, Any]
    problem: str | None = Field(None, description="why this version no longer loads (see AgentOut)")
    created_at: datetime


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: AgentName | None = Field(None, description="default: the config's name")
    description: SafeStr = Field("", max_length=2000)
    config: AgentConfig = Field(default_factory=AgentConfig)


class AgentUpdate(BaseModel):
    """Changes to the configuration make a new version; name and description change in place.
    ``config`` is the whole new configuration (the CLI reads it from a file)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: AgentName | None = None
    description: SafeStr | None = Field(None, max_length=2000)
    config: AgentConfig | None = None


class AgentPatch(BaseModel):
    """``PATCH /v1/agents/{id}``: only what is sent changes. A configuration that changes is a new
    version; name and description change in place."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: AgentName | None = None
    description: SafeStr | None = Field(None, max_length=2000)
    config: JsonObject | None = Field(
        None,
        description="changes to the latest configuration, as a JSON merge patch (RFC 7396): objects "
        'merge key by key, a value replaces (a list whole), and null resets a field to its default: {"'
        'first_message": "Hello!"} changes the greeting and keeps the rest',
    )


class CallSummary(BaseModel):
    id: str
    org_id: str | None = None
    session_id: str
    agent_id: str | None
    agent_version: int | None
    direction: str
    transport: str
    from_number: str | None
    to_number: str | None
    status: str
    end_reason: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    access: str | None = Field(
        None, description="how a live session got in: `token` (minted by the API) or `public` (anonymous)"
    )
    client_ip: str | None = Field(None, description="the live client's address, as the server saw it")
    provider_call_id: str | None = Field(None, description="the carrier's id of the phone call (CallSid)")
    answered_by: str | None = Field(
        None, description="answering-machine detection's verdict (`human`, `machine_end_beep`, `fax` …)"
    )
    job_id: str | None = Field(None, description="the outbound job this call is an attempt of")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="what the call was started with (`{{metadata.<key>}}` in prompts)"
    )


class TurnOut(BaseModel):
    speaker: Literal["user", "agent"]
    text: str
    start_ms: int
    end_ms: int
    interrupted: bool


class EventOut(BaseModel):
    seq: int
    type: str
    t_ms: float = Field(description="milliseconds since the session started")
    at: datetime
    data: dict[str, Any]


class RecordingOut(BaseModel):
    status: Literal["recording", "ready"]
    url: str | None = Field(description="download link (presigned and expiring on S3)")
    content_type: str
    channels: int
    sample_rate: int
    duration_ms: int
    size_bytes: int


class CostLine(BaseModel):
    kind: str
    provider: str
    model: str
    quantity: float
    unit: str
    price_usd: Decimal = Field(description="the price applied, in USD per `price_unit`")
    price_unit: str
    cost_usd: Decimal


class CostBreakdown(BaseModel):
    lines: list[CostLine]
    subtotal_usd: Decimal
    markup_usd: Decimal
    total_usd: Decimal
    currency: str = Field(description="the display currency")
    exchange_rate: Decimal = Field(description="units of the display currency per USD (configured)")
    total: Decimal = Field(description="the total in the display currency")
    provisional: bool = Field(False, description="the call is still running; figures will change")


class AnalysisOut(BaseModel):
    """A call's post-call analysis (``parley.platform.analysis``)."""

    status: Literal["pending", "running", "completed", "failed", "skipped"]
    summary: str | None = None
    structured_data: dict[str, Any] | None = Field(
        None, description="filled by the model, valid by the agent's structured_data_schema"
    )
    success: bool | None = Field(None, description="the success rubric's verdict")
    success_reason: str | None = None
    errors: dict[str, str] = Field(
        default_factory=dict, description="parts that failed (summary, structured_data, success), and why"
    )
    error: str | None = Field(None, description="why the analysis as a whole failed or was skipped")
    model: str = ""
    attempts: int = 0
    requested_at: datetime
    completed_at: datetime | None = None


class CallMessageOut(BaseModel):
    """A text or email the call's agent sent (``send_sms``/``send_email``), as the outbox delivers it."""

    id: str = Field(description="the notification's id (`POST /v1/lead-notifications/{id}/retry` if failed)")
    channel: Literal["sms", "email"]
    to: str = Field(description="the number or address it went to")
    subject: str | None = Field(None, description="an email's subject")
    body: str
    status: Literal["pending", "sending", "sent", "delivered", "failed"]
    attempts: int
    created_at: datetime
    sent_at: datetime | None = None
    delivered_at: datetime | None = Field(None, description="a text's delivery, as Twilio reported it")
    error: str | None = Field(None, description="why the last attempt failed (failed, or waiting to retry)")


class CallDetail(CallSummary):
    transcript: list[TurnOut]
    events: list[EventOut]
    recording: RecordingOut | None
    costs: CostBreakdown
    metrics: dict[str, Any] = Field(description="latency figures (p50/p90 ms) and counts")
    analysis: AnalysisOut | None = Field(
        None, description="post-call analysis, when the agent asks for one (analysis: in its config)"
    )
    messages: list[CallMessageOut] = Field(
        default_factory=list, description="texts and emails the agent sent during the call, oldest first"
    )


class UsageLineOut(BaseModel):
    kind: str
    provider: str
    model: str
    unit: str
    quantity: float
    calls: int
    cost_usd: Decimal
    markup_usd: Decimal


class DailyCost(BaseModel):
    day: date
    total_usd: Decimal


class UsageSummary(BaseModel):
    start: datetime
    end: datetime
    lines: list[UsageLineOut]
    daily: list[DailyCost]
    subtotal_usd: Decimal
    markup_usd: Decimal
    total_usd: Decimal
    currency: str
    exchange_rate: Decimal
    total: Decimal


class InvoiceOut(BaseModel):
    id: str
    number: str
    organization: str
    period_start: date
    period_end: date
    status: Literal["draft", "issued"]
    lines: list[UsageLineOut]
    subtotal_usd: Decimal
    markup_usd: Decimal
    total_usd: Decimal
    currency: str
    exchange_rate: Decimal
    total: Decimal
    created_at: datetime


class WebSession(BaseModel):
    """A call waiting for its browser: hand ``token`` to the client, which starts the session with it
    (WebSocket ``start {token}``, WebRTC offer ``{token}``, or the voice page's ``?token=``)."""

    call_id: str
    session_id: str
    agent_id: str
    agent_version: int
    status: str
    token: str = Field(description="single-use session token; give it to one client only")
    expires_at: datetime = Field(description="the token is refused after this time")


MAX_CALL_METADATA_BYTES = 16_384
CALLER_NAME_KEY = "caller_name"
"""The key of a call's stored metadata that carries the caller's name (``{{caller.name}}``)."""


class SessionStart(BaseModel):
    """The optional body of ``POST /v1/agents/{id}/sessions``: what this call's prompts may mention."""

    model_config = ConfigDict(extra="forbid")

    caller_name: SafeStr | None = Field(None, max_length=200, description="`{{caller.name}}` in prompts")
    metadata: JsonObject = Field(
        default_factory=dict,
        description="`{{metadata.<key>}}` in the agent's prompts; kept with the call (at most 16 KB as JSON)",
    )

    @model_validator(mode="after")
    def _bounded(self) -> SessionStart:
        if len(json.dumps(self.metadata)) > MAX_CALL_METADATA_BYTES:
            raise PydanticCustomError("metadata_size", "metadata is over 16 KB as JSON")
        return self

    def call_metadata(self) -> dict[str, Any]:
        """Stored with the call; the caller's name rides along as ``caller_name``."""
        if self.caller_name:
            return {**self.metadata, CALLER_NAME_KEY: self.caller_name}
        return dict(self.metadata)


class PhoneNumberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: E164 = Field(description="E.164 (`+14155550100`); other spellings are normalized")
    agent: SafeStr = Field(min_length=1, max_length=200, description="the agent (id or name) that answers it")
    label: SafeStr = Field("", max_length=200)


class PhoneNumberOut(BaseModel):
    """A number the operator assigned to the organization; inbound calls to it run ``agent_id``'s latest
    version. ``agent_id`` is null while no agent answers it (assigned without one, or that agent was
    deleted): calls to the number are then refused."""

    id: str
    number: str
    agent_id: str | None
    label: str
    created_at: datetime


class PhoneNumberUpdate(BaseModel):
    """Which agent answers one of the organization's numbers (null: none, its calls are refused), and
    its label. Fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    agent: SafeStr | None = Field(
        None, min_length=1, max_length=200, description="the agent (id or name) that answers it; null: none"
    )
    label: SafeStr | None = Field(None, max_length=200)


class OutboundCallCreate(BaseModel):
    """A call for the outbound queue to place (now, or within the callee's calling hours), retried when
    busy or unanswered."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    agent: SafeStr = Field(min_length=1, max_length=200, description="the agent (id or name) that talks")
    to: E164 = Field(description="the callee, E.164")
    from_: E164 | None = Field(
        None,
        alias="from",
        description="caller id: a number of the account; default PARLEY_TWILIO_CALLER_ID, else the "
        "organization's first phone number",
    )
    priority: int = Field(0, ge=-1000, le=1000, description="higher is dialed first")
    idempotency_key: SafeStr | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="the same request again returns its job (200); another request under the key is a 409",
    )
    not_before: UtcDatetime | None = Field(None, description="not dialed before this time")
    window: str | None = Field(
        None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$",
        description="calling hours in the callee's local time (default PARLEY_OUTBOUND_CALLING_WINDOW)",
    )
    time_zone: SafeStr | None = Field(
        None, max_length=64, description="IANA zone the window is read in; default: the callee number's"
    )
    max_attempts: int | None = Field(None, ge=1, le=20)
    metadata: JsonObject = Field(default_factory=dict, description="kept with the job (your own ids)")
