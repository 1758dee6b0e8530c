// Job progress (the job's event stream GET /v1/jobs/{id}/events; polling GET /v1/jobs/{id} when the stream is
// refused or breaks), the result player and downloads, and the recent-jobs list.

import { ApiError, events, get, getBlob, request } from "./api.js";
import { el, fmtSeconds, fmtWhen } from "./dom.js";

const POLL_MS = 1000;
const LIST_POLL_MS = 5000;
const ACTIVE = new Set(["queued", "running"]);
// Result artifacts as the server names them (server/routes/jobs.py) -> button label and file suffix.
const ARTIFACTS = [
  ["video", "MP4", ".mp4"],
  ["subtitles", "SRT", ".srt"],
  ["timeline", "OTIO", ".otio"],
  ["plan", "Plan JSON", ".plan.json"],
];

let current = null; // {jobId, timer, stream (AbortController), shownResults, urls: [] }
let listTimer = null;

const $ = (id) => document.getElementById(id);

function releaseUrls() {
  if (current) for (const u of current.urls) URL.revokeObjectURL(u);
}

/** Show a job in the result panel and follow it until it finishes. */
export function showJob(jobId) {
  if (current) {
    clearTimeout(current.timer);
    current.stream.abort();
    releaseUrls();
  }
  current = { jobId, timer: null, stream: new AbortController(), shownResults: false, urls: [] };
  $("job-empty").hidden = true;
  $("job").hidden = false;
  $("job-id").textContent = jobId;
  $("job-state").textContent = "…";
  $("job-state").className = "state";
  $("job-stage").textContent = "";
  $("job-error").textContent = "";
  $("job-progress").value = 0;
  $("variants").replaceChildren();
  markSelectedRow();
  follow(current);
}

/** Follow the job's event stream; poll instead when it is refused (e.g. too many streams) or ends early. */
async function follow(mine) {
  let last = null;
  try {
    for await (const { data } of events(`/v1/jobs/${mine.jobId}/events`, mine.stream.signal)) {
      if (mine !== current) return;
      if (data.state) {
        last = data;
        await show(mine, data);
      }
    }
  } catch (_) { /* refused, aborted or broken: polling takes over below */ }
  if (mine === current && (!last || ACTIVE.has(last.state))) poll(mine);
}

async function poll(mine) {
  let job;
  try {
    job = await get(`/v1/jobs/${mine.jobId}`);
  } catch (err) {
    if (mine !== current) return;
    $("job-error").textContent = err.message;
    if (err instanceof ApiError && (err.status === 401 || err.status === 404)) return;
    mine.timer = setTimeout(() => poll(mine), POLL_MS * 3); // transient (API restarting): keep trying
    return;
  }
  if (mine !== current) return; // another job was picked meanwhile
  if (await show(mine, job)) mine.timer = setTimeout(() => poll(mine), POLL_MS);
}

/** Show a job's status (and its results once done); true while it is still active. */
async function show(mine, job) {
  renderStatus(job);
  if (ACTIVE.has(job.state)) return true;
  refreshJobs();
  if (job.state === "done" && !mine.shownResults) {
    mine.shownResults = true;
    await renderResults(mine, job);
  }
  return false;
}

function renderStatus(job) {
  const state = $("job-state");
  state.textContent = job.state;
  state.className = `state state-${job.state}`;
  $("job-stage").textContent = job.stage + (job.attempts > 1 ? ` (attempt ${job.attempts})` : "");
  $("job-progress").value = job.progress_pct;
  $("job-error").textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";
  $("job-cancel").hidden = !ACTIVE.has(job.state);
  $("job").dataset.state = job.state;
}

function downloadName(jobId, variant, suffix) {
  return `${jobId}-v${variant}${suffix}`;
}

