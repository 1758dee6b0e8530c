// The clip pool: uploads (with thumbnails made in the browser) and videos of the material library.

import { ApiError, get, upload } from "./api.js";
import { el, fmtSeconds } from "./dom.js";

const THUMB_STORAGE = "autocut.thumbs";
const THUMB_KEEP = 60; // thumbnails remembered across reloads (the server keeps no previews)
const THUMB_WIDTH_PX = 160;
const THUMB_TIMEOUT_MS = 15000;
const INGEST_POLL_MS = 1500;

/** uploads: clip_id (or a temporary local id while uploading) -> entry; library: photo_id -> entry. */
const uploads = new Map();
const library = new Map();
let localSeq = 0;
let onChange = () => {};

function loadThumbs() {
  try { return JSON.parse(localStorage.getItem(THUMB_STORAGE) || "{}"); } catch (_) { return {}; }
}

function rememberThumb(clipId, dataUrl) {
  const thumbs = loadThumbs();
  delete thumbs[clipId];
  thumbs[clipId] = dataUrl; // insertion order = age: the oldest are dropped first
  const ids = Object.keys(thumbs);
  for (const id of ids.slice(0, Math.max(0, ids.length - THUMB_KEEP))) delete thumbs[id];
  try { localStorage.setItem(THUMB_STORAGE, JSON.stringify(thumbs)); } catch (_) { /* storage full: skip */ }
}

/**
 * A JPEG data URL of one frame of a local video file, drawn from a <video> element, plus its
 * duration; null when this browser cannot decode the file (the server may still accept it).
 */
export function makeThumbnail(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const video = document.createElement("video");
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      video.removeAttribute("src");
      video.load();
      URL.revokeObjectURL(url);
      resolve(value);
    };
    const timer = setTimeout(() => finish(null), THUMB_TIMEOUT_MS);
    video.muted = true;
    video.playsInline = true;
    video.preload = "auto";
    video.onerror = () => finish(null);
    video.onloadedmetadata = () => {
      // A frame a little way in: the very first frame of footage is often black or a fade.
      const d = Number.isFinite(video.duration) ? video.duration : 0;
      video.currentTime = Math.min(1.0, d / 4);
    };
    video.onseeked = () => {
      const w = THUMB_WIDTH_PX;
      const h = Math.max(1, Math.round((w * video.videoHeight) / Math.max(1, video.videoWidth)));
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      canvas.getContext("2d").drawImage(video, 0, 0, w, h);
      finish({ dataUrl: canvas.toDataURL("image/jpeg", 0.8), durationS: video.duration });
    };
    video.src = url;
  });
}

function stateText(entry) {
  if (entry.error) return entry.error;
  if (!entry.clip) return `uploading ${Math.round(entry.uploadFrac * 100)}%`;
  const c = entry.clip;
  if (c.state === "ready") return entry.duplicate ? "ready (already uploaded)" : "ready";
  if (c.state === "failed") return "failed: " + (c.error ? c.error.message : "ingest failed");
  return "ingesting…";
}

function renderUpload(entry) {
  const c = entry.clip;
  const failed = Boolean(entry.error) || (c && c.state === "failed");
  if (failed) entry.selected = false;
  const thumb = entry.thumb
    ? el("img", { src: entry.thumb, alt: "", class: "thumb" })
    : el("div", { class: "thumb placeholder" }, "video");
  const meta = [];
  const dur = c && c.duration_s ? c.duration_s : entry.durationS;
  if (dur) meta.push(fmtSeconds(dur));
  if (c && c.width) meta.push(`${c.width}×${c.height}`);
  const box = el("input", { type: "checkbox", class: "pick", "aria-label": "use this clip" });
  box.checked = entry.selected;
  box.disabled = failed || !c;
  box.addEventListener("change", () => { entry.selected = box.checked; onChange(); });
  const state = c ? c.state : (entry.error ? "failed" : "uploading");
  const li = el("li", { class: `tile state-${failed ? "failed" : state}` },
    el("label", {}, box, thumb,
      el("span", { class: "name", title: entry.name }, entry.name),
      el("span", { class: "meta" }, meta.join(" · ")),
      el("span", { class: "badge" }, stateText(entry))));
  if (c) li.dataset.clipId = c.clip_id;
  if (!c && !entry.error) {
    li.append(el("progress", { max: "1", value: String(entry.uploadFrac) }));
  }
  if (entry.li) entry.li.replaceWith(li);
  entry.li = li;
  return li;
}

function addUploadTile(entry, { prepend = true } = {}) {
  const list = document.getElementById("uploads");
  const li = renderUpload(entry);
  if (prepend) list.prepend(li); else list.append(li);
  updateCounts();
}

function updateCounts() {
  document.getElementById("uploads-count").textContent = uploads.size ? `(${uploads.size})` : "";
  const visible = [...library.values()].length;
  document.getElementById("library-count").textContent = `(${visible})`;
}

async function watchIngest(entry) {
  // Shows when an upload becomes usable; an edit may be submitted before (the worker waits for it).
  while (entry.clip && entry.clip.state === "ingesting") {
    await new Promise((r) => setTimeout(r, INGEST_POLL_MS));
    try {
      entry.clip = await get(`/v1/clips/${entry.clip.clip_id}`);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status === 401 || err.status === 404) return;
    }
    renderUpload(entry);
    onChange();
  }
}

