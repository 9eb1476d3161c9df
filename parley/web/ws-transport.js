// The WebSocket transport of the voice page (protocol: docs/protocol.md).
// Reconnects on its own with the session token, so a dropped network does not end the conversation.

const HEADER_BYTES = 16;
const PROTOCOL_VERSION = 1;
const AUDIO_KIND = 1;
const RETRY_MS = [250, 500, 1000, 2000, 4000];

export function encodeAudio(seq, timestampMs, pcm) {
  const buffer = new ArrayBuffer(HEADER_BYTES + pcm.byteLength);
  const view = new DataView(buffer);
  view.setUint8(0, PROTOCOL_VERSION);
  view.setUint8(1, AUDIO_KIND);
  view.setUint16(2, 0, true);
  view.setUint32(4, seq >>> 0, true);
  view.setFloat64(8, timestampMs, true);
  new Int16Array(buffer, HEADER_BYTES).set(pcm);
  return buffer;
}

export function decodeAudio(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < HEADER_BYTES || view.getUint8(0) !== PROTOCOL_VERSION || view.getUint8(1) !== AUDIO_KIND) {
    return null;
  }
  return { seq: view.getUint32(4, true), playMs: view.getFloat64(8, true), pcm: new Int16Array(buffer, HEADER_BYTES) };
}

// Events: "state" ({state}), "message" (server JSON), "audio" ({seq, playMs, pcm}).
export class WsTransport extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.state = "idle";
    this.session = null; // {id, token, graceS}
    this.lastAudioSeq = -1;
    this.lastEventSeq = -1;
    this.seq = 0;
    this.closing = false;
    this.retries = 0;
    this.droppedAt = null;
  }

  start(startMessage) {
    this.startMessage = startMessage;
    this.closing = false;
    this.open();
  }

  open() {
    this.setState(this.session ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (this.session) {
        this.send({ type: "resume", session_id: this.session.id, token: this.session.token,
                    last_audio_seq: this.lastAudioSeq, last_event_seq: this.lastEventSeq });
      } else {
        this.send(this.startMessage);
      }
    };
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = () => this.dropped(ws);
    ws.onerror = () => {}; // onclose follows and decides
  }

  receive(data) {
    if (data instanceof ArrayBuffer) {
      const frame = decodeAudio(data);
      if (!frame) return;
      this.lastAudioSeq = Math.max(this.lastAudioSeq, frame.seq);
      this.dispatchEvent(new CustomEvent("audio", { detail: frame }));
      return;
    }
    const msg = JSON.parse(data);
    if (typeof msg.seq === "number") this.lastEventSeq = Math.max(this.lastEventSeq, msg.seq);
    if (msg.type === "session.started") {
      this.session = { id: msg.session_id, token: msg.token, graceS: msg.reconnect_grace_s };
      this.retries = 0;
      this.droppedAt = null;
      this.setState("connected");
    } else if (msg.type === "session.resumed") {
      this.seq = Math.max(this.seq, msg.last_inbound_seq); // frames at or below it count as repeats
      this.retries = 0;
      this.droppedAt = null;
      this.setState("connected");
    } else if (msg.type === "session.ended") {
      this.closing = true;
      this.session = null;
    } else if (msg.type === "error" && (msg.fatal || msg.code === "resume_failed")) {
      this.closing = true;
      this.session = null;
    }
    this.dispatchEvent(new CustomEvent("message", { detail: msg }));
  }

  dropped(ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.closing || !this.session) {
      this.setState("closed");
      return;
    }
    this.droppedAt = this.droppedAt ?? performance.now();
    const waited = (performance.now() - this.droppedAt) / 1000;
    if (waited > this.session.graceS) {
      this.session = null;
      this.setState("closed");
      return;
    }
    const delay = RETRY_MS[Math.min(this.retries++, RETRY_MS.length - 1)];
    this.setState("reconnecting");
    setTimeout(() => { if (!this.closing) this.open(); }, delay);
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  // Live audio is never queued while disconnected: hearing stale speech later helps no one.
  sendAudio(pcm, timestampMs) {
    if (this.state !== "connected" || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(encodeAudio(++this.seq, timestampMs, pcm));
  }

  end() {
    this.closing = true;
    this.send({ type: "end" });
    setTimeout(() => { if (this.ws) this.ws.close(1000, "hangup"); }, 1500);
  }

  // For tests and the "drop" debug button: lose the socket as a network failure would.
  simulateDrop() {
    if (this.ws) this.ws.close(4000, "simulated drop");
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }
}