async function renderResults(mine, job) {
  const box = $("variants");
  box.replaceChildren();
  for (const r of job.results) {
    const video = el("video", { controls: true, playsinline: true, preload: "auto", class: "player" });
    const links = el("div", { class: "downloads" });
    const script = el("ol", { class: "plan-script" });
    const fig = el("figure", { class: "variant", "data-variant": r.variant },
      video,
      el("figcaption", {},
        el("strong", {}, `Variant ${r.variant}`),
        ` · ${r.width}×${r.height} · ${fmtSeconds(r.duration_s)} · planner ${r.planner}`
          + (r.preset ? ` · ${r.preset}` : "")),
      selfCheck(r.selfcheck), links, script);
    box.append(fig);
    // Media and sidecars are fetched with the key header (an <a href> or <video src> cannot send
    // it) and handed to the player and the download links as blob URLs.
    for (const [artifact, label, suffix] of ARTIFACTS) {
      const a = el("a", { class: "button secondary download", "data-artifact": artifact, "aria-disabled": "true" },
        label);
      links.append(a);
      getBlob(r.links[artifact]).then(async (blob) => {
        if (mine !== current) return;
        const url = URL.createObjectURL(blob);
        mine.urls.push(url);
        a.href = url;
        a.download = downloadName(job.job_id, r.variant, suffix);
        a.removeAttribute("aria-disabled");
        if (artifact === "video") video.src = url;
        if (artifact === "plan") showScript(script, await blob.text());
      }).catch((err) => {
        a.title = err.message;
        a.classList.add("failed");
      });
    }
  }
}

// The self-check of the rendered file: its status, and each warning (a failed check fails the job instead).
function selfCheck(report) {
  const box = el("div", { class: "selfcheck" });
  if (!report) return box;
  box.dataset.status = report.status;
  box.append(el("small", {}, `Self-check: ${report.status}`));
  if (report.warnings.length) box.append(el("ul", {}, ...report.warnings.map((w) => el("li", {}, w))));
  return box;
}

function showScript(list, planText) {
  try {
    const plan = JSON.parse(planText);
    list.replaceChildren(...plan.segments.map((s) =>
      el("li", {}, s.sentence, el("small", {}, ` (${fmtSeconds(s.duration_s)})`))));
  } catch (_) { /* the plan stays downloadable; the script list is a convenience */ }
}

export async function cancelCurrent() {
  if (!current) return;
  try {
    renderStatus(await request("DELETE", `/v1/jobs/${current.jobId}`));
  } catch (err) {
    $("job-error").textContent = err.message;
  }
}

function markSelectedRow() {
  for (const tr of document.querySelectorAll("#jobs tr")) {
    tr.classList.toggle("selected", Boolean(current) && tr.dataset.jobId === current.jobId);
  }
}

/** The key's recent jobs, newest first; refreshed while any of them is active. */
export async function refreshJobs() {
  clearTimeout(listTimer);
  let page;
  try {
    page = await get("/v1/jobs?limit=30");
  } catch (_) {
    return;
  }
  const editsOnly = $("jobs-edits-only").checked;
  const rows = page.items.filter((j) => !editsOnly || j.kind === "edit").map((j) => {
    const open = el("button", { type: "button", class: "link", title: j.job_id }, `${j.kind} ${j.job_id.slice(4, 12)}`);
    open.addEventListener("click", () => showJob(j.job_id));
    const tr = el("tr", { class: `state-${j.state}` },
      el("td", {}, open),
      el("td", {}, el("span", { class: `state state-${j.state}` }, j.state)),
      el("td", {}, j.state === "running" ? `${Math.round(j.progress_pct)}%` : ""),
      el("td", {}, fmtWhen(j.created_at)));
    tr.dataset.jobId = j.job_id;
    return tr;
  });
  $("jobs").replaceChildren(...rows);
  if (!rows.length) $("jobs").append(el("tr", {}, el("td", { colspan: "4", class: "hint" }, "No jobs yet.")));
  markSelectedRow();
  if (page.items.some((j) => ACTIVE.has(j.state))) listTimer = setTimeout(refreshJobs, LIST_POLL_MS);
}

export function clearJobs() {
  if (current) { clearTimeout(current.timer); current.stream.abort(); releaseUrls(); }
  current = null;
  clearTimeout(listTimer);
  $("jobs").replaceChildren();
  $("job").hidden = true;
  $("job-empty").hidden = false;
}

export function initJobs() {
  $("job-cancel").addEventListener("click", cancelCurrent);
  $("jobs-refresh").addEventListener("click", refreshJobs);
  $("jobs-edits-only").addEventListener("change", refreshJobs);
}