function startUpload(file) {
  const entry = { name: file.name, clip: null, thumb: null, durationS: null, uploadFrac: 0, selected: true,
                  error: null, duplicate: false, li: null, tmpId: `local-${++localSeq}` };
  uploads.set(entry.tmpId, entry);
  addUploadTile(entry);
  entry.thumbDone = makeThumbnail(file).then((t) => {
    if (t) { entry.thumb = t.dataUrl; entry.durationS = t.durationS; }
    renderUpload(entry);
  });
  return entry;
}

async function sendUpload(entry, file) {
  try {
    const clip = await upload("/v1/clips", file, (f) => {
      entry.uploadFrac = f;
      const bar = entry.li && entry.li.querySelector("progress");
      if (bar) bar.value = f;
      const badge = entry.li && entry.li.querySelector(".badge");
      if (badge) badge.textContent = stateText(entry);
    });
    uploads.delete(entry.tmpId);
    if (uploads.has(clip.clip_id)) {
      // The same content is already listed: keep one tile.
      entry.li.remove();
      const existing = uploads.get(clip.clip_id);
      existing.selected = true;
      existing.duplicate = true;
      renderUpload(existing);
      updateCounts();
      onChange();
      return;
    }
    entry.clip = clip;
    entry.duplicate = Boolean(clip.duplicate);
    uploads.set(clip.clip_id, entry);
  } catch (err) {
    entry.error = err.message;
  }
  await entry.thumbDone;
  if (entry.clip && entry.thumb) rememberThumb(entry.clip.clip_id, entry.thumb);
  renderUpload(entry);
  updateCounts();
  onChange();
  if (entry.clip) watchIngest(entry);
}

/** Upload files one after another (each is streamed; parallel uploads would only compete). */
let uploadChain = Promise.resolve();
export function uploadFiles(files) {
  for (const file of files) {
    const entry = startUpload(file);
    uploadChain = uploadChain.then(() => sendUpload(entry, file));
  }
  onChange();
  return uploadChain;
}

export function uploadsInFlight() {
  return [...uploads.values()].filter((e) => !e.clip && !e.error).length;
}

/** Earlier uploads of this key (the list survives reloads; thumbnails come from localStorage). */
export async function loadUploads() {
  const page = await get("/v1/clips?limit=100");
  const thumbs = loadThumbs();
  for (const clip of page.items.filter((c) => c.kind === "video").reverse()) {
    if (uploads.has(clip.clip_id)) continue;
    const entry = { name: clip.filename, clip, thumb: thumbs[clip.clip_id] || null, durationS: clip.duration_s,
                    uploadFrac: 1, selected: false, error: null, duplicate: false, li: null };
    uploads.set(clip.clip_id, entry);
    addUploadTile(entry);
    if (clip.state === "ingesting") watchIngest(entry);
  }
  updateCounts();
}

function renderLibraryItem(entry) {
  const v = entry.item;
  const box = el("input", { type: "checkbox", class: "pick", "aria-label": `use library video ${v.photo_id}` });
  box.checked = entry.selected;
  box.addEventListener("change", () => { entry.selected = box.checked; onChange(); });
  const li = el("li", { class: "tile library" },
    el("label", {}, box,
      el("div", { class: "thumb placeholder" }, `#${v.photo_id}`),
      el("span", { class: "name" }, `video ${v.photo_id}`),
      el("span", { class: "meta" }, `${fmtSeconds(v.duration_s)} · ${v.width}×${v.height}`),
      el("span", { class: "badge" }, v.kind)));
  li.dataset.photoId = String(v.photo_id);
  return li;
}

/** The material library (operator-ingested videos); your own uploads are listed above instead. */
export async function loadLibrary() {
  const page = await get("/v1/library/videos?limit=500");
  const list = document.getElementById("library");
  list.replaceChildren();
  const keep = new Map();
  for (const v of page.items.filter((x) => !x.uploaded)) {
    const entry = { item: v, selected: library.get(v.photo_id)?.selected || false };
    keep.set(v.photo_id, entry);
    list.append(renderLibraryItem(entry));
  }
  library.clear();
  for (const [k, v] of keep) library.set(k, v);
  updateCounts();
  onChange();
}

export function clearAll() {
  uploads.clear();
  library.clear();
  document.getElementById("uploads").replaceChildren();
  document.getElementById("library").replaceChildren();
  updateCounts();
  onChange();
}

/** The request's `clips`: selected uploads (by clip_id) then selected library videos (by photo_id). */
export function selectedPool() {
  const pool = [];
  for (const e of uploads.values()) if (e.selected && e.clip && e.clip.state !== "failed") pool.push({ clip_id: e.clip.clip_id });
  for (const e of library.values()) if (e.selected) pool.push({ photo_id: e.item.photo_id });
  return pool;
}

export function initClips(changed) {
  onChange = changed;
  const input = document.getElementById("clip-files");
  input.addEventListener("change", () => {
    uploadFiles([...input.files]);
    input.value = "";
  });
  const zone = document.getElementById("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    uploadFiles([...e.dataTransfer.files].filter((f) => f.type.startsWith("video/") || /\.(mkv|avi|flv|ts|wmv)$/i.test(f.name)));
  });
}
