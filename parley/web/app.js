// The Parley voice page: pick an agent, talk, listen, interrupt. No build step: plain ES modules.
import { WebRtcTransport, WebRtcUnavailable } from "./webrtc-transport.js";
import { WsTransport } from "./ws-transport.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const STATE_LABEL = { idle: "Ready", listening: "Listening", processing: "Thinking", speaking: "Speaking",
                      ended: "Call ended" };

// Everything a test (or a curious developer) may want to read from the console.
const parley = (window.parley = {
  connection: "idle", transport: null, state: "idle", sessionId: null, micActive: false, transcript: [], errors: [],
  stats: { framesReceived: 0, playedSamples: 0, underruns: 0, framesSent: 0, lastV2vMs: null },
});

let config = null;
let transport = null;
let audio = null; // {ctx, stream, capture, playback, remote}
let remotePlayed = 0; // samples of agent audio heard over WebRTC

// ?agent=… names an agent (a name, or a stored agent's id); the server says whether it can be picked,
// and if not, why (unknown, or not public): that is shown, and nothing else is picked in its place.
async function loadConfig() {
  const wanted = params.get("token") ? null : params.get("agent");
  config = await (await fetch("/v1/realtime/config" + (wanted ? `?agent=${encodeURIComponent(wanted)}` : ""))).json();
  const select = $("agent");
  select.innerHTML = "";
  for (const agent of config.agents) {
    select.add(new Option(`${agent.name} — ${agent.description}`, agent.ref || agent.name));
  }
  select.value = config.selected || config.default_agent;
  if (params.get("token")) {
    select.disabled = true; // the session token decides the agent
  } else if (config.agent_error) {
    select.value = "";
    $("connect").disabled = true; // until an agent is picked from the list
    showError(`Agent “${wanted}”: ${config.agent_error.message}`);
  }
  parley.agent = select.value || null;
  if (!config.enabled) showError("Live sessions are disabled on this server.");
}

function pickAgent() {
  parley.agent = $("agent").value || null;
  if (parley.agent && config?.enabled) {
    clearError();
    $("connect").disabled = false;
  }
}

// --- audio ---------------------------------------------------------------------------------------------

async function startAudio() {
  let ctx;
  try {
    ctx = new AudioContext({ sampleRate: config.audio.sample_rate, latencyHint: "interactive" });
  } catch {
    ctx = new AudioContext({ latencyHint: "interactive" });
  }
  if (!config.audio.supported_sample_rates.includes(ctx.sampleRate)) {
    throw new Error(`this browser's audio runs at ${ctx.sampleRate} Hz, which the server does not accept`);
  }
  await ctx.audioWorklet.addModule("worklets.js");
  const processing = params.get("processing") !== "0";
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
  });
  const source = ctx.createMediaStreamSource(stream);
  const frameSamples = Math.round((ctx.sampleRate * config.audio.frame_ms) / 1000);
  const capture = new AudioWorkletNode(ctx, "parley-capture", { processorOptions: { frameSamples } });
  capture.port.onmessage = ({ data }) => {
    if (data.type === "frame") {
      if (transport) {
        transport.sendAudio(data.pcm, data.t * 1000);
        parley.stats.framesSent++;
      }
    } else if (data.type === "level") {
      setMeter("mic-level", data.level);
    }
  };
  source.connect(capture);
  const playback = new AudioWorkletNode(ctx, "parley-playback", { outputChannelCount: [1] });
  playback.port.onmessage = ({ data }) => {
    parley.stats.playedSamples = data.played + remotePlayed;
    parley.stats.underruns = data.underruns;
    setMeter("agent-level", data.level);
  };
  playback.connect(ctx.destination);
  if (ctx.state === "suspended") await ctx.resume();
  audio = { ctx, stream, capture, playback, remote: null };
  parley.micActive = stream.getAudioTracks().some((track) => track.readyState === "live");
}

