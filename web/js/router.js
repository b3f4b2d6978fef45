// Client-side routes on the History API; the host answers the page for
// each of them (host/src/http/web.rs PAGES), so reloads and mailed links work.
import { useEffect, useState } from '../vendor/hooks.js';

const EVENT = 'pingvas:navigate';

export function navigate(to, { replace = false } = {}) {
  history[replace ? 'replaceState' : 'pushState'](null, '', to);
  window.dispatchEvent(new Event(EVENT));
  window.scrollTo(0, 0);
}

export function useLocation() {
  const read = () => ({ path: location.pathname, query: new URLSearchParams(location.search) });
  const [loc, setLoc] = useState(read);
  useEffect(() => {
    const update = () => setLoc(read());
    window.addEventListener('popstate', update);
    window.addEventListener(EVENT, update);
    return () => {
      window.removeEventListener('popstate', update);
      window.removeEventListener(EVENT, update);
    };
  }, []);
  return loc;
}

/// onClick for same-origin <a href>: navigate without reloading.
export function follow(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.currentTarget;
  if (a.origin !== location.origin || a.target) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
}
