// Amanuensis web page: submit a job, follow its events, show and play the transcript. No dependencies.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const PALETTE = ["#2456c8", "#c2410c", "#15803d", "#9333ea", "#b91c1c", "#0e7490", "#a16207", "#be185d"];
  const LANGUAGES = [
    ["en", "English"], ["de", "German"], ["fr", "French"], ["es", "Spanish"], ["it", "Italian"],
    ["pt", "Portuguese"], ["nl", "Dutch"], ["sv", "Swedish"], ["da", "Danish"], ["no", "Norwegian"],
    ["fi", "Finnish"], ["pl", "Polish"], ["cs", "Czech"], ["ru", "Russian"], ["uk", "Ukrainian"],
    ["tr", "Turkish"], ["el", "Greek"], ["ar", "Arabic"], ["he", "Hebrew"], ["hi", "Hindi"],
    ["zh", "Chinese"], ["ja", "Japanese"], ["ko", "Korean"], ["vi", "Vietnamese"], ["id", "Indonesian"],
  ];
  const TERMINAL = new Set(["done", "failed", "cancelled"]);
  const WAVEFORM_MAX_BYTES = 150 * 1024 * 1024;

  const state = {
    file: null,          // the File or recorded Blob to submit
    jobId: null,
    stem: "transcript",
    words: [],           // {start, end, el, segEl} sorted by start
    segments: [],        // {start, end, el}
    speakerColours: {},
    speakerSpans: [],    // {start, end, colour} for the waveform
    peaks: null,         // Float32Array of max |amplitude| per bucket
    current: null,
    abort: null,
    recorder: null,
  };

  // ---------- HTTP ----------

  function authHeaders() {
    const key = $("api-key").value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        if (body && body.error && body.error.message) message = body.error.message;
      } catch (_) { /* not JSON */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  // ---------- formatting ----------

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? `${h}:` : "") + `${mm}:${String(r).padStart(2, "0")}`;
  }

  function setStatus(status) {
    const badge = $("job-status");
    badge.textContent = status;
    badge.className = `badge ${status}`;
    $("cancel-button").hidden = !(status === "queued" || status === "running");
  }

  function showProgress(p) {
    if (!p) return;
    $("job-progress").value = p.percent || 0;
    let text = `${Math.round(p.percent || 0)}%`;
    if (p.total_s) text = `${clock(p.done_s)} of ${clock(p.total_s)} · ${text}`;
    if (p.eta_s !== null && p.eta_s !== undefined && p.eta_s > 0) text += ` · about ${Math.ceil(p.eta_s)} s left`;
    $("progress-text").textContent = text;
  }

  function showError(message) {
    $("form-error").textContent = message || "";
  }

  // ---------- choosing audio ----------

  function setFile(file, name) {
    state.file = file;
    state.stem = (name || "transcript").replace(/\.[^.]+$/, "") || "transcript";
    $("file-name").textContent = name ? `Selected: ${name}` : "No file chosen";
    $("submit-button").disabled = !file;
    showError("");
    if (file) loadAudio(file);
  }

  function loadAudio(blob) {
    const player = $("player");
    if (player.dataset.url) URL.revokeObjectURL(player.dataset.url);
    const url = URL.createObjectURL(blob);
    player.dataset.url = url;
    player.src = url;
    state.peaks = null;
    drawWaveform();
    if (blob.size > WAVEFORM_MAX_BYTES) return;  // decoding hours of audio in the page costs too much memory
    blob.arrayBuffer()
      .then((buffer) => new OfflineAudioContext(1, 1, 8000).decodeAudioData(buffer))
      .then((audio) => { state.peaks = peaks(audio, 2000); drawWaveform(); })
      .catch(() => { state.peaks = null; drawWaveform(); });
  }

  function peaks(audio, buckets) {
    const channels = [];
    for (let c = 0; c < audio.numberOfChannels; c++) channels.push(audio.getChannelData(c));
    const size = Math.max(1, Math.floor(audio.length / buckets));
    const out = new Float32Array(Math.ceil(audio.length / size));
    for (let b = 0; b < out.length; b++) {
      let max = 0;
      const end = Math.min(audio.length, (b + 1) * size);
      for (let i = b * size; i < end; i += 4) {
        for (const data of channels) max = Math.max(max, Math.abs(data[i]));
      }
      out[b] = max;
    }
    let top = 0;
    for (const v of out) top = Math.max(top, v);
    if (top > 0) for (let b = 0; b < out.length; b++) out[b] /= top;
    return out;
  }

  function setupDropZone() {
    const zone = $("drop-zone");
    $("file-input").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) setFile(file, file.name);
    });
    ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    }));
    ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("dragging")));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      const file = event.dataTransfer.files[0];
      if (file) setFile(file, file.name);
    });
  }

  function setupRecorder() {
    const button = $("record-button");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
      button.disabled = true;
      $("record-status").textContent = "Recording needs a browser with microphone access (HTTPS or localhost).";
      return;
    }
    button.addEventListener("click", async () => {
      if (state.recorder) { state.recorder.stop(); return; }
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        const recorder = new MediaRecorder(stream);
        const chunks = [];
        recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
        recorder.onstop = () => {
          stream.getTracks().forEach((track) => track.stop());
          state.recorder = null;
          button.setAttribute("aria-pressed", "false");
          button.textContent = "● Record from microphone";
          const type = recorder.mimeType || "audio/webm";
          const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
          const name = `recording-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}.${ext}`;
          setFile(new File(chunks, name, { type }), name);
          $("record-status").textContent = "Recording ready.";
        };
        recorder.start();
        state.recorder = recorder;
        button.setAttribute("aria-pressed", "true");
        button.textContent = "■ Stop recording";
        $("record-status").textContent = "Recording…";
      } catch (error) {
        $("record-status").textContent = `Microphone unavailable: ${error.message}`;
      }
    });
  }

  // ---------- options ----------

  async function loadModels() {
    const select = $("model");
    try {
      const models = (await (await api("/v1/models")).json()).data || [];
      for (const model of models) {
        if (model.id === "whisper-1") continue;
        const option = document.createElement("option");
        option.value = model.id;
        option.textContent = model.id + (model.default ? " (default)" : "") + (model.multilingual ? "" : " · English");
        select.appendChild(option);
      }
    } catch (error) {
      if (error.status === 401) showError("This server needs an API key: open Connection and enter it.");
    }
  }

  function fillLanguages() {
    const select = $("language");
    for (const [code, name] of LANGUAGES) {
      const option = document.createElement("option");
      option.value = code;
      option.textContent = `${name} (${code})`;
      select.appendChild(option);
    }
  }

  // ---------- jobs ----------

  async function submit(event) {
    event.preventDefault();
    if (!state.file) return;
    showError("");
    const form = new FormData();
    form.append("file", state.file, state.file.name || `${state.stem}.webm`);
    if ($("model").value) form.append("model", $("model").value);
    if ($("language").value) form.append("language", $("language").value);
    form.append("task", $("task").value);
    form.append("word_timestamps", String($("word-timestamps").checked));
    form.append("enable_diarization", String($("diarize").checked));
    $("submit-button").disabled = true;
    try {
      const job = await (await api("/v1/jobs", { method: "POST", body: form })).json();
      follow(job.id);
      loadRecent();
    } catch (error) {
      showError(error.message);
    } finally {
      $("submit-button").disabled = !state.file;
    }
  }

  function resetResult() {
    $("transcript").replaceChildren();
    $("speakers").replaceChildren();
    state.words = [];
    state.segments = [];
    state.speakerColours = {};
    state.speakerSpans = [];
    state.current = null;
    document.querySelectorAll(".download").forEach((b) => { b.disabled = true; });
    drawWaveform();
  }

  async function follow(jobId) {
    if (state.abort) state.abort.abort();
    const controller = new AbortController();
    state.abort = controller;
    state.jobId = jobId;
    resetResult();
    setStatus("queued");
    showProgress({ percent: 0, done_s: 0, total_s: null });
    for (let attempt = 0; attempt < 60 && state.jobId === jobId; attempt++) {
      try {
        const response = await api(`/v1/jobs/${jobId}/events`, { signal: controller.signal });
        resetResult();
        if (await readEvents(response.body, (name, data) => handleEvent(jobId, name, data))) return;
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error.status && error.status < 500) { showError(error.message); return; }
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(5, attempt + 1) * 1000));
    }
  }

  async function readEvents(body, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;
        onEvent(name, JSON.parse(data.join("\n")));
        if (TERMINAL.has(name)) {
          while (!(await reader.read()).done) { /* the server ends the stream after the last event */ }
          return true;
        }
      }
    }
  }

  function handleEvent(jobId, name, data) {
    if (jobId !== state.jobId) return;
    if (name === "status") {
      setStatus(data.status);
      showProgress(data.progress);
    } else if (name === "progress") {
      showProgress(data);
    } else if (name === "segment") {
      addSegment(data);
    } else if (TERMINAL.has(name)) {
      setStatus(data.status);
      showProgress(data.progress);
      if (name === "done") {
        renderResult(data.result);
        document.querySelectorAll(".download").forEach((b) => { b.disabled = false; });
      } else if (name === "failed") {
        showError(data.error ? data.error.message : "The job failed.");
      }
      loadRecent();
    }
  }

  async function cancel() {
    if (!state.jobId) return;
    try {
      const job = await (await api(`/v1/jobs/${state.jobId}`, { method: "DELETE" })).json();
      if (job.status) setStatus(job.status);
    } catch (error) {
      showError(error.message);
    }
  }

  async function openJob(jobId, filename) {
    try {
      const blob = await (await api(`/v1/jobs/${jobId}/audio`)).blob();
      state.stem = (filename || "transcript").replace(/\.[^.]+$/, "");
      loadAudio(blob);
    } catch (error) {
      showError(`The audio of this job is not available: ${error.message}`);
    }
    follow(jobId);
  }

  async function loadRecent() {
    const list = $("recent-jobs");
    try {
      const jobs = (await (await api("/v1/jobs?limit=8")).json()).data || [];
      list.replaceChildren(...jobs.map((job) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        const name = document.createElement("span");
        name.textContent = job.filename || job.id;
        const status = document.createElement("span");
        status.className = "state";
        status.textContent = job.status;
        button.append(name, status);
        button.setAttribute("aria-label", `Open ${job.filename || job.id} (${job.status})`);
        button.addEventListener("click", () => openJob(job.id, job.filename));
        item.appendChild(button);
        return item;
      }));
    } catch (_) { /* the list is a convenience */ }
  }

  // ---------- transcript ----------

  function speakerColour(speaker) {
    if (!speaker) return null;
    if (!(speaker in state.speakerColours)) {
      state.speakerColours[speaker] = PALETTE[Object.keys(state.speakerColours).length % PALETTE.length];
    }
    return state.speakerColours[speaker];
  }

  function addSegment(segment) {
    const row = document.createElement("p");
    row.className = "segment";
    const time = document.createElement("button");
    time.type = "button";
    time.className = "time";
    time.textContent = clock(segment.start);
    time.setAttribute("aria-label", `Play from ${clock(segment.start)}`);
    time.addEventListener("click", () => seek(segment.start, true));
    row.appendChild(time);
    const text = document.createElement("span");
    text.className = "text";
    const colour = speakerColour(segment.speaker);
    if (colour) {
      row.style.borderLeftColor = colour;
      const label = document.createElement("span");
      label.className = "speaker";
      label.style.color = colour;
      label.textContent = segment.speaker;
      text.appendChild(label);
      state.speakerSpans.push({ start: segment.start, end: segment.end, colour });
    }
    if (segment.words && segment.words.length) {
      segment.words.forEach((word, index) => {
        const spoken = word.word.trim();
        if (index > 0 && word.word !== word.word.trimStart()) text.appendChild(document.createTextNode(" "));
        const span = document.createElement("span");
        span.className = "word";
        span.textContent = spoken;
        span.dataset.start = word.start;
        span.dataset.end = word.end;
        text.appendChild(span);
        state.words.push({ start: word.start, end: word.end, el: span, segEl: row });
      });
    } else {
      text.appendChild(document.createTextNode(segment.text));
    }
    row.appendChild(text);
    $("transcript").appendChild(row);
    state.segments.push({ start: segment.start, end: segment.end, el: row });
  }

  function renderResult(result) {
    resetResult();
    for (const speaker of result.speakers || []) {
      const chip = document.createElement("span");
      chip.className = "speaker-chip";
      chip.style.background = speakerColour(speaker);
      chip.textContent = speaker;
      $("speakers").appendChild(chip);
    }
    for (const segment of result.segments || []) addSegment(segment);
    drawWaveform();
    highlight($("player").currentTime);
  }

  function seek(seconds, play) {
    const player = $("player");
    player.currentTime = seconds;
    highlight(seconds);
    drawWaveform();
    if (play) player.play().catch(() => {});
  }

  function findLast(items, t) {
    let lo = 0, hi = items.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (items[mid].start <= t) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    return found;
  }

  function highlight(t) {
    const items = state.words.length ? state.words : state.segments;
    const index = findLast(items, t + 0.01);
    let item = index >= 0 ? items[index] : null;
    if (item && t > item.end + 0.3) item = null;
    if (item === state.current) return;
    if (state.current) {
      state.current.el.classList.remove("current");
      if (state.current.segEl) state.current.segEl.classList.remove("current");
    }
    state.current = item;
    if (item) {
      item.el.classList.add("current");
      if (item.segEl) item.segEl.classList.add("current");
      const box = $("transcript");
      const top = item.el.offsetTop - box.offsetTop;
      if (top < box.scrollTop || top > box.scrollTop + box.clientHeight - 40) {
        box.scrollTop = Math.max(0, top - box.clientHeight / 3);
      }
    }
  }

  function setupTranscript() {
    $("transcript").addEventListener("click", (event) => {
      const word = event.target.closest(".word");
      if (word) seek(parseFloat(word.dataset.start), false);
    });
    const player = $("player");
    const tick = () => {
      highlight(player.currentTime);
      drawWaveform();
      if (!player.paused) requestAnimationFrame(tick);
    };
    player.addEventListener("play", () => requestAnimationFrame(tick));
    ["seeked", "timeupdate", "loadedmetadata"].forEach((type) => player.addEventListener(type, tick));
  }

  // ---------- waveform ----------

  function drawWaveform() {
    const canvas = $("waveform");
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, width, height);
    const player = $("player");
    const duration = Number.isFinite(player.duration) && player.duration > 0 ? player.duration : 0;
    const band = 6 * ratio;
    if (duration) {
      for (const span of state.speakerSpans) {
        g.fillStyle = span.colour;
        g.fillRect((span.start / duration) * width, height - band, Math.max(1, ((span.end - span.start) / duration) * width), band);
      }
    }
    const middle = (height - band) / 2;
    const played = duration ? (player.currentTime / duration) * width : 0;
    if (!state.peaks) {
      g.fillStyle = "#c3c9d3";
      g.fillRect(0, middle - ratio / 2, width, ratio);
    } else {
      const step = 2 * ratio;
      for (let x = 0; x < width; x += step) {
        const from = Math.floor((x / width) * state.peaks.length);
        const to = Math.max(from + 1, Math.floor(((x + step) / width) * state.peaks.length));
        let peak = 0;
        for (let i = from; i < to && i < state.peaks.length; i++) peak = Math.max(peak, state.peaks[i]);
        const h = Math.max(ratio, peak * (middle - 2 * ratio));
        g.fillStyle = x < played ? "#2456c8" : "#aab3c2";
        g.fillRect(x, middle - h, Math.max(1, step - ratio), 2 * h);
      }
    }
    if (duration) {
      g.fillStyle = "#1d2430";
      g.fillRect(Math.min(width - ratio, played), 0, ratio, height - band);
    }
  }

  function setupWaveform() {
    const canvas = $("waveform");
    canvas.addEventListener("click", (event) => {
      const player = $("player");
      if (!Number.isFinite(player.duration)) return;
      const box = canvas.getBoundingClientRect();
      seek(((event.clientX - box.left) / box.width) * player.duration, false);
    });
    window.addEventListener("resize", drawWaveform);
  }

  // ---------- downloads ----------

  // The subtitle style fields, as the query options of a subtitle download (blank fields: the job's own).
  function subtitleStyle(query) {
    for (const input of $("subtitle-style").querySelectorAll("input")) {
      if (input.type === "checkbox") query.set(input.name, input.checked ? "true" : "false");
      else if (input.value.trim()) query.set(input.name, input.value.trim());
    }
    return query;
  }

  async function download(button) {
    if (!state.jobId) return;
    try {
      const query = new URLSearchParams({ format: button.dataset.format });
      if (["srt", "vtt"].includes(button.dataset.format)) subtitleStyle(query);
      const response = await api(`/v1/jobs/${state.jobId}?${query}`);
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement("a");
      link.href = url;
      link.download = `${state.stem}.${button.dataset.ext}`;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      showError(error.message);
    }
  }

  // ---------- start ----------

  // The key for API calls (Bearer), kept in localStorage; the same-site cookie carries it when the browser
  // itself loads the page and its assets from a server that needs a key (the key form sets it first).
  function cookieKey() {
    const found = document.cookie.split("; ").find((part) => part.startsWith("amanuensis_key="));
    return found ? decodeURIComponent(found.slice("amanuensis_key=".length)) : "";
  }

  function rememberKey(value) {
    localStorage.setItem("amanuensis.apiKey", value);
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = value
      ? `amanuensis_key=${encodeURIComponent(value)}; Path=/; Max-Age=2592000; SameSite=Strict${secure}`
      : "amanuensis_key=; Path=/; Max-Age=0; SameSite=Strict";
  }

  function init() {
    const key = $("api-key");
    key.value = localStorage.getItem("amanuensis.apiKey") || cookieKey();
    key.addEventListener("change", () => {
      rememberKey(key.value.trim());
      loadModels();
      loadRecent();
    });
    fillLanguages();
    setupDropZone();
    setupRecorder();
    setupTranscript();
    setupWaveform();
    $("job-form").addEventListener("submit", submit);
    $("cancel-button").addEventListener("click", cancel);
    document.querySelectorAll(".download").forEach((button) => button.addEventListener("click", () => download(button)));
    drawWaveform();
    loadModels();
    loadRecent();
  }

  init();
})();
