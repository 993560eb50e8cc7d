// The console's one way to keysync: the HTTP API under /v1/, with the admin token held
// in this tab (sessionStorage: gone when the tab closes, never sent by the browser on
// its own, unlike a cookie) and sent as a bearer header. A lost connection is retried
// for reads (and said so); a write is never retried blindly.

const TOKEN_KEY = "keysync.console.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function keepToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// An answer that was not a success, in the API's words ({"error", "message"}), or the
// connection's failure (status 0).
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let connectionListener = () => {};
let unauthorizedListener = () => {};

// Told whether keysync can be reached: `listener(null)` when it can again, else a
// sentence to show.
export function onConnection(listener) {
  connectionListener = listener;
}

// Told when the token stops working (revoked while the tab is open).
export function onUnauthorized(listener) {
  unauthorizedListener = listener;
}

const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 10000];

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function send(method, path, body, headers) {
  const init = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store" };
  const current = token();
  if (current) {
    init.headers.Authorization = `Bearer ${current}`;
  }
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(path, init);
}

async function answer(response) {
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (response.ok) {
    return json;
  }
  const code = json && json.error ? json.error : `http_${response.status}`;
  const message = json && json.message ? json.message : `keysync answered ${response.status}`;
  const error = new ApiError(response.status, code, message);
  if (response.status === 401 && token()) {
    unauthorizedListener(error);
  }
  throw error;
}

// GET `path`: the JSON answer; retries while keysync cannot be reached.
export async function get(path) {
  for (let attempt = 0; ; attempt += 1) {
    let response;
    try {
      response = await send("GET", path);
    } catch {
      const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)];
      connectionListener(`Connection to keysync lost: retrying in ${Math.round(delay / 1000)} s.`);
      await sleep(delay);
      continue;
    }
    connectionListener(null);
    return answer(response);
  }
}

// A change (POST, PUT, DELETE): the JSON answer. Not retried: a lost connection is an
// ApiError of status 0, and the caller keeps what the user typed.
export async function change(method, path, body, headers = {}) {
  let response;
  try {
    response = await send(method, path, body, headers);
  } catch {
    connectionListener("Connection to keysync lost: the change may not have been made. Check, then try again.");
    throw new ApiError(0, "connection_lost", "Connection to keysync lost: the change may not have been made. Your values are kept: try again.");
  }
  connectionListener(null);
  return answer(response);
}

// GET `path`, or null when keysync has no such endpoint or field yet (404 of an
// unknown path): for what newer keysyncs add.
export async function getIfAvailable(path) {
  try {
    return await get(path);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404 && error.code === "not_found") {
      return null;
    }
    throw error;
  }
}

// A fresh Idempotency-Key, so a create retried by hand happens once.
export function idempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export function query(parameters) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(parameters)) {
    if (value !== undefined && value !== null && value !== "") {
      search.set(name, value);
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
