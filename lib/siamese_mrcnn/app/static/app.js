// The one-shot search page: references with boxes, queries (uploads or the server's
// folder), results drawn on canvases and filtered by the score slider without a new
// request. Talks to the JSON API of server.py only.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48],
                [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]];
const UPLOAD_CHUNK = 4;      // query images per /api/detect call (progress between calls)
const POLL_MS = 300;         // folder search progress
const MAX_CARDS = 60;        // drawn at once (best first); the counts cover every image

const state = {
  info: null,
  refs: [],          // [{file, image, box: [x, y, w, h] | null}]
  selected: 0,
  records: [],       // results.jsonl records of the last run
  inset: null,       // canvas: the first reference's crop
  drag: null,
};

// ------------------------------------------------------------------ helpers
function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`cannot show ${url}`));
    image.src = url;
  });
}

function setError(message) {
  $("error").textContent = message || "";
  if (message) $("results").dataset.state = "error";
}

function setProgress(done, total, text) {
  const bar = $("progress");
  if (total) { bar.max = total; bar.value = done; } else { bar.removeAttribute("value"); }
  $("status").textContent = text;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    throw new Error((body && body.error) || `${path}: HTTP ${response.status}`);
  }
  return body;
}

function bestScore(record) {
  return record.detections.reduce((best, d) => Math.max(best, d.score), 0);
}

function threshold() { return parseFloat($("score").value); }

// ------------------------------------------------------------------ reference
function scaleOf(canvas, image) { return canvas.width / image.naturalWidth; }

function drawReference() {
  const canvas = $("reference-canvas");
  const ref = state.refs[state.selected];
  const ctx = canvas.getContext("2d");
  if (!ref) { ctx.clearRect(0, 0, canvas.width, canvas.height); return; }
  const scale = Math.min(360 / ref.image.naturalWidth, 240 / ref.image.naturalHeight, 4);
  canvas.width = Math.round(ref.image.naturalWidth * scale);
  canvas.height = Math.round(ref.image.naturalHeight * scale);
  ctx.drawImage(ref.image, 0, 0, canvas.width, canvas.height);
  const box = ref.box;
  if (box) {
    const s = scaleOf(canvas, ref.image);
    ctx.fillStyle = "rgba(0, 0, 0, 0.45)";  // darken what is left out
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(ref.image, box[0], box[1], box[2], box[3],
                  box[0] * s, box[1] * s, box[2] * s, box[3] * s);
    ctx.strokeStyle = "#ffd400"; ctx.lineWidth = 2; ctx.setLineDash([6, 4]);
    ctx.strokeRect(box[0] * s, box[1] * s, box[2] * s, box[3] * s);
    ctx.setLineDash([]);
  }
  $("box-text").textContent = box
    ? `box ${box.join(",")} (x,y,w,h in pixels of ${ref.file.name})`
    : `whole image ${ref.image.naturalWidth}x${ref.image.naturalHeight} (${ref.file.name})`;
  $("box-text").dataset.box = box ? box.join(",") : "";
  $("clear-box").disabled = !box;
}

function drawThumbs() {
  const thumbs = $("reference-thumbs");
  thumbs.replaceChildren();
  state.refs.forEach((ref, i) => {
    const img = document.createElement("img");
    img.src = ref.image.src;
    img.title = ref.file.name;
    img.className = i === state.selected ? "selected" : "";
    img.addEventListener("click", () => { state.selected = i; drawThumbs(); drawReference(); });
    thumbs.appendChild(img);
  });
}

async function onReferenceFiles() {
  const files = Array.from($("reference-file").files);
  const shots = state.info ? state.info.shots : 1;
  setError("");
  if (files.length > shots) {
    setError(`this model takes 1 to ${shots} reference(s); ${files.length} were chosen`);
    return;
  }
  try {
    state.refs = await Promise.all(files.map(async (file) => ({
      file, image: await loadImage(URL.createObjectURL(file)), box: null })));
  } catch (error) {
    state.refs = [];
    setError(`${error.message}: the reference must be an image`);
  }
  state.selected = 0;
  drawThumbs();
  drawReference();
  updateButtons();
}

function pointerToImage(event) {
  const canvas = $("reference-canvas");
  const rect = canvas.getBoundingClientRect();
  const ref = state.refs[state.selected];
  const x = (event.clientX - rect.left) / rect.width * ref.image.naturalWidth;
  const y = (event.clientY - rect.top) / rect.height * ref.image.naturalHeight;
  return [Math.min(Math.max(x, 0), ref.image.naturalWidth),
          Math.min(Math.max(y, 0), ref.image.naturalHeight)];
}

