// api.js — the gateway's JSON API as the page uses it (schemas/openapi.yaml).
//
// The login token (a JWT from POST /api/auth/login) is kept in
// sessionStorage: it survives the trip to the payment page and back in the
// same tab, and is gone when the tab closes.  Every failure becomes an
// ApiError carrying the API's {"error": {"code", "message"}}, so views show
// the gateway's own sentence instead of a bare status.

const TOKEN_KEY = 'tixgrid.token';
const EMAIL_KEY = 'tixgrid.email';
const REQUEST_TIMEOUT_MS = 15000;

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get email() { return sessionStorage.getItem(EMAIL_KEY); },
  set(token, email) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(EMAIL_KEY, email);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EMAIL_KEY);
  },
};

// One request; resolves to the parsed JSON (null for an empty body).
// opts: {method, body (an object, sent as JSON), auth (default true),
// headers, raw (resolve to the Response itself)}.
export async function api(path, opts = {}) {
  const headers = { Accept: 'application/json', ...(opts.headers || {}) };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.auth !== false && session.token) headers.Authorization = `Bearer ${session.token}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  let res;
  try {
    res = await fetch(path, {
      method: opts.method || 'GET',
      headers,
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      signal: controller.signal,
    });
  } catch (e) {
    throw new ApiError(0, 'network', `The server did not answer (${e.name === 'AbortError' ? 'timed out' : e.message}).`);
  } finally {
    clearTimeout(timer);
  }
  if (opts.raw) return res;
  return parse(res);
}

async function parse(res) {
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (res.ok) return body;
  if (res.status === 401) session.clear();
  const err = body && body.error;
  const retry = res.headers.get('Retry-After');
  const message = err && err.message ? err.message : `HTTP ${res.status}`;
  throw new ApiError(res.status, err ? err.code : `http_${res.status}`,
                     retry ? `${message} (try again in ${retry} s)` : message, body);
}

export async function login(email, password) {
  const r = await api('/api/auth/login', { method: 'POST', body: { email, password }, auth: false });
  session.set(r.token, email);
  return r;
}

export function register(email, password, name) {
  const body = { email, password };
  if (name) body.name = name;
  return api('/api/auth/register', { method: 'POST', body, auth: false });
}

// Money in minor units as people read it: 24900 EUR → "249.00 EUR".
export function money(minor, currency) {
  return `${(minor / 100).toFixed(2)} ${currency}`;
}
