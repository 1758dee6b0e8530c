// The page: API key, product form, options and submission of POST /v1/edits.

import { get, getKey, newIdempotencyKey, request, setKey, upload } from "./api.js";
import { clearAll, initClips, loadLibrary, loadUploads, selectedPool, uploadsInFlight } from "./clips.js";
import { el } from "./dom.js";
import { clearJobs, initJobs, refreshJobs, showJob } from "./jobs.js";

const $ = (id) => document.getElementById(id);

let productImageId = null;
// One Idempotency-Key per submitted form content: a double click or a retry after a network
// error re-sends the same key (one job); any edit of the form starts a new key.
let idempotency = { body: null, key: null };

function lines(text) {
  return text.split("\n").map((s) => s.trim()).filter(Boolean);
}

function setKeyStatus(text, ok) {
  const s = $("key-status");
  s.textContent = text;
  s.className = "key-status " + (ok === true ? "ok" : ok === false ? "bad" : "");
}

/** Check the stored key against the API and (re)load everything that belongs to it. */
async function connect() {
  clearAll();
  clearJobs();
  if (!getKey()) {
    setKeyStatus("no key: enter your API key", false);
    return;
  }
  try {
    await get("/v1/jobs?limit=1");
  } catch (err) {
    setKeyStatus(err.status === 401 ? "key refused" : err.message, false);
    return;
  }
  setKeyStatus("connected", true);
  await Promise.allSettled([loadUploads(), loadLibrary(), loadBgm(), refreshJobs()]);
}

async function loadBgm() {
  const select = $("o-bgm");
  for (const opt of [...select.options]) if (opt.value.startsWith("track:")) opt.remove();
  const page = await get("/v1/library/bgm?limit=500");
  for (const t of page.items) {
    select.append(el("option", { value: `track:${t.audio_id}` },
      `${t.title || "track " + t.audio_id}${t.mood ? " (" + t.mood + ")" : ""}`));
  }
}

function poolSummary() {
  const pool = selectedPool();
  const pending = uploadsInFlight();
  const parts = [pool.length ? `${pool.length} clip${pool.length === 1 ? "" : "s"} selected` : "No clips selected"];
  if (pending) parts.push(`${pending} uploading`);
  $("pool-summary").textContent = parts.join(", ") + ".";
}

async function onProductImage() {
  const file = $("p-image").files[0];
  const preview = $("p-image-preview");
  productImageId = null;
  preview.replaceChildren();
  preview.hidden = !file;
  if (!file) return;
  const url = URL.createObjectURL(file);
  const status = el("span", { class: "badge" }, "uploading…");
  preview.append(el("img", { src: url, alt: "product photo" }), status);
  try {
    const img = await upload("/v1/images", file);
    productImageId = img.clip_id;
    status.textContent = `${img.width}×${img.height}`;
  } catch (err) {
    status.textContent = err.message;
    status.classList.add("error");
  }
}

/** The EditRequest (server/schemas.py) the form describes; throws Error with a user message. */
export function buildRequest() {
  const name = $("p-name").value.trim();
  if (!name) throw new Error("The product needs a name.");
  if (uploadsInFlight()) throw new Error("Wait for the uploads to finish.");
  const clips = selectedPool();
  if (!clips.length) throw new Error("Upload or pick at least one clip.");
  const product = {
    name,
    brand: $("p-brand").value.trim(),
    category: $("p-category").value.trim(),
    selling_points: lines($("p-points").value),
    description: $("p-description").value.trim(),
  };
  if (productImageId) product.image_id = productImageId;
  const bgmValue = $("o-bgm").value;
  const bgm = bgmValue.startsWith("track:")
    ? { policy: "track", audio_id: Number(bgmValue.slice(6)) }
    : { policy: bgmValue };
  const voice = { engine: $("o-voice-engine").value };
  const voiceName = $("o-voice-name").value.trim();
  if (voiceName) voice.name = voiceName;
  // A platform preset ("preset:<name>") sets the aspect itself.
  const format = $("o-aspect").value;
  const shape = format.startsWith("preset:") ? { preset: format.slice(7) } : { aspect: format };
  const options = {
    ...shape,
    resolution: Number($("o-resolution").value),
    max_duration_s: Number($("o-max-duration").value),
    language: $("o-language").value,
    voice,
    bgm,
    n_variants: Number($("o-variants").value),
    transition: $("o-transition").value,
    subtitles: $("o-subtitles").checked,
  };
  const planner = $("o-planner").value.trim();
  if (planner) options.planner = planner;
  const req = { product, clips, options };
  const script = lines($("script").value);
  if (script.length) req.script = script;
  return req;
}

async function onSubmit(ev) {
  ev.preventDefault();
  const err = $("form-error");
  err.textContent = "";
  let req;
  try {
    req = buildRequest();
  } catch (e) {
    err.textContent = e.message;
    return;
  }
  const body = JSON.stringify(req);
  if (idempotency.body !== body) idempotency = { body, key: newIdempotencyKey() };
  const button = $("submit");
  button.disabled = true;
  try {
    const accepted = await request("POST", "/v1/edits", { json: req, headers: { "Idempotency-Key": idempotency.key } });
    showJob(accepted.job_id);
    refreshJobs();
  } catch (e) {
    err.textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

function init() {
  $("api-key").value = getKey();
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setKey($("api-key").value.trim());
    connect();
  });
  $("key-forget").addEventListener("click", () => {
    setKey("");
    $("api-key").value = "";
    connect();
  });
  $("p-image").addEventListener("change", onProductImage);
  $("edit-form").addEventListener("submit", onSubmit);
  initClips(poolSummary);
  initJobs();
  connect();
}

init();