// WebRTC: the agent's track plays through a media element (so the browser's echo canceller hears it);
// a capture worklet on it only feeds the meter and the page's stats.
function playRemote(stream) {
  if (!audio) return;
  const element = new Audio();
  element.autoplay = true;
  element.srcObject = stream;
  element.play().catch((error) => console.warn("parley: agent audio blocked:", error.message));
  const frameSamples = Math.round((audio.ctx.sampleRate * config.audio.frame_ms) / 1000);
  const meter = new AudioWorkletNode(audio.ctx, "parley-capture", { processorOptions: { frameSamples } });
  meter.port.onmessage = ({ data }) => {
    if (data.type === "level") {
      setMeter("agent-level", data.level);
    } else if (data.type === "frame" && data.pcm.some((s) => s > 300 || s < -300)) {
      parley.stats.framesReceived++;
      remotePlayed += data.pcm.length;
    }
  };
  audio.ctx.createMediaStreamSource(stream).connect(meter);
  audio.remote = { element, meter };
}

function stopAudio() {
  if (!audio) return;
  if (audio.remote) {
    audio.remote.element.srcObject = null;
    audio.remote.meter.disconnect();
  }
  for (const track of audio.stream.getTracks()) track.stop(); // releases the microphone
  audio.ctx.close();
  parley.micActive = audio.stream.getAudioTracks().some((track) => track.readyState === "live");
  audio = null;
  setMeter("mic-level", 0);
  setMeter("agent-level", 0);
}

// --- the session ---------------------------------------------------------------------------------------

async function connect() {
  clearError();
  $("connect").disabled = true;
  parley.sessionId = null;
  try {
    await startAudio();
  } catch (error) {
    showError(`Microphone unavailable: ${error.message}`);
    $("connect").disabled = false;
    return;
  }
  // ?token=… : a single-use session token from POST /v1/agents/{id}/sessions (agents that are not public).
  const token = params.get("token");
  const start = { type: "start", agent: token ? null : $("agent").value, token,
                  audio: { encoding: "pcm16", sample_rate: audio.ctx.sampleRate, channels: 1 },
                  output: { sample_rate: audio.ctx.sampleRate } };
  transport = await pickTransport(start);
}

function listen(candidate) {
  candidate.addEventListener("state", ({ detail }) => { if (transport === candidate) setConnection(detail.state); });
  candidate.addEventListener("message", ({ detail }) => { if (transport === candidate) onMessage(detail); });
  candidate.addEventListener("audio", ({ detail }) => {
    parley.stats.framesReceived++;
    audio?.playback.port.postMessage({ type: "push", pcm: detail.pcm }, [detail.pcm.buffer]);
  });
  candidate.addEventListener("track", ({ detail }) => playRemote(detail.stream));
  return candidate;
}

