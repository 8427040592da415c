// AudioWorklet: microphone frames → pcm16 little-endian, posted to the page in 100 ms pieces.
"use strict";

class Pcm16Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 10);
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i += 1) {
      const x = Math.max(-1, Math.min(1, channel[i]));
      this.buffer[this.filled] = x < 0 ? x * 32768 : x * 32767;
      this.filled += 1;
      if (this.filled === this.size) {
        this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
        this.buffer = new Int16Array(this.size);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
