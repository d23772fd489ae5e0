// The HTTP side of the UI: JSON calls to /api/v1 in the server's error shape, one session refresh on a 401 before
// asking the user to log in, and job events over Server-Sent Events (with polling when too many streams are open).

// Relative to the page, so the UI also works behind a reverse proxy that serves sdrest under a sub-path.
const BASE = "api/v1/";
export const TERMINAL = ["completed", "failed", "cancelled"];

/** An error answer: `code`, `message` and, for a bad field, its JSON path (`$.width`). */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_" + status;
    this.field = error.field || null;
  }
}

let authNeeded = () => {};
let refreshing = null;

/** Called when a request needs a login that a session refresh could not give. */
export function onAuthNeeded(handler) {
  authNeeded = handler;
}

function refreshSession() {
  // One refresh for every request that got a 401 at the same moment.
  refreshing ??= fetch(BASE + "auth/refresh", { method: "POST", credentials: "same-origin" })
    .then((r) => r.ok)
    .catch(() => false)
    .finally(() => setTimeout(() => (refreshing = null), 0));
  return refreshing;
}

/** `api("jobs?limit=5")`, `api("generate", {method: "POST", body})` (`text` for a plain-text body): the decoded JSON,
 * or throws ApiError. */
export async function api(path, { method = "GET", body, text, raw = false, signal } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  } else if (text !== undefined) {
    init.headers["Content-Type"] = "text/plain; charset=utf-8";
    init.body = text;
  }
  let response = await fetch(BASE + path, init);
  if (response.status === 401 && !path.startsWith("auth/")) {
    if (await refreshSession()) response = await fetch(BASE + path, init);
    if (response.status === 401) authNeeded();
  }
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

/** A URL the server gave (`/api/v1/jobs/…/output/x.png`), made relative to the page like every other call. */
export function href(url) {
  return url.startsWith("/api/v1/") ? url.slice(1) : url;
}

const MAX_STREAMS = 3; // browsers allow 6 connections per host over HTTP/1.1; keep room for ordinary requests
let streams = 0;

/**
 * Follow a job: `on` has handlers named after the events (queued, started, loading, loaded, progress, preview,
 * hashing, completed, failed, cancelled) and `end(type, data)`. Returns `{close()}`.
 */
export function watch(id, on) {
  let source = null;
  let timer = null;
  let closed = false;
  const emit = (type, data) => on[type] && on[type](data);
  const close = () => {
    closed = true;
    clearTimeout(timer);
    if (source) {
      source.close();
      source = null;
      streams--;
    }
  };
  const finish = (type, data) => {
    if (closed) return;
    close();
    emit(type, data);
    on.end && on.end(type, data);
  };
  const poll = async () => {
    if (closed) return;
    try {
      const job = await api(`jobs/${id}`);
      if (TERMINAL.includes(job.status)) return finish(job.status, job);
      if (job.status === "queued") emit("queued", { position: job.position });
      else if (job.progress) emit("progress", job.progress);
    } catch (e) {
      if (e.status === 404) return finish("failed", { error: { message: "the job is gone" } });
    }
    timer = setTimeout(poll, 1500);
  };
  const stream = () => {
    streams++;
    source = new EventSource(`${BASE}jobs/${id}/events`);
    for (const type of ["queued", "started", "loading", "loaded", "progress", "preview", "hashing"]) {
      source.addEventListener(type, (e) => emit(type, JSON.parse(e.data)));
    }
    for (const type of TERMINAL) source.addEventListener(type, (e) => finish(type, JSON.parse(e.data)));
    source.onerror = () => {
      // A dropped connection is retried by EventSource itself; a refused one (401, 404) is closed: poll instead.
      if (!closed && source && source.readyState === EventSource.CLOSED) {
        source = null;
        streams--;
        poll();
      }
    };
  };
  if (streams < MAX_STREAMS) stream();
  else poll();
  return { close };
}