function setupBoxDrawing() {
  const canvas = $("reference-canvas");
  canvas.addEventListener("pointerdown", (event) => {
    if (!state.refs.length) return;
    canvas.setPointerCapture(event.pointerId);
    state.drag = pointerToImage(event);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.drag) return;
    const [x0, y0] = state.drag, [x1, y1] = pointerToImage(event);
    const box = [Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)]
      .map(Math.round);
    state.refs[state.selected].box = box[2] >= 4 && box[3] >= 4 ? box : null;
    drawReference();
  });
  const end = () => { state.drag = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("clear-box").addEventListener("click", () => {
    state.refs[state.selected].box = null;
    drawReference();
  });
}

function referenceForm() {
  const form = new FormData();
  for (const ref of state.refs) {
    form.append("reference", ref.file, ref.file.name);
    form.append("box", ref.box ? ref.box.join(",") : "");
  }
  form.append("min_score", "0");  // everything: the slider filters in the page
  return form;
}

function makeInset() {
  const ref = state.refs[0];
  const [x, y, w, h] = ref.box || [0, 0, ref.image.naturalWidth, ref.image.naturalHeight];
  const inset = document.createElement("canvas");
  inset.width = w; inset.height = h;
  inset.getContext("2d").drawImage(ref.image, x, y, w, h, 0, 0, w, h);
  return inset;
}

// ------------------------------------------------------------------ results
function startRun(text) {
  setError("");
  state.records = [];
  state.inset = makeInset();
  $("results").replaceChildren();
  $("results").dataset.state = "running";
  setProgress(0, 0, text);
  setBusy(true);
}

function finishRun(text) {
  $("results").dataset.state = "done";
  setProgress(1, 1, text);
  setBusy(false);
  render();
}

function failRun(error) {
  setBusy(false);
  setProgress(0, 1, "");
  setError(error.message);
}

// records: results.jsonl records; urls: where each one's image is shown from.
async function addRecords(records, urls) {
  for (const [i, record] of records.entries()) {
    const image = await loadImage(urls[i]);
    for (const d of record.detections) {
      if (d.mask) d.pixels = rleDecode(d.mask);
    }
    state.records.push({ record, image });
  }
  render();
}

function drawCard(canvas, entry, kept) {
  const { image } = entry;
  const w = image.naturalWidth, h = image.naturalHeight;
  const scale = Math.min(1, 360 / w) || 1;
  canvas.width = Math.round(w * Math.max(scale, Math.min(3, 240 / w)));
  canvas.height = Math.round(h * canvas.width / w);
  const s = canvas.width / w;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  // Masks at the image's own resolution, then scaled with the picture.
  const layer = document.createElement("canvas");
  layer.width = w; layer.height = h;
  const lctx = layer.getContext("2d");
  const data = lctx.createImageData(w, h);
  kept.forEach((d, i) => {
    if (!d.pixels) return;
    const [r, g, b] = COLORS[i % COLORS.length];
    for (let p = 0; p < d.pixels.length; p++) {
      if (d.pixels[p]) { data.data.set([r, g, b, 110], 4 * p); }
    }
  });
  lctx.putImageData(data, 0, 0);
  ctx.drawImage(layer, 0, 0, canvas.width, canvas.height);
  ctx.font = "bold 12px system-ui, sans-serif";
  kept.forEach((d, i) => {
    const [y1, x1, y2, x2] = d.box;
    const [r, g, b] = COLORS[i % COLORS.length];
    ctx.strokeStyle = `rgb(${r}, ${g}, ${b})`; ctx.lineWidth = 2;
    ctx.strokeRect(x1 * s, y1 * s, (x2 - x1) * s, (y2 - y1) * s);
    ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
    ctx.fillRect(x1 * s, Math.max(y1 * s - 14, 0), 34, 14);
    ctx.fillStyle = "#fff";
    ctx.fillText(d.score.toFixed(2), x1 * s + 2, Math.max(y1 * s - 3, 11));
  });
  if (state.inset) {  // the reference, top right, a quarter of the width at most
    const iw = Math.max(16, Math.round(canvas.width / 4));
    const ih = Math.round(iw * state.inset.height / state.inset.width);
    ctx.fillStyle = "#fff";
    ctx.fillRect(canvas.width - iw - 4, 0, iw + 4, ih + 4);
    ctx.drawImage(state.inset, canvas.width - iw - 2, 2, iw, ih);
  }
}

