// The rep page of a coached call: talk from the browser, hear the room, read both sides' live transcript,
// see hint cards as they fire and who is listening or whispering. Opened with ?room=…&token=… (the link
// POST /v1/rooms/{id}/participants returns); the token works once. No build step: plain ES modules.
import { decodeAudio, encodeAudio } from "./ws-transport.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const roomId = params.get("room");
const token = params.get("token");
const FRAME_MS = 20;
const PREFERRED_RATE = 16000;
const SUPPORTED_RATES = [8000, 16000, 22050, 24000, 32000, 44100, 48000];
const ROLE_LABEL = { customer: "Customer", rep: "Rep", coach: "Coach", agent: "Agent" };
const MODE_LABEL = { speak: "speaking", listen: "listening", whisper: "whispering to the rep", barge: "barged in" };
const TRIGGER_LABEL = (name) => name.replaceAll("_", " ");

// Everything a test (or a curious developer) may want to read from the console.
const rep = (window.rep = {
  connection: "idle", room: null, participant: null, participants: [], transcript: [], hints: [], metrics: null,
  errors: [], ended: null, micActive: false, stats: { framesSent: 0, framesReceived: 0, playedSamples: 0 },
});

let ws = null;
let audio = null; // {ctx, stream, capture, playback}
let seq = 0;

// --- audio ---------------------------------------------------------------------------------------------

async function startAudio() {
  let ctx;
  try {
    ctx = new AudioContext({ sampleRate: PREFERRED_RATE, latencyHint: "interactive" });
  } catch {
    ctx = new AudioContext({ latencyHint: "interactive" });
  }
  if (!SUPPORTED_RATES.includes(ctx.sampleRate)) {
    ctx.close();
    throw new Error(`this browser's audio runs at ${ctx.sampleRate} Hz, which the server does not accept`);
  }
  await ctx.audioWorklet.addModule("worklets.js");
  const processing = params.get("processing") !== "0";
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
  });
  const frameSamples = Math.round((ctx.sampleRate * FRAME_MS) / 1000);
  const capture = new AudioWorkletNode(ctx, "parley-capture", { processorOptions: { frameSamples } });
  capture.port.onmessage = ({ data }) => {
    if (data.type === "frame") {
      if (ws && ws.readyState === WebSocket.OPEN && rep.connection === "connected") {
        ws.send(encodeAudio(++seq, data.t * 1000, data.pcm));
        rep.stats.framesSent++;
      }
    } else if (data.type === "level") {
      setMeter("mic-level", data.level);
    }
  };
  ctx.createMediaStreamSource(stream).connect(capture);
  const playback = new AudioWorkletNode(ctx, "parley-playback", { outputChannelCount: [1] });
  playback.port.onmessage = ({ data }) => {
    rep.stats.playedSamples = data.played;
    setMeter("room-level", data.level);
  };
  playback.connect(ctx.destination);
  if (ctx.state === "suspended") await ctx.resume();
  audio = { ctx, stream, capture, playback };
  rep.micActive = stream.getAudioTracks().some((track) => track.readyState === "live");
}

function stopAudio() {
  if (!audio) return;
  for (const track of audio.stream.getTracks()) track.stop(); // releases the microphone
  audio.ctx.close();
  audio = null;
  rep.micActive = false;
  setMeter("mic-level", 0);
  setMeter("room-level", 0);
}

// --- the room's socket ---------------------------------------------------------------------------------