// WebRTC when the server offers it and the browser has it (?transport=ws forces the WebSocket); the
// WebSocket when WebRTC cannot connect (no route to the server's candidates, a proxy that drops UDP).
async function pickTransport(start) {
  const wanted = params.get("transport");
  if (config.transports.webrtc && window.RTCPeerConnection && wanted !== "ws") {
    const candidate = (transport = listen(new WebRtcTransport(config.transports.webrtc, audio.stream)));
    parley.transport = "webrtc";
    try {
      await candidate.open(start);
      return candidate;
    } catch (error) {
      if (!(error instanceof WebRtcUnavailable)) throw error;
      console.warn("parley: WebRTC unavailable, using the WebSocket:", error.message);
    }
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = (transport = listen(new WsTransport(`${scheme}://${location.host}${config.transports.ws}`)));
  parley.transport = "ws";
  ws.start(start);
  return ws;
}

function hangUp() {
  transport?.end();
  finish();
}

function finish() {
  stopAudio();
  setState("ended");
  $("connect").disabled = false;
  $("connect").hidden = false;
  $("hangup").hidden = true;
}

function onMessage(msg) {
  switch (msg.type) {
    case "session.started":
      parley.sessionId = msg.session_id;
      $("connect").hidden = true;
      $("hangup").hidden = false;
      break;
    case "session.resumed":
      audio?.playback.port.postMessage({ type: "clear" });
      break;
    case "session.ended":
      addLine("system", `Call ended (${msg.reason.replaceAll("_", " ")}).`, true);
      finish();
      break;
    case "state":
      setState(msg.state);
      break;
    case "transcript":
      showUserText(msg.text, msg.final);
      break;
    case "agent.text":
      showAgentText(msg.reply_id, msg.text);
      break;
    case "agent.audio":
      if (msg.status === "stopped") audio?.playback.port.postMessage({ type: "end" });
      break;
    case "audio.clear":
      audio?.playback.port.postMessage({ type: "clear" });
      break;
    case "agent.cancelled":
      markCut(msg.reply_id, msg.heard_text);
      break;
    case "tool.call":
      addLine("tool", `⚙ ${msg.tool}(${JSON.stringify(msg.arguments)})`, true);
      break;
    case "metrics":
      if (msg.voice_to_voice_ms != null) {
        parley.stats.lastV2vMs = msg.voice_to_voice_ms;
        $("latency").textContent = `voice-to-voice ${Math.round(msg.voice_to_voice_ms)} ms`;
      }
      break;
    case "server.shutdown":
      showError(msg.message);
      break;
    case "error":
      parley.errors.push(msg);
      if (!parley.sessionId) { // the start was refused (unknown agent, not public, server full…): say why
        const refused = transport;
        transport = null;
        refused?.end();
        showError(msg.message);
        finish();
      } else if (msg.fatal || msg.code === "resume_failed") {
        showError(msg.message);
        finish();
      } else if (msg.code !== "rate_limited") {
        console.warn("parley:", msg.code, msg.message);
      }
      break;
  }
}

// --- view ----------------------------------------------------------------------------------------------

let interim = null;
const agentLines = new Map();

function addLine(role, text, final, record = true) {
  const line = document.createElement("p");
  line.className = `line ${role}${final ? "" : " interim"}`;
  line.textContent = text;
  $("transcript").append(line);
  $("transcript").scrollTop = $("transcript").scrollHeight;
  if (record) parley.transcript.push({ role, text, final });
  return line;
}

function showUserText(text, final) {
  if (!interim) interim = addLine("user", text, false, false);
  interim.textContent = text;
  if (final) {
    interim.classList.remove("interim");
    parley.transcript.push({ role: "user", text, final: true });
    interim = null;
  }
}

function showAgentText(replyId, text) {
  let line = agentLines.get(replyId);
  if (!line) {
    line = addLine("agent", "", true, false);
    agentLines.set(replyId, line);
  }
  line.textContent = `${line.textContent} ${text}`.trim();
  parley.transcript.push({ role: "agent", text, final: true, reply: replyId });
}

function markCut(replyId, heard) {
  const line = agentLines.get(replyId);
  if (!line) return;
  line.classList.add("cut");
  line.title = heard ? `heard: “${heard}”` : "not heard";
}

function setState(state) {
  parley.state = state;
  document.body.dataset.state = state;
  $("state").textContent = STATE_LABEL[state] || state;
}

function setConnection(state) {
  parley.connection = state;
  $("connection").textContent = state;
  $("connection").dataset.state = state;
  $("interrupt").disabled = $("send").disabled = state !== "connected";
}

function setMeter(id, level) {
  const db = 20 * Math.log10(level + 1e-6);
  $(id).style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`;
  if (id === "agent-level" || id === "mic-level") {
    document.documentElement.style.setProperty(`--${id}`, Math.max(0, Math.min(1, (db + 60) / 60)).toFixed(2));
  }
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

$("connect").addEventListener("click", connect);
$("hangup").addEventListener("click", hangUp);
$("interrupt").addEventListener("click", () => transport?.send({ type: "interrupt" }));
$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || !transport) return;
  transport.send({ type: "text", text });
  $("text").value = "";
});
window.addEventListener("pagehide", () => transport?.end());
parley.dropConnection = () => transport?.simulateDrop();

setState("idle");
setConnection("idle");
$("agent").addEventListener("change", pickAgent);
loadConfig().then(() => { if (params.get("autoconnect") === "1" && !$("connect").disabled) connect(); })
  .catch((error) => showError(`Cannot reach the server: ${error.message}`));
