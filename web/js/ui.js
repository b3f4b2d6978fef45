// The studio's shared pieces: the html tag, data hooks, error notes,
// form fields and formatting.
import { h } from '../vendor/preact.js';
import { useCallback, useEffect, useRef, useState } from '../vendor/hooks.js';
import htm from '../vendor/htm.js';
import { lang, t } from './i18n.js';

export const html = htm.bind(h);

/// What the host accepts as an uploaded or input image.
export const IMAGE_TYPES = 'image/png,image/jpeg,image/webp';

/// Runs `load` when `deps` change; `reload()` runs it again.
export function useAsync(load, deps) {
  const [state, setState] = useState({ loading: true, data: null, error: null });
  const seq = useRef(0);
  const run = useCallback(() => {
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true, error: null }));
    Promise.resolve()
      .then(load)
      .then(
        (data) => mine === seq.current && setState({ loading: false, data, error: null }),
        (error) => mine === seq.current && setState({ loading: false, data: null, error }),
      );
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}

/// An action's busy flag and error: `act(fn)` runs fn once at a time.
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const act = async (fn) => {
    if (busy) return undefined;
    setBusy(true);
    setError(null);
    try {
      return await fn();
    } catch (e) {
      setError(e);
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, setError, act };
}

export function ErrorNote({ error }) {
  if (!error) return null;
  const d = error.details || {};
  const why = d.message || d.reason;
  return html`<p class="error" role="alert" data-code=${error.code || ''}>
    ${error.message || String(error)}${d.field ? html` <code>${d.field}</code>` : ''}
    ${why && typeof why === 'string' ? html`<br /><small>${why}</small>` : ''}
  </p>`;
}

export function Loading({ state, children }) {
  if (state.error) return html`<${ErrorNote} error=${state.error} />`;
  if (state.loading && !state.data) return html`<p class="muted" aria-busy="true">${t('loading')}</p>`;
  return children;
}

let fieldSeq = 0;
/// A labelled control: `control(id)` renders the input with that id.
export function Field({ label, hint, control }) {
  const id = useRef('f' + ++fieldSeq).current;
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${control(id)}
    ${hint ? html`<small class="muted">${hint}</small>` : ''}
  </div>`;
}

const toasts = new Set();
export function toast(message) {
  toasts.forEach((f) => f(message));
}
export function Toasts() {
  const [items, setItems] = useState([]);
  useEffect(() => {
    const add = (m) => {
      const id = Math.random();
      setItems((xs) => [...xs, { id, m }]);
      setTimeout(() => setItems((xs) => xs.filter((x) => x.id !== id)), 4000);
    };
    toasts.add(add);
    return () => toasts.delete(add);
  }, []);
  return html`<div class="toasts" role="status" aria-live="polite">
    ${items.map((x) => html`<div class="toast" key=${x.id}>${x.m}</div>`)}
  </div>`;
}

export function bytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function when(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(lang === 'ko' ? 'ko-KR' : 'en-US');
}

export function number(n) {
  return Number(n || 0).toLocaleString(lang === 'ko' ? 'ko-KR' : 'en-US');
}
