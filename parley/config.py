"""One typed settings object for the whole process, read from ``PARLEY_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------------------------------
    data_dir: Path = Field(Path(".parley"), description="SQLite file, recordings and other local data")
    model_cache: Path = Field(
        Path.home() / ".cache" / "parley" / "models",
        description="models assembled or extracted from PyPI packages",
    )

    # --- server and realtime sessions (live-voice issue) --------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    max_request_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="larger HTTP request bodies are refused with 413, unread"
    )
    realtime_enabled: bool = True
    max_concurrent_sessions: int = Field(50, ge=1)
    session_idle_timeout_s: float = Field(120.0, gt=0)
    max_session_duration_s: float = Field(3600.0, gt=0)
    audio_sample_rate: int = Field(16000, description="PCM rate of the WebSocket audio protocol")
    audio_frame_ms: int = Field(20, description="outbound audio frame length")
    shutdown_grace_s: float = Field(10.0, ge=0)
    reconnect_grace_s: float = Field(
        30.0, ge=0, description="how long a dropped session waits for its client"
    )
    audio_output_lead_ms: int = Field(
        80,
        ge=0,
        le=500,
        description="agent audio is sent this far ahead of "
        "its play time; clients buffer as much to absorb network jitter",
    )
    ws_max_frame_ms: int = Field(250, gt=0, description="longest inbound audio frame accepted")
    ws_max_message_bytes: int = Field(65536, gt=0, description="largest JSON control message accepted")
    ws_max_messages_per_s: float = Field(200.0, gt=0, description="per-session message rate limit")
    ws_audio_burst_s: float = Field(2.0, gt=0, description="audio a client may send ahead of real time")
    outbound_max_messages: int = Field(
        256, ge=8, description="control messages queued per connection for a client that lags behind"
    )
    outbound_stall_s: float = Field(
        5.0,
        gt=0,
        description="a connection whose client reads nothing for this long (its queue full or a write "
        "blocked) is closed; the session then waits for a reconnect",
    )
    agents_dir: Path | None = Field(None, description="extra agent YAML files offered for live sessions")
    max_rooms: int = Field(20, ge=1, description="coached rooms live at once in this process")
    max_rooms_per_org: int = Field(10, ge=1, description="coached rooms live at once per organization")
    room_idle_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="a coached room with nobody connected this long ends itself"
    )

    # --- who may open a live session (security issue; docs/security.md) ----------------------------
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser Origins allowed to open live sessions besides the server's own "
        "(e.g. https://app.example.com); clients that send no Origin (servers, SDKs) are not browsers",
    )
    max_connections_per_ip: int = Field(20, ge=1, description="open live connections per client address")
    max_sessions_per_ip: int = Field(5, ge=1, description="concurrent live sessions per client address")
    session_token_ttl_s: float = Field(
        120.0, gt=0, le=3600, description="how long a session token from the REST API stays usable"
    )
    session_start_timeout_s: float = Field(
        5.0,
        gt=0,
        description="a session that gets no audio or text (or whose WebRTC offer never connects) within "
        "this long is ended, freeing its slot",
    )

    # --- engines: the operator's choices, never an agent's (docs/security.md) -----------------------
    model_threads: int = Field(2, ge=1, le=64, description="CPU threads per embedded model")
    llamacpp_model_path: Path | None = Field(
        None, description="GGUF file in place of the packaged model an agent names (llm.options.model)"
    )
    llamacpp_chat: bool = Field(
        True,
        description="prompt PARLEY_LLAMACPP_MODEL_PATH through its chat template (an instruct model); "
        "false for a base model (few-shot transcript)",
    )
    llamacpp_n_ctx: int = Field(2048, ge=256, le=131072, description="context size of the embedded LLM")
    llamacpp_n_batch: int = Field(256, ge=1, le=4096)
    whisper_model_dir: Path | None = Field(
        None, description="CTranslate2 whisper dir for agents that name no model; default: packaged base"
    )
    whisper_compute_type: str = Field("int8", pattern=r"^[a-z0-9_]{1,20}$")
    piper_voice: Path | None = Field(None, description="Piper voice .onnx (its .json beside it)")
    piper_voices: dict[str, Path] = Field(
        default_factory=dict,
        description='Piper voices of other languages, JSON {"es": "/voices/es_ES-davefx-medium.onnx"}: '
        "used for agents speaking them (else espeak-ng's voice)",
    )
    espeak_program: str = Field("espeak-ng", description="the espeak-ng program (name on PATH or path)")
    openai_base_url: str = Field("https://api.openai.com/v1", description="OpenAI-compatible endpoint")
    openai_api_key: SecretStr | None = Field(None, description="default key for the openai provider")
    openai_models: list[str] = Field(
        default_factory=lambda: ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "gpt-4.1-nano"],
        description="model names agents may choose for the openai provider",
    )
    openai_timeout_s: float = Field(30.0, gt=0, le=600)
    openai_connect_timeout_s: float = Field(5.0, gt=0, le=60, description="connecting to the openai LLM")
    openai_first_token_ms: int = Field(
        3000,
        ge=100,
        le=120_000,
        description="the openai LLM counts as unavailable when no first token came by then (retries "
        "included), so an agent's llm fallbacks answer; an agent may ask for less (first_token_timeout_ms)",
    )
    openai_stall_ms: int = Field(
        5000,
        ge=100,
        le=120_000,
        description="the openai LLM counts as failed when a reply it started goes this long without a "
        "chunk (the caller would sit in dead air for the whole openai_timeout_s otherwise)",
    )
    openai_max_attempts: int = Field(
        2, ge=1, le=5, description="tries of one openai LLM request, only ever before its first byte"
    )
    provider_breaker_failures: int = Field(
        3, ge=1, le=100, description="consecutive failures that open a provider's circuit breaker"
    )
    provider_breaker_cooldown_s: float = Field(
        30.0, gt=0, le=3600, description="how long an open breaker skips its provider before one probe"
    )
    tts_phrase_cache_mb: int = Field(
        64, ge=1, le=4096, description="memory for remembered phrases, all voices together (LRU)"
    )
    openai_realtime_url: str = Field(
        "wss://api.openai.com/v1",
        pattern=r"^wss?://[^\s/?#]+(/[^\s?#]*)?$",
        description="OpenAI Realtime WebSocket base (the session connects to <this>/realtime?model=…)",
    )
    openai_realtime_timeout_s: float = Field(
        10.0, gt=0, le=120, description="opening an OpenAI Realtime session (connect and session.update)"
    )
    openai_tts_models: list[str] = Field(
        default_factory=lambda: ["gpt-4o-mini-tts", "tts-1", "tts-1-hd"],
        description="speech models agents may choose for the openai voice (tts.options.model)",
    )
    openai_transcription_models: list[str] = Field(
        default_factory=lambda: ["gpt-4o-mini-transcribe", "gpt-4o-transcribe", "whisper-1"],
        description="transcription models agents may choose for the openai recogniser (asr.options.model)",
    )
    elevenlabs_base_url: str = Field(
        "https://api.elevenlabs.io",
        pattern=r"^(https?|wss?)://[^\s/?#]+(/[^\s?#]*)?$",
        description="ElevenLabs API origin; its WebSockets are reached on the same host (https → wss)",
    )
    elevenlabs_api_key: SecretStr | None = Field(None, description="default key for the elevenlabs voice")
    elevenlabs_timeout_s: float = Field(
        10.0, gt=0, le=120, description="connecting, and waiting for each message of a synthesis"
    )
    elevenlabs_convai_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="opening an ElevenLabs Conversational AI call (signed URL, socket, initiation metadata)",
    )
    elevenlabs_convai_end_of_reply_ms: int = Field(
        1000,
        ge=100,
        le=10000,
        description="ElevenLabs sends no end-of-reply event: without alignment to show the audio covers the "
        "text, a reply counts as finished after this long without more of it",
    )
    deepgram_base_url: str = Field(
        "https://api.deepgram.com",
        pattern=r"^(https?|wss?)://[^\s/?#]+(/[^\s?#]*)?$",
        description="Deepgram API origin; its live sockets (/v1/listen, /v1/speak) are on the same host "
        "(https → wss)",
    )
    deepgram_api_key: SecretStr | None = Field(
        None, description="default key for the deepgram recogniser and voice"
    )
    deepgram_connect_timeout_s: float = Field(
        5.0, gt=0, le=60, description="opening a Deepgram socket or request"
    )
    deepgram_timeout_s: float = Field(
        10.0, gt=0, le=120, description="waiting for the next message of a Deepgram synthesis"
    )
    deepgram_finalize_timeout_s: float = Field(
        1.5,
        gt=0,
        le=30,
        description="waiting for Deepgram's answer to Finalize (not guaranteed when little audio is "
        "buffered) before the latest interim words stand as final",
    )
    secrets_key: SecretStr | None = Field(
        None,
        description="Fernet key that encrypts organization secrets at rest; default: a key generated once "
        "into data_dir/secrets.key (readable by the server's user only)",
    )
    link_secret: SecretStr | None = Field(
        None,
        description="HMAC key of signed links (a lead's call-back link, a business's leads page); default: "
        "derived from the secrets key, so every process sharing that key accepts the others' links",
    )

    # --- telephony (docs/telephony.md) ---------------------------------------------------------------
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the base URL Twilio reaches this server at (e.g. https://voice.example.com): TwiML "
        "stream and callback URLs are built from it and X-Twilio-Signature is checked against it (behind a "
        "TLS proxy the request's own URL differs); default: the URL of each incoming request",
    )
    twilio_account_sid: str | None = Field(None, pattern=r"^AC[0-9a-fA-F]{32}$")
    twilio_auth_token: SecretStr | None = Field(
        None, description="signs and checks webhooks; without it every Twilio webhook answers 503"
    )
    twilio_api_base_url: str = Field(
        "https://api.twilio.com", description="Twilio's REST API (tests and `parley twilio-sim` change it)"
    )
    twilio_caller_id: str | None = Field(None, description="default From number of outbound calls")
    twilio_jitter_ms: int = Field(
        40, ge=20, le=500, description="how long a phone leg waits for a missing (reordered) frame"
    )
    outbound_max_attempts: int = Field(3, ge=1, le=20, description="attempts per queued call")
    outbound_retry_backoff_s: list[float] = Field(
        default_factory=lambda: [60.0, 300.0, 900.0],
        description="wait before retry n (the last figure repeats)",
    )
    outbound_org_concurrency: int = Field(5, ge=1, description="an organization's calls dialing at once")
    outbound_number_concurrency: int = Field(1, ge=1, description="calls one callee number may have at once")
    outbound_calling_window: str = Field(
        "09:00-20:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$",
        description="hours (callee's local time) in which queued calls are placed",
    )
    outbound_poll_s: float = Field(1.0, gt=0, le=60, description="how often the queue looks for due calls")
    outbound_ring_timeout_s: int = Field(30, ge=5, le=600, description="ring this long before no-answer")

    # --- webhooks: tools that call HTTP services, and outbound event deliveries (docs/webhooks.md) ----
    webhook_allow_http: bool = Field(
        False, description="let tenants' webhook URLs use plain http:// (default: https only)"
    )
    webhook_allow_private_hosts: list[str] = Field(
        default_factory=list,
        description="host names or IP addresses that tenants' webhooks may reach although they resolve to "
        "private, loopback or link-local addresses (e.g. an internal service); others are refused",
    )
    webhook_allow_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=list,
        description="ports tenants' webhook URLs may name besides 443 and 80 (e.g. [8443]); any other is "
        "refused, so a tenant cannot probe SSH, database or admin ports from this server's address",
    )
    webhook_max_response_bytes: int = Field(
        65536, ge=1024, le=8 * 1024 * 1024, description="largest webhook response read; longer is an error"
    )
    webhook_delivery_timeout_s: float = Field(10.0, gt=0, le=120, description="per outbound delivery")
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="attempts per outbound delivery")
    webhook_retry_backoff_s: float = Field(
        10.0, gt=0, le=3600, description="wait before the first retry; doubled each retry"
    )
    webhook_retry_max_backoff_s: float = Field(3600.0, gt=0, le=86400, description="cap on that wait")
    webhook_poll_s: float = Field(1.0, gt=0, le=60, description="how often the dispatcher looks for work")
    webhook_lease_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="a delivery claimed by a worker that died is retried after this long (must exceed "
        "the delivery timeout)",
    )

    # --- leads: businesses, leads and matching (docs/leads.md) -------------------------------------
    default_region: str = Field(
        "US",
        pattern=r"^[A-Z]{2}$",
        description="region (ISO 3166 alpha-2) of phone numbers written without a +country code",
    )
    operator_email: str | None = Field(
        None, max_length=320, description="told of leads no business matched; unset: only a warning is logged"
    )
    public_leads_per_minute: float = Field(
        5.0, gt=0, le=6000, description="leads one client address may send through the public form"
    )
    public_leads_burst: int = Field(5, ge=1, le=1000, description="how many of those may come at once")

    # --- lead notifications: email over SMTP, SMS through Twilio (docs/leads.md) --------------------
    smtp_host: str | None = Field(
        None, max_length=253, description="SMTP server of lead emails; unset: email notifications wait"
    )
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool = Field(True, description="upgrade the SMTP connection with STARTTLS")
    smtp_username: str | None = Field(None, max_length=320, description="SMTP login; unset: none")
    smtp_password: SecretStr | None = Field(None, description="SMTP password (never logged)")
    smtp_from: str = Field(
        "Parley <parley@localhost>", max_length=320, description="From of lead emails (an address)"
    )
    smtp_timeout_s: float = Field(15.0, gt=0, le=300, description="per email: connect, talk, send")
    sms_from: str | None = Field(
        None,
        pattern=r"^\+[1-9]\d{6,14}$",
        description="From of lead texts (E.164); default: the organization's first phone number",
    )
    notification_concurrency: int = Field(4, ge=1, le=64, description="notifications sent at once")
    notification_poll_s: float = Field(1.0, gt=0, le=60, description="how often the worker looks for work")
    notification_max_attempts: int = Field(8, ge=1, le=50, description="attempts per notification")
    notification_retry_backoff_s: float = Field(
        5.0, gt=0, le=3600, description="wait before the first retry; doubled each retry"
    )
    notification_retry_max_backoff_s: float = Field(900.0, gt=0, le=86400, description="cap on that wait")
    notification_lease_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="a notification claimed by a worker that died is retried after this long (must exceed "
        "the SMTP and Twilio timeouts)",
    )

    # --- store, timeline, artifacts (platform-memory issue) -----------------------------------------
    database_url: str | None = Field(None, description="SQLAlchemy async URL; default SQLite in data_dir")
    redis_url: str | None = Field(None, description="Redis for the timeline and queues; default in-process")
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_prefix: str = Field("", description="key prefix for every artifact in the bucket")
    s3_access_key_id: str | None = Field(None, description="default: boto3's own credential chain")
    s3_secret_access_key: SecretStr | None = None
    artifact_url_expiry_s: int = Field(3600, gt=0, description="lifetime of presigned download URLs")
    recording_retention_days: int | None = Field(None, gt=0, description="delete recordings older than this")
    recording_sample_rate: int = Field(
        16000, description="rate of stereo call recordings (user left, agent right)"
    )
    timeline_stream: str = Field(
        "parley:timeline", description="Redis stream (and key prefix) of the timeline"
    )
    timeline_maxlen: int = Field(1_000_000, gt=0, description="approximate cap on the Redis timeline stream")
    api_key: SecretStr | None = Field(None, description="an API key accepted for the default organization")
    default_org: str = Field("default", description="organization used by the CLI and `parley simulate`")
    pricing_file: Path | None = Field(None, description="YAML pricing table; default: the built-in one")
    cost_markup_percent: float = Field(0.0, ge=0, description="added on top of provider costs")
    display_currency: str = Field("INR", description="currency of cost figures shown next to USD")
    currency_rates: dict[str, float] = Field(
        default_factory=lambda: {"USD": 1.0, "INR": 83.0},
        description="units of each currency per 1 USD (configured, never fetched)",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
