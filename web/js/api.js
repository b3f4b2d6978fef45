// The REST API client: the session in localStorage, bearer tokens that
// refresh themselves once, and every failure as an ApiError carrying the
// envelope's code and (localised) message.
import { lang, t } from './i18n.js';

export const boot = JSON.parse(document.getElementById('boot').textContent);
const API = boot.api;
const KEY = 'pingvas.session';
const listeners = new Set();

export const session = {
  get() {
    try {
      return JSON.parse(localStorage.getItem(KEY));
    } catch {
      return null;
    }
  },
  set(s) {
    localStorage.setItem(KEY, JSON.stringify(s));
    listeners.forEach((f) => f(s));
  },
  clear() {
    localStorage.removeItem(KEY);
    listeners.forEach((f) => f(null));
  },
  subscribe(f) {
    listeners.add(f);
    return () => listeners.delete(f);
  },
};
// Another tab signed in or out.
window.addEventListener('storage', (e) => {
  if (e.key === KEY) listeners.forEach((f) => f(session.get()));
});

export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.retryAfter = retryAfter;
  }
}

async function envelope(res) {
  let env = null;
  try {
    env = await res.json();
  } catch {
    // not JSON: a proxy's page, a dropped connection
  }
  if (env && env.success) return env;
  if (env && env.error) {
    const e = env.error;
    throw new ApiError(res.status, e.code, e.message, e.details, res.headers.get('retry-after'));
  }
  throw new ApiError(res.status, 'HTTP_' + res.status, t('error.http', { status: res.status }));
}

function headers(token, json) {
  const h = { 'accept-language': lang };
  if (json) h['content-type'] = 'application/json';
  if (token) h.authorization = 'Bearer ' + token;
  return h;
}

async function send(method, path, body, token) {
  const form = body instanceof FormData;
  let res;
  try {
    res = await fetch(API + path, {
      method,
      headers: headers(token, body !== undefined && !form),
      body: body === undefined ? undefined : form ? body : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'NETWORK', t('error.network'));
  }
  return envelope(res);
}

// Refresh tokens rotate and a spent one revokes its family, so two tabs
// must never refresh with the same token: one at a time (Web Locks), and
// a tab that waited uses what the other tab stored.
async function refreshed(stale) {
  const run = async () => {
    const s = session.get();
    if (!s || !s.refresh_token) throw new ApiError(401, 'UNAUTHORIZED', t('error.signed_out'));
    if (s.access_token !== stale) return s.access_token;
    try {
      const env = await send('POST', '/auth/refresh', { refresh_token: s.refresh_token });
      const next = {
        ...s,
        access_token: env.data.access_token,
        refresh_token: env.data.refresh_token || s.refresh_token,
      };
      session.set(next);
      return next.access_token;
    } catch (e) {
      if (e.status === 401) session.clear();
      throw e;
    }
  };
  return navigator.locks ? navigator.locks.request('pingvas-refresh', run) : run();
}

export async function api(method, path, body) {
  const token = session.get()?.access_token;
  try {
    return await send(method, path, body, token);
  } catch (e) {
    if (token && e.status === 401 && ['TOKEN_EXPIRED', 'INVALID_TOKEN'].includes(e.code)) {
      return send(method, path, body, await refreshed(token));
    }
    throw e;
  }
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body === undefined ? {} : body);
export const patch = (path, body) => api('PATCH', path, body);
export const del = (path) => api('DELETE', path);

/// A token for the event socket, fresh enough to open it.
export async function socketToken() {
  await get('/users/me');
  return session.get()?.access_token;
}

export function wsUrl(query) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${API}/ws${query}`;
}

export function signOut() {
  const s = session.get();
  session.clear();
  if (s?.refresh_token) {
    send('POST', '/auth/logout', { refresh_token: s.refresh_token }, s.access_token).catch(() => {});
  }
}

// An image as the base64 the generation API takes.
export function fileToBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}