async function join() {
  clearError();
  if (!roomId || !token) {
    showError("This page needs the link you were given (…/rep.html?room=…&token=…).");
    return;
  }
  $("join").disabled = true;
  try {
    await startAudio();
  } catch (error) {
    showError(`Microphone unavailable: ${error.message}`);
    $("join").disabled = false;
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/v1/rooms/${encodeURIComponent(roomId)}/ws?token=${encodeURIComponent(token)}`;
  setConnection("connecting");
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => ws.send(JSON.stringify({ type: "start", sample_rate: audio.ctx.sampleRate }));
  ws.onmessage = (event) => receive(event.data);
  ws.onclose = (event) => {
    ws = null;
    setConnection("closed");
    if (!rep.ended && !rep.errors.some((e) => e.fatal)) {
      showError(`The connection to the call was lost (${event.code}). Ask for a new link to rejoin.`);
    }
    finish();
  };
}

function receive(data) {
  if (data instanceof ArrayBuffer) {
    const frame = decodeAudio(data);
    if (!frame || !audio) return;
    rep.stats.framesReceived++;
    audio.playback.port.postMessage({ type: "push", pcm: frame.pcm }, [frame.pcm.buffer]);
    return;
  }
  onMessage(JSON.parse(data));
}

function onMessage(msg) {
  switch (msg.type) {
    case "ready":
      rep.room = msg.room;
      rep.participant = msg.participant;
      setConnection("connected");
      showWho();
      $("join").hidden = true;
      $("leave").hidden = false;
      break;
    case "participants":
      rep.participants = msg.participants;
      showPeople();
      break;
    case "mode":
      if (rep.participant && msg.participant_id === rep.participant.id) {
        rep.participant.mode = msg.new;
        showWho();
      }
      break;
    case "utterance":
      addLine(msg);
      break;
    case "hint":
      addHint(msg);
      break;
    case "metrics":
      rep.metrics = msg.metrics;
      showMetrics(msg.metrics);
      break;
    case "ended":
      rep.ended = msg.reason;
      addSystemLine(`The call ended (${msg.reason.replaceAll("_", " ")}).`);
      break;
    case "error":
      rep.errors.push(msg);
      if (msg.fatal) {
        showError(msg.code === "unauthorized" ? `${msg.message}` : `The call refused this page: ${msg.message}`);
      } else if (msg.code === "shutting_down") {
        showError(msg.message);
      } else if (msg.code !== "rate_limited") {
        console.warn("parley:", msg.code, msg.message);
      }
      break;
  }
}

function leave() {
  rep.ended = rep.ended || "left";
  addSystemLine("You left the call.");
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "leave" }));
  else finish();
}

function finish() {
  stopAudio();
  $("join").hidden = true;
  $("leave").hidden = true;
  document.body.dataset.state = "ended";
}

// --- view ----------------------------------------------------------------------------------------------

function personName(p) {
  const role = ROLE_LABEL[p.role] || p.role;
  if (p.id === "ai-coach") return "AI coach";
  return p.name && p.name !== role ? `${p.name} (${role.toLowerCase()})` : role;
}

function showWho() {
  const p = rep.participant;
  const where = rep.room.name ? `“${rep.room.name}”` : "the call";
  $("who").textContent = `You are the ${(ROLE_LABEL[p.role] || p.role).toLowerCase()} in ${where} (${MODE_LABEL[p.mode] || p.mode}).`;
}

function showPeople() {
  const list = $("people");
  list.replaceChildren();
  for (const p of rep.participants) {
    const item = document.createElement("li");
    item.className = `person${p.connected ? "" : " invited"}`;
    item.dataset.participant = p.id;
    const name = document.createElement("span");
    const you = rep.participant && p.id === rep.participant.id ? " (you)" : "";
    name.textContent = `${personName(p)}${you}`;
    const mode = document.createElement("span");
    mode.className = "mode";
    mode.dataset.mode = p.mode;
    mode.textContent = p.connected ? MODE_LABEL[p.mode] || p.mode : "invited";
    item.append(name, mode);
    list.append(item);
  }
}

function addLine(msg) {
  const line = document.createElement("p");
  const mine = rep.participant && msg.participant_id === rep.participant.id;
  line.className = `line ${msg.role}${mine ? " me" : ""}`;
  line.dataset.role = msg.role;
  const speaker = document.createElement("span");
  speaker.className = "speaker";
  speaker.textContent = mine ? "You" : msg.name || ROLE_LABEL[msg.role] || msg.role;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = msg.text;
  line.append(speaker, text);
  $("transcript").append(line);
  $("transcript").scrollTop = $("transcript").scrollHeight;
  rep.transcript.push({ role: msg.role, participant_id: msg.participant_id, text: msg.text });
}

function addSystemLine(text) {
  const line = document.createElement("p");
  line.className = "line system";
  line.textContent = text;
  $("transcript").append(line);
}

function addHint(msg) {
  // The model's wording of a card already shown: rewrite that card in place, never a second card.
  const shown = msg.refines ? [...$("hints").children].find((c) => c.dataset.hintId === msg.id) : null;
  if (shown) {
    shown.querySelector(".text").textContent = msg.text;
    shown.dataset.source = msg.source;
    const kept = rep.hints.find((h) => h.id === msg.id);
    if (kept) Object.assign(kept, { text: msg.text, source: msg.source });
    return;
  }
  $("no-hints").hidden = true;
  const card = document.createElement("li");
  card.className = "hint fresh";
  card.dataset.trigger = msg.trigger;
  card.dataset.hintId = msg.id;
  card.dataset.source = msg.source;
  const trigger = document.createElement("span");
  trigger.className = "trigger";
  trigger.textContent = TRIGGER_LABEL(msg.trigger);
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = msg.text;
  card.append(trigger, text);
  $("hints").prepend(card); // newest on top
  rep.hints.unshift({ id: msg.id, trigger: msg.trigger, text: msg.text, source: msg.source, whisper: msg.whisper });
}

function showMetrics(metrics) {
  const parts = [];
  for (const role of ["customer", "rep"]) {
    const stats = metrics.roles?.[role];
    if (stats?.talk_ratio != null) parts.push(`${ROLE_LABEL[role]} ${Math.round(stats.talk_ratio * 100)}%`);
  }
  const talk = parts.length ? `Talk time: ${parts.join(" · ")}.` : "";
  const longest = metrics.longest_monologue?.seconds ? ` Longest monologue ${metrics.longest_monologue.seconds} s.` : "";
  $("metrics").textContent = `${talk}${longest}`;
}

function setConnection(state) {
  rep.connection = state;
  $("connection").textContent = state;
  $("connection").dataset.state = state;
}

function setMeter(id, level) {
  const db = 20 * Math.log10(level + 1e-6);
  $(id).style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

$("join").addEventListener("click", join);
$("leave").addEventListener("click", leave);
window.addEventListener("pagehide", () => ws?.close(1000, "page closed"));
setConnection("idle");
if (!roomId || !token) {
  $("join").disabled = true;
  showError("This page needs the link you were given (…/rep.html?room=…&token=…).");
} else if (params.get("autojoin") === "1") {
  join();
}