function render() {
  const minimum = threshold();
  $("score-value").textContent = minimum.toFixed(2);
  const entries = state.records.slice().sort((a, b) => bestScore(b.record) -
                                                       bestScore(a.record));
  const results = $("results");
  results.replaceChildren();
  let total = 0, withDetections = 0;
  for (const [index, entry] of entries.entries()) {
    const kept = entry.record.detections.filter((d) => d.score >= minimum);
    total += kept.length;
    if (kept.length) withDetections++;
    if (index >= MAX_CARDS) continue;
    const figure = document.createElement("figure");
    figure.className = kept.length ? "card" : "card empty";
    figure.dataset.file = entry.record.file;
    figure.dataset.detections = String(kept.length);
    figure.dataset.maskPixels = String(kept.reduce(
      (sum, d) => sum + (d.pixels ? d.pixels.reduce((a, v) => a + v, 0) : 0), 0));
    const canvas = document.createElement("canvas");
    drawCard(canvas, entry, kept);
    const caption = document.createElement("figcaption");
    const name = entry.record.file.split(/[\\/]/).pop();
    caption.textContent = `${name}: ${kept.length} match(es)` +
      (entry.record.detections.length ? `, best ${bestScore(entry.record).toFixed(2)}` : "");
    figure.append(canvas, caption);
    results.appendChild(figure);
  }
  results.dataset.detections = String(total);
  results.dataset.images = String(entries.length);
  $("summary").textContent = entries.length
    ? `${total} detection(s) with score >= ${minimum.toFixed(2)} in ${withDetections} of ` +
      `${entries.length} image(s)` +
      (entries.length > MAX_CARDS ? `; the best ${MAX_CARDS} images shown` : "") : "";
  $("download").disabled = !entries.length;
}

function download() {
  const minimum = threshold();
  const lines = state.records.map(({ record }) => JSON.stringify({
    file: record.file, height: record.height, width: record.width,
    detections: record.detections.filter((d) => d.score >= minimum)
      .map(({ box, score, mask }) => (mask ? { box, score, mask } : { box, score })),
  }));
  const blob = new Blob([lines.join("\n") + "\n"], { type: "application/x-ndjson" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "results.jsonl";
  link.click();
}

// ------------------------------------------------------------------ runs
async function runUploads() {
  const files = Array.from($("query-files").files);
  startRun(`0 of ${files.length} image(s)`);
  try {
    for (let start = 0; start < files.length; start += UPLOAD_CHUNK) {
      const chunk = files.slice(start, start + UPLOAD_CHUNK);
      const form = referenceForm();
      for (const file of chunk) form.append("query", file, file.name);
      const answer = await api("/api/detect", { method: "POST", body: form });
      await addRecords(answer.results, chunk.map((file) => URL.createObjectURL(file)));
      setProgress(start + chunk.length, files.length,
                  `${start + chunk.length} of ${files.length} image(s)`);
    }
    finishRun(`searched ${files.length} image(s)`);
  } catch (error) {
    failRun(error);
  }
}

async function runFolder() {
  startRun("starting the folder search");
  try {
    let status = await api("/api/search", { method: "POST", body: referenceForm() });
    const job = status.job;
    let seen = 0;
    for (;;) {
      await addRecords(status.records, status.records.map((record) => "/api/folder/" +
        encodeURIComponent(record.file.split(/[\\/]/).pop())));
      seen += status.records.length;
      setProgress(status.done, status.total, `${status.done} of ${status.total} image(s)`);
      if (status.state === "failed") throw new Error(status.error);
      if (status.state === "cancelled") throw new Error("replaced by a newer search");
      if (status.state === "done") break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      status = await api(`/api/jobs/${job}?since=${seen}`);
    }
    finishRun(`searched ${status.total} file(s) in ${status.seconds.toFixed(1)} s`);
  } catch (error) {
    failRun(error);
  }
}

function setBusy(busy) {
  state.busy = busy;
  updateButtons();
}

function updateButtons() {
  const ready = state.refs.length > 0 && !state.busy;
  $("run-uploads").disabled = !ready || !$("query-files").files.length;
  $("run-folder").disabled = !ready;
}

async function init() {
  setupBoxDrawing();
  $("reference-file").addEventListener("change", onReferenceFiles);
  $("query-files").addEventListener("change", updateButtons);
  $("run-uploads").addEventListener("click", runUploads);
  $("run-folder").addEventListener("click", runFolder);
  $("score").addEventListener("input", render);
  $("download").addEventListener("click", download);
  try {
    state.info = await api("/api/info");
  } catch (error) {
    setError(error.message);
    return;
  }
  const info = state.info;
  $("info").textContent = `model ${info.model} (${info.shots}-shot); uploads up to ` +
    `${info.max_upload_mb} MB and ${info.max_pixels.toLocaleString()} pixels per image`;
  $("shots-hint").textContent = info.shots > 1
    ? `This is a ${info.shots}-shot model: choose 1 to ${info.shots} reference images.` : "";
  if (info.folder_images) {
    $("run-folder").hidden = false;
    $("run-folder").textContent = `Search the folder (${info.folder_images} files)`;
  }
  document.body.dataset.ready = "true";
  updateButtons();
}

init();
