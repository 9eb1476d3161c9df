"""The platform's tables. Migrations in ``migrations/versions`` must reproduce exactly this schema."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from parley.store.types import BigIntPK, JSONType, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSONType,
        datetime: UTCDateTime(),
        list[Any]: JSONType,
    }


class Organization(Base):
    """A tenant: everything else belongs to exactly one."""

    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """Only a hash of the key is kept; the key itself is shown once, when it is made."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Agent(Base):
    """A named agent; its configuration lives in immutable versions, so a call keeps what it ran with."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_org_id_name", "org_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    """``api`` (made through the API or the CLI), or ``file``: the record an operator's YAML or Python
    agent's calls are filed under (revision 0010), never served in its place nor changed through the API."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class AgentVersion(Base):
    __tablename__ = "agent_versions"
    __table_args__ = (UniqueConstraint("agent_id", "version"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentDocument(Base):
    """A document an agent answers from (revision 0007): the text extracted at upload, not the file.

    Documents belong to the agent, not to one version: a new document is used by the next call."""

    __tablename__ = "agent_documents"
    __table_args__ = (Index("ix_agent_documents_agent_id_created_at", "agent_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    """Size of what was uploaded (the PDF, not its text)."""
    pages: Mapped[int | None] = mapped_column(Integer)
    words: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (Index("ix_calls_org_id_created_at", "org_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    agent_version_id: Mapped[str | None] = mapped_column(ForeignKey("agent_versions.id", ondelete="SET NULL"))
    session_id: Mapped[str] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(16))
    transport: Mapped[str] = mapped_column(String(32))
    from_number: Mapped[str | None] = mapped_column(String(64))
    to_number: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    end_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ringing_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    metrics: Mapped[dict[str, Any] | None]
    """Latency figures and counts, computed from the timeline when the call ends (revision 0002)."""
    connect_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    """sha256 of the single-use session token that may connect this call (revision 0003); cleared on use."""
    access: Mapped[str | None] = mapped_column(String(16))
    """How the live session got in: ``token`` (minted by the API) or ``public`` (anonymous, public agent)."""
    client_ip: Mapped[str | None] = mapped_column(String(64))
    provider_call_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The carrier's id of a phone call (Twilio's CallSid), revision 0004."""
    answered_by: Mapped[str | None] = mapped_column(String(32))
    """Answering-machine detection's verdict for an outbound call (``human``, ``machine_end_beep`` …)."""
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("outbound_jobs.id", ondelete="SET NULL"), index=True
    )
    """The outbound job this call is an attempt of."""
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    """What the call was started with (API, outbound job): ``{{metadata.<key>}}`` in the agent's prompts,
    ``caller_name`` also as ``{{caller.name}}`` (revision 0007)."""


class CallAnalysisRecord(Base):
    """A call's post-call analysis (revision 0006): asked for in the transaction that ended the call, so
    a crash before it ran only delays it; done by a worker (``parley.platform.analysis``)."""

    __tablename__ = "call_analyses"
    __table_args__ = (Index("ix_call_analyses_status_requested_at", "status", "requested_at"),)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    """``pending``, ``running``, ``completed``, ``failed`` (``error`` says why) or ``skipped``."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    model: Mapped[str] = mapped_column(String(128), default="")
    summary: Mapped[str | None] = mapped_column(Text)
    structured_data: Mapped[dict[str, Any] | None]
    success: Mapped[bool | None] = mapped_column(Boolean)
    success_reason: Mapped[str | None] = mapped_column(Text)
    errors: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Parts the model got wrong (``structured_data``: invalid twice …), by part."""
    error: Mapped[str | None] = mapped_column(Text)
    """Why the analysis as a whole failed or was skipped."""


class PhoneNumber(Base):
    """A number the organization owns at its carrier; inbound calls to it run ``agent_id``."""

    __tablename__ = "phone_numbers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    """E.164 (``+14155550100``): one number routes to one organization."""
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboundJob(Base):
    """A call the outbound queue owes someone: campaigns and call-backs. Each attempt is a ``calls`` row."""

    __tablename__ = "outbound_jobs"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        Index("ix_outbound_jobs_status_next_attempt_at", "status", "next_attempt_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    to_number: Mapped[str] = mapped_column(String(32), index=True)
    from_number: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    window_start: Mapped[str] = mapped_column(String(5))
    window_end: Mapped[str] = mapped_column(String(5))
    time_zone: Mapped[str] = mapped_column(String(64))
    last_call_id: Mapped[str | None] = mapped_column(String(40))
    last_outcome: Mapped[str | None] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TranscriptTurn(Base):
    """One thing said. ``seq`` is the timeline event that closed the turn, which makes inserts idempotent."""

    __tablename__ = "transcript_turns"
    __table_args__ = (UniqueConstraint("call_id", "seq"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    speaker: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    start_ms: Mapped[int] = mapped_column(Integer)
    end_ms: Mapped[int] = mapped_column(Integer)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    reply_id: Mapped[str | None] = mapped_column(String(32))


class CallEvent(Base):
    """A timeline event of a call; ``seq`` is its position in the session, unique per call."""

    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("call_id", "seq"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    t: Mapped[float] = mapped_column(Float)
    """The producer's monotonic clock (seconds): differences between events of a call are exact."""
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]]


class Recording(Base):
    __tablename__ = "recordings"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    artifact_key: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(64), default="audio/wav")
    channels: Mapped[int] = mapped_column(Integer, default=2)
    sample_rate: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="recording")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finalized_at: Mapped[datetime | None]


