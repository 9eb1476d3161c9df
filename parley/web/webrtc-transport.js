// The WebRTC transport of the voice page (protocol: docs/protocol.md, "WebRTC").
// The microphone goes out as an Opus track with the browser's echo cancellation, agent audio comes back
// as a track the page plays, and control messages are the WebSocket protocol's JSON on a data channel.

const CONNECT_TIMEOUT_MS = 10000;
const GATHER_TIMEOUT_MS = 2000;

// Thrown by open() when WebRTC cannot be used here at all, so the page falls back to the WebSocket.
export class WebRtcUnavailable extends Error {}

// Events: "state" ({state}), "message" (server JSON), "track" ({stream}: the agent's audio).
export class WebRtcTransport extends EventTarget {
  constructor(url, microphone) {
    super();
    this.url = url;
    this.microphone = microphone; // MediaStream from getUserMedia
    this.pc = null;
    this.channel = null;
    this.state = "idle";
    this.closing = false;
    this.connected = false;
  }

  // Resolves once the server said session.started (or refused the session, which it reports as an
  // "error" message); rejects with WebRtcUnavailable when the page should try the WebSocket instead.
  async open(startMessage) {
    this.setState("connecting");
    const pc = new RTCPeerConnection({ iceServers: [] }); // host candidates only: nothing leaves the LAN
    this.pc = pc;
    for (const track of this.microphone.getAudioTracks()) pc.addTrack(track, this.microphone);
    pc.ontrack = ({ streams, track }) => {
      const stream = streams[0] || new MediaStream([track]);
      this.dispatchEvent(new CustomEvent("track", { detail: { stream } }));
    };
    const channel = pc.createDataChannel("parley", { ordered: true });
    this.channel = channel;
    const started = new Promise((resolve, reject) => {
      channel.onmessage = ({ data }) => this.receive(data, resolve);
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed" || pc.connectionState === "closed") {
          if (!this.connected) reject(new WebRtcUnavailable(`peer connection ${pc.connectionState}`));
          this.dropped();
        }
      };
      channel.onclose = () => this.dropped();
      setTimeout(() => reject(new WebRtcUnavailable("no session within the connect timeout")), CONNECT_TIMEOUT_MS);
    });
    started.catch(() => {}); // awaited below, unless the offer already failed
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await this.gathered(pc);
      let reply;
      try {
        reply = await fetch(this.url, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", agent: startMessage.agent,
                                token: startMessage.token }),
        });
      } catch (error) {
        throw new WebRtcUnavailable(`offer not delivered: ${error.message}`);
      }
      const body = await reply.json().catch(() => null);
      if (!reply.ok) {
        if (body && body.type === "error" && reply.status !== 400) {
          this.closing = true;
          this.dispatchEvent(new CustomEvent("message", { detail: body })); // a refusal: no fallback
          this.close();
          return;
        }
        throw new WebRtcUnavailable(`offer refused with HTTP ${reply.status}`);
      }
      await pc.setRemoteDescription({ type: body.type, sdp: body.sdp });
      await started;
    } catch (error) {
      this.closing = true;
      this.close();
      throw error instanceof WebRtcUnavailable ? error : new WebRtcUnavailable(error.message);
    }
  }

  gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, GATHER_TIMEOUT_MS); // what was gathered by then will do on a LAN
    });
  }

  receive(data, onStarted) {
    const msg = JSON.parse(data);
    if (msg.type === "session.started") {
      this.connected = true;
      this.setState("connected");
      onStarted();
    } else if (msg.type === "session.ended" || (msg.type === "error" && msg.fatal)) {
      this.closing = true;
    }
    this.dispatchEvent(new CustomEvent("message", { detail: msg }));
  }

  // No resume over WebRTC: a lost peer connection ends the conversation.
  dropped() {
    if (this.state === "closed") return;
    this.setState("closed");
    if (!this.closing && this.connected) {
      this.dispatchEvent(new CustomEvent("message", {
        detail: { type: "session.ended", reason: "connection_lost" },
      }));
    }
    this.closing = true;
    this.close();
  }

  send(message) {
    if (this.channel && this.channel.readyState === "open") this.channel.send(JSON.stringify(message));
  }

  sendAudio() {} // the microphone is a media track

  end() {
    this.closing = true;
    this.send({ type: "end" });
    setTimeout(() => this.close(), 1500);
  }

  close() {
    if (this.pc && this.pc.connectionState !== "closed") this.pc.close();
  }

  simulateDrop() {
    this.close();
    this.dropped();
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }
}
