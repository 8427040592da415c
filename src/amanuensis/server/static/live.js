// Live mode: microphone → AudioWorklet (pcm16) → WebSocket /v1/realtime (OpenAI Realtime transcription).
// Confirmed words (deltas) are shown as they arrive; each turn's final text replaces them when it completes.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const RATES = [24000, 16000];
  const STOP_WAIT_MS = 20000;
  const live = { ws: null, context: null, stream: null, pending: new Set(), turns: new Map(), finish: null };

  function status(text) { $("live-status").textContent = text; }

  function base64(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(text);
  }

  function turn(itemId) {
    let row = live.turns.get(itemId);
    if (!row) {
      row = document.createElement("p");
      row.className = "turn open";
      row.dataset.item = itemId;
      const confirmed = document.createElement("span");
      confirmed.className = "confirmed";
      row.append(confirmed);
      $("live-transcript").append(row);
      live.turns.set(itemId, row);
    }
    return row;
  }

  function scrollDown() { const box = $("live-transcript"); box.scrollTop = box.scrollHeight; }

  function settle() { if (live.finish && live.committing === false && live.pending.size === 0) live.finish(); }

  function onEvent(event) {
    switch (event.type) {
      case "session.created": status("Listening…"); break;
      case "input_audio_buffer.speech_started": turn(event.item_id); status("Listening… (speech)"); break;
      case "input_audio_buffer.speech_stopped": status("Listening…"); break;
      case "input_audio_buffer.committed":
        live.pending.add(event.item_id);
        live.committing = false;
        break;
      case "conversation.item.input_audio_transcription.delta": {
        const word = document.createElement("span");
        word.className = "delta";
        word.textContent = event.delta;
        turn(event.item_id).querySelector(".confirmed").append(word);
        scrollDown();
        break;
      }
      case "conversation.item.input_audio_transcription.completed":
      case "conversation.item.input_audio_transcription.failed": {
        const row = turn(event.item_id);
        live.pending.delete(event.item_id);
        if (event.type.endsWith("failed")) {
          row.className = "turn failed";
          row.textContent = `(not transcribed: ${event.error.message})`;
        } else if (event.transcript.trim()) {
          row.className = "turn final";
          row.textContent = event.transcript.trim();
        } else {
          row.remove();
          live.turns.delete(event.item_id);
        }
        scrollDown();
        settle();
        break;
      }
      case "error":
        if (event.error.code === "input_audio_buffer_commit_empty") live.committing = false;
        else status(`Error: ${event.error.message}`);
        settle();
        break;
      default:
    }
  }

  async function capture() {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    let lastError = null;
    for (const rate of RATES) {
      let context = null;
      try {
        context = new AudioContext({ sampleRate: rate });
        await context.audioWorklet.addModule("/static/pcm-worklet.js");
        const source = context.createMediaStreamSource(stream);
        const node = new AudioWorkletNode(context, "pcm16-capture");
        const mute = context.createGain();
        mute.gain.value = 0;
        source.connect(node).connect(mute).connect(context.destination);
        return { stream, context, node };
      } catch (error) {
        lastError = error;
        if (context) context.close();
      }
    }
    stream.getTracks().forEach((track) => track.stop());
    throw lastError || new Error("no usable sample rate");
  }

  function stopCapture() {
    if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
    if (live.context) live.context.close();
    live.stream = null;
    live.context = null;
  }

  function connect(key) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const protocols = key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"];
    const ws = new WebSocket(`${scheme}://${location.host}/v1/realtime?intent=transcription`, protocols);
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error("could not connect to the server"));
    });
  }

  function setButton(running) {
    const button = $("live-button");
    button.setAttribute("aria-pressed", running ? "true" : "false");
    button.textContent = running ? "■ Stop live transcription" : "● Start live transcription";
  }

  async function start() {
    status("Starting…");
    const { stream, context, node } = await capture();
    live.stream = stream;
    live.context = context;
    const ws = await connect($("api-key").value.trim());
    live.ws = ws;
    ws.onmessage = (message) => onEvent(JSON.parse(message.data));
    ws.onclose = (event) => {
      stopCapture();
      live.ws = null;
      setButton(false);
      if (live.finish) live.finish();
      status(event.code === 1000 || event.code === 1005 ? "Stopped." : `Closed: ${event.reason || event.code}`);
    };
    const transcription = {};
    if ($("model").value) transcription.model = $("model").value;
    if ($("language").value) transcription.language = $("language").value;
    ws.send(JSON.stringify({ type: "session.update", session: { type: "transcription", audio: { input: {
      format: { type: "audio/pcm", rate: context.sampleRate }, transcription, turn_detection: { type: "server_vad" },
    } } } }));
    node.port.onmessage = (event) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64(event.data) }));
    };
    setButton(true);
  }

  async function stop() {
    stopCapture();
    const ws = live.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    status("Finishing the last turn…");
    // commit what was said last and wait for every turn's final text before closing: nothing is lost
    const finished = new Promise((resolve) => { live.finish = resolve; });
    live.committing = true;
    ws.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
    await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, STOP_WAIT_MS))]);
    live.finish = null;
    ws.close(1000, "done");
  }

  function init() {
    const button = $("live-button");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
      button.disabled = true;
      status("Live mode needs a browser with microphone access (HTTPS or localhost) and AudioWorklet.");
      return;
    }
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        if (live.ws) await stop();
        else await start();
      } catch (error) {
        stopCapture();
        setButton(false);
        status(`Live transcription unavailable: ${error.message}`);
      } finally {
        button.disabled = false;
      }
    });
  }

  init();
})();
