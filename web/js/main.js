// The studio's shell: the session, the navigation and the page of the path.
import { render } from '../vendor/preact.js';
import { useEffect, useErrorBoundary, useRef, useState } from '../vendor/hooks.js';
import { session, signOut } from './api.js';
import './events.js';
import { lang, t } from './i18n.js';
import { AuthPage, OAUTH_STARTED, ResetPassword, VerifyEmail } from './pages/auth.js';
import { follow, navigate, useLocation } from './router.js';
import { ErrorNote, Toasts, html } from './ui.js';

document.documentElement.lang = lang;

// An OAuth sign-in comes back with the session (or the error) in the
// fragment; it is read once and removed from the address bar. Only a tab
// that started a sign-in takes a session from a fragment: a link carrying
// someone else's tokens must not sign this browser into their account.
const fragment = new URLSearchParams(location.hash.slice(1));
const started = Number(sessionStorage.getItem(OAUTH_STARTED) || 0);
const expected = started > 0 && Date.now() - started < 15 * 60 * 1000;
sessionStorage.removeItem(OAUTH_STARTED);
export const oauthError = fragment.get('error')
  ? { code: fragment.get('error'), message: fragment.get('error_description') || fragment.get('error') }
  : null;
if (fragment.get('access_token') && expected) {
  session.set({
    access_token: fragment.get('access_token'),
    refresh_token: fragment.get('refresh_token'),
  });
}
if (location.hash) history.replaceState(null, '', location.pathname + location.search);

// The signed-in pages load on first use: the sign-in page's modules alone
// are on the first paint's path (the host preloads exactly those).
const PAGES = {
  '/generate': () => import('./pages/generate.js').then((m) => m.Generate),
  '/queue': () => import('./pages/queue.js').then((m) => m.Queue),
  '/gallery': () => import('./pages/gallery.js').then((m) => m.Gallery),
  '/workflows': () => import('./pages/workflows.js').then((m) => m.Workflows),
  '/credits': () => import('./pages/credits.js').then((m) => m.Credits),
  '/plan': () => import('./pages/plan.js').then((m) => m.Plan),
  '/plugins': () => import('./pages/plugins.js').then((m) => m.Plugins),
};

function Lazy({ load, ...props }) {
  const [state, setState] = useState({});
  useEffect(() => {
    let live = true;
    load().then(
      (Page) => live && setState({ Page }),
      // A page of an older build the host no longer serves: reload.
      () => live && setState({ error: { code: 'RELOAD', message: t('error.reload') } }),
    );
    return () => (live = false);
  }, [load]);
  if (state.error) return html`<${ErrorNote} error=${state.error} />`;
  if (!state.Page) return html`<p class="muted" aria-busy="true">${t('loading')}</p>`;
  return html`<${state.Page} ...${props} />`;
}
const PUBLIC = { '/reset-password': ResetPassword, '/verify-email': VerifyEmail };
const NAV = ['/generate', '/queue', '/gallery', '/workflows', '/credits', '/plan', '/plugins'];

function Nav({ path }) {
  const [open, setOpen] = useState(false);
  return html`<header class="top">
    <a class="brand" href="/generate" onClick=${follow}>Pingvas Studio</a>
    <button class="menu" aria-expanded=${open} aria-controls="nav" onClick=${() => setOpen(!open)}>
      ${t('nav.menu')}
    </button>
    <nav id="nav" class=${open ? 'open' : ''} aria-label=${t('nav.label')}>
      ${NAV.map(
        (p) => html`<a href=${p} onClick=${(e) => (setOpen(false), follow(e))}
          aria-current=${path === p ? 'page' : undefined}>${t('nav.' + p.slice(1))}</a>`,
      )}
      <button class="link" onClick=${() => (signOut(), navigate('/sign-in'))}>${t('nav.sign_out')}</button>
    </nav>
  </header>`;
}

/// A page that throws while rendering shows what went wrong, not a blank
/// screen; the rest of the studio stays usable.
function Guarded({ children }) {
  const [error, reset] = useErrorBoundary();
  useEffect(() => error && console.error(error), [error]);
  if (!error) return children;
  return html`<${ErrorNote} error=${{ code: 'CLIENT_ERROR', message: t('error.client'), details: { message: String(error.message || error) } }} />
    <button type="button" onClick=${reset}>${t('error.retry')}</button>`;
}

function App() {
  const { path, query } = useLocation();
  const [signedIn, setSignedIn] = useState(!!session.get());
  useEffect(() => session.subscribe((s) => setSignedIn(!!s)), []);
  // Once signed in, fetch the other pages in the background.
  useEffect(() => {
    if (signedIn) setTimeout(() => Object.values(PAGES).forEach((load) => load().catch(() => {})), 0);
  }, [signedIn]);
  useEffect(() => {
    if (signedIn && ['/', '/sign-in', '/sign-up'].includes(path)) navigate('/generate', { replace: true });
    if (!signedIn && (PAGES[path] || path === '/')) navigate('/sign-in', { replace: true });
  }, [signedIn, path]);
  // After a client-side navigation the focus starts at the new page's
  // content, as after a page load (the old focus may be gone).
  const firstRender = useRef(true);
  useEffect(() => {
    if (firstRender.current) firstRender.current = false;
    else document.getElementById('main')?.focus({ preventScroll: true });
  }, [path]);
  useEffect(() => {
    document.title = `${t('nav.' + (path.slice(1) || 'generate'), {}, 'Pingvas')} · Pingvas Studio`;
    performance.mark('pingvas:page');
  }, [path]);

  let page;
  if (PUBLIC[path]) {
    const P = PUBLIC[path];
    page = html`<${P} query=${query} />`;
  } else if (!signedIn || !PAGES[path]) {
    const mode = path === '/sign-up' ? 'sign-up' : path === '/forgot-password' ? 'forgot' : 'sign-in';
    page = html`<${AuthPage} mode=${mode} oauthError=${oauthError} />`;
  } else {
    page = html`<${Lazy} load=${PAGES[path]} query=${query} key=${path} />`;
  }
  return html`${signedIn && PAGES[path] ? html`<${Nav} path=${path} />` : ''}
    <main id="main" tabindex="-1"><${Guarded} key=${path}>${page}</${Guarded}></main>
    <${Toasts} />`;
}

const root = document.getElementById('app');
root.textContent = ''; // the splash shown while the modules load
render(html`<${App} />`, root);
