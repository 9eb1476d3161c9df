// AudioWorklet processors for the voice page: microphone capture and agent playback.
// They run on the browser's audio thread, so capture never stalls and playback never waits for the page.

const FLUSH_LEVEL_EVERY = 6; // render quanta (~50 ms at 16 kHz) between level reports

function rms(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / Math.max(1, samples.length));
}

// Cuts the microphone into fixed frames of PCM16 and posts each with the time of its first sample.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frameSamples = options.processorOptions.frameSamples;
    this.buffer = new Int16Array(this.frameSamples);
    this.fill = 0;
    this.frameStart = 0;
    this.quanta = 0;
    this.peak = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      if (this.fill === 0) this.frameStart = currentTime + i / sampleRate;
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.buffer[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.fill === this.frameSamples) {
        const pcm = this.buffer;
        this.port.postMessage({ type: "frame", pcm, t: this.frameStart }, [pcm.buffer]);
        this.buffer = new Int16Array(this.frameSamples);
        this.fill = 0;
      }
    }
    this.peak = Math.max(this.peak, rms(channel));
    if (++this.quanta % FLUSH_LEVEL_EVERY === 0) {
      this.port.postMessage({ type: "level", level: this.peak });
      this.peak = 0;
    }
    return true;
  }
}

// A queue of agent audio that plays without gaps, and empties at once on "clear" (barge-in).
class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunks = []; // Float32Arrays
    this.offset = 0; // read position in chunks[0]
    this.buffered = 0;
    this.played = 0;
    this.underruns = 0;
    this.playing = false;
    this.starved = false;
    this.quanta = 0;
    this.peak = 0;
    this.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "push") {
        const pcm = msg.pcm;
        const samples = new Float32Array(pcm.length);
        for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
        if (this.starved) this.underruns++; // the reply went on after the queue ran dry: a gap was heard
        this.starved = false;
        this.chunks.push(samples);
        this.buffered += samples.length;
      } else if (msg.type === "clear") {
        this.chunks = [];
        this.offset = 0;
        this.buffered = 0;
        this.playing = this.starved = false;
      } else if (msg.type === "end") {
        this.starved = false; // the reply is over: running dry was its end, not an underrun
      }
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    while (written < out.length && this.chunks.length) {
      const chunk = this.chunks[0];
      const take = Math.min(out.length - written, chunk.length - this.offset);
      out.set(chunk.subarray(this.offset, this.offset + take), written);
      written += take;
      this.offset += take;
      if (this.offset === chunk.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    this.buffered -= written;
    this.played += written;
    if (written) this.playing = true;
    if (written < out.length) {
      out.fill(0, written);
      if (this.playing) this.starved = true;
      this.playing = false;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.peak = Math.max(this.peak, rms(out));
    if (++this.quanta % FLUSH_LEVEL_EVERY === 0) {
      this.port.postMessage({ type: "stats", level: this.peak, played: this.played, buffered: this.buffered,
                              underruns: this.underruns });
      this.peak = 0;
    }
    return true;
  }
}

registerProcessor("parley-capture", CaptureProcessor);
registerProcessor("parley-playback", PlaybackProcessor);
