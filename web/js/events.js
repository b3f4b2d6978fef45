// The user's event socket (docs/websocket-events.md): one per tab, resumed
// after a reload or a drop from the last event id handled, so no progress
// is missed; a connection that could not replay everything since the last
// one (the first, or `complete: false`) asks listeners to refetch.
import { useEffect, useRef } from '../vendor/hooks.js';
import { session, socketToken, wsUrl } from './api.js';

const LAST = 'pingvas.last_event_id';
const listeners = new Set();
let socket = null;
let retry = 0;
let timer = null;
let wanted = false;

function emit(ev) {
  listeners.forEach((f) => f(ev));
}

async function open() {
  clearTimeout(timer);
  if (!wanted || socket) return;
  let token;
  try {
    token = await socketToken();
  } catch {
    token = null;
  }
  if (!wanted || socket || !token) return schedule();
  const last = localStorage.getItem(LAST);
  const ws = new WebSocket(wsUrl(last ? `?last_event_id=${encodeURIComponent(last)}` : ''), [
    'pingvas.v1',
    'bearer.' + token,
  ]);
  socket = ws;
  ws.onmessage = (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    if (ev.type === 'connected') {
      retry = 0;
      // Only a complete resume replays what happened while no socket was
      // open; otherwise (the first connection too) listeners refetch.
      emit({ type: 'connected', resync: !(ev.complete && ev.resumed_from) });
      return;
    }
    if (ev.id) localStorage.setItem(LAST, ev.id);
    emit(ev);
  };
  ws.onclose = () => {
    if (socket === ws) socket = null;
    emit({ type: 'disconnected' });
    schedule();
  };
}

function schedule() {
  if (!wanted) return;
  clearTimeout(timer);
  const delay = Math.min(15000, 500 * 2 ** retry++);
  timer = setTimeout(open, delay);
}

function sync(s) {
  wanted = !!s;
  if (!wanted) {
    localStorage.removeItem(LAST);
    if (socket) socket.close();
    socket = null;
    return;
  }
  open();
}

session.subscribe(sync);
sync(session.get());

/// Calls `handler(event)` for every event while the component is mounted.
export function useEvents(handler) {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const f = (ev) => ref.current(ev);
    listeners.add(f);
    return () => listeners.delete(f);
  }, []);
}
