// The HTTP API as the page uses it: one place that knows the key header, error bodies and uploads.

const KEY_STORAGE = "autocut.apiKey";
// The header the server reads (server/auth.py); `Authorization: Bearer` would work too.
const KEY_HEADER = "X-API-Key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function authHeaders(extra = {}) {
  const key = getKey();
  return key ? { [KEY_HEADER]: key, ...extra } : { ...extra };
}

async function errorFrom(resp) {
  // The server answers {"error": {"code", "message"}} for every 4xx/5xx (server/main.py).
  let code = "http_" + resp.status;
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (_) { /* not JSON: keep the status line */ }
  if (resp.status === 429) {
    const wait = resp.headers.get("Retry-After");
    if (wait) message += ` (retry in ${wait} s)`;
  }
  return new ApiError(resp.status, code, message);
}

export async function request(method, path, { json, headers } = {}) {
  const init = { method, headers: authHeaders(headers) };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const resp = await fetch(path, init);
  if (!resp.ok) throw await errorFrom(resp);
  return resp.status === 204 ? null : resp.json();
}

export const get = (path) => request("GET", path);

/** GET a binary resource with the key (a <video src> or <a href> cannot send the header). */
export async function getBlob(path) {
  const resp = await fetch(path, { headers: authHeaders() });
  if (!resp.ok) throw await errorFrom(resp);
  return resp.blob();
}

/**
 * Server-sent events of `path` (e.g. GET /v1/jobs/{id}/events) read with fetch, since an EventSource cannot
 * send the key header. Yields {event, data} (data parsed as JSON) until the server ends the stream.
 */
export async function* events(path, signal) {
  const resp = await fetch(path, { headers: authHeaders({ Accept: "text/event-stream" }), signal });
  if (!resp.ok || !resp.body) throw await errorFrom(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

/**
 * Multipart upload of one file with progress (fetch has no upload progress, XHR does).
 * `onProgress(fraction)` gets 0..1. Resolves to the parsed JSON body (201 new, 200 duplicate).
 */
export function upload(path, file, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onerror = () => reject(new ApiError(0, "network", `upload of ${file.name} failed (network error)`));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* handled below */ }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        resolve(body);
      } else {
        const err = body && body.error;
        reject(new ApiError(xhr.status, err ? err.code : "http_" + xhr.status,
          err ? err.message : `upload of ${file.name} failed (${xhr.status})`));
      }
    };
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** A fresh Idempotency-Key, so a double click or a retried POST makes one job, not two. */
export function newIdempotencyKey() {
  if (crypto.randomUUID) return "web-" + crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return "web-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