class UsageLine(Base):
    """What a call used of one metered thing, and what it cost (micro-USD, priced when the call ended)."""

    __tablename__ = "usage_lines"
    __table_args__ = (UniqueConstraint("call_id", "kind"), Index("ix_usage_lines_org_id_at", "org_id", "at"))
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128), default="")
    quantity: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16))
    unit_price_micros: Mapped[float] = mapped_column(Float, default=0.0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    markup_micros: Mapped[int] = mapped_column(BigInteger, default=0)


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("org_id", "period_start"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(40), unique=True)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    display_currency: Mapped[str] = mapped_column(String(8))
    exchange_rate: Mapped[float] = mapped_column(Float)
    subtotal_micros: Mapped[int] = mapped_column(BigInteger)
    markup_micros: Mapped[int] = mapped_column(BigInteger)
    total_micros: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrgSecret(Base):
    """A secret an organization's agents refer to by name (``api_key_secret``); only ciphertext is kept."""

    __tablename__ = "org_secrets"
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    """Where an organization wants its events POSTed (revision 0005); the signing secret is encrypted."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list[Any]]
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """The outbox: an event written in the transaction of the fact it reports; ``key`` makes it once."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("org_id", "key"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event owed to one endpoint: pending → sending (leased) → delivered | pending (retry) | failed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookAttempt(Base):
    """The delivery log: every request made for a delivery and what came of it."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[float] = mapped_column(Float)


class Business(Base):
    """A business that takes leads (revision 0008): what it does, where, when it is open, who to tell."""

    __tablename__ = "businesses"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64), index=True)
    """A lower-case slug (``plumbing``, ``hvac-repair``): a lead matches businesses of its category."""
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    radius_km: Mapped[float | None] = mapped_column(Float)
    postal_codes: Mapped[list[Any]] = mapped_column(default=list)
    """Postal codes served, besides (or instead of) the circle around the point; may be empty."""
    hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """``{"mon": [["09:00", "17:00"]], …}`` in ``time_zone``; a missing day is closed, ``{}`` always open."""
    time_zone: Mapped[str] = mapped_column(String(64))
    notify_email: Mapped[str] = mapped_column(String(320))
    notify_phone: Mapped[str] = mapped_column(String(32))
    """E.164: where new-lead texts go."""
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    """The agent that calls this business's leads back."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lead(Base):
    """Someone asking to be contacted about a service (revision 0008); ``status`` follows it through."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        Index("ix_leads_org_id_created_at", "org_id", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32))
    """E.164."""
    email: Mapped[str | None] = mapped_column(String(320))
    category: Mapped[str] = mapped_column(String(64))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    postal_code: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    consent_to_call: Mapped[bool] = mapped_column(Boolean)
    """Without it the lead is never called back, whatever else happens."""
    source: Mapped[str] = mapped_column(String(32))
    """``form`` (the public endpoint), ``api`` or ``cli``."""
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(24), index=True)
    """``matched``, ``unmatched``, ``callback_queued``, ``called`` or ``callback_failed``."""
    time_zone: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[dict[str, Any] | None]
    """What the call-back came to (written by the call-back worker)."""
    client_ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LeadMatch(Base):
    """A business a lead was matched to, how far it was and whether it was open when the lead came in."""

    __tablename__ = "lead_matches"
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    business_id: Mapped[str] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    distance_km: Mapped[float | None] = mapped_column(Float)
    open_at_submit: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LeadNotification(Base):
    """The notification outbox: a message owed to a business (or to the operator when ``business_id`` is
    None), written in the transaction of the lead; or (``source`` ``tool``, revision 0009) a text or
    email an agent's ``send_sms``/``send_email`` queued during call ``call_id``, its words in ``subject``
    and ``body``. pending → sending (leased) → sent → delivered (SMS) | failed."""

    __tablename__ = "lead_notifications"
    __table_args__ = (
        UniqueConstraint("lead_id", "business_id", "kind", "channel"),
        Index("ix_lead_notifications_status_next_attempt_at", "status", "next_attempt_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    lead_id: Mapped[str | None] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    """The lead it is about (``source`` ``lead``); None for a call's message."""
    call_id: Mapped[str | None] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    """The call whose agent sent it (``source`` ``tool``)."""
    source: Mapped[str] = mapped_column(String(16), default="lead", server_default="lead")
    """``lead`` (rendered from the organization's templates) or ``tool`` (sent as ``subject``/``body``)."""
    business_id: Mapped[str | None] = mapped_column(ForeignKey("businesses.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(32))
    """``new_lead``, ``unmatched_lead`` (to the operator), ``callback_outcome``; ``call_message``."""
    subject: Mapped[str | None] = mapped_column(String(200))
    """A call's email: its subject line."""
    body: Mapped[str | None] = mapped_column(Text)
    """A call's message: its text, as the agent wrote it (lead notifications are rendered when sent)."""
    channel: Mapped[str] = mapped_column(String(8))
    """``email`` or ``sms``."""
    recipient: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16))
    """Indexed with ``next_attempt_at`` (what a worker claims by)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    lease_until: Mapped[datetime | None]
    provider_id: Mapped[str | None] = mapped_column(String(64))
    """The SMTP Message-ID or the Twilio Message SID."""
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]


class NotificationTemplate(Base):
    """An organization's own version of a notification template (``new_lead.subject`` …)."""

    __tablename__ = "notification_templates"
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
