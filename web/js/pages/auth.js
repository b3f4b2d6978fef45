// Sign in, sign up, forgotten password, and the pages of the mailed links.
import { useEffect, useState } from '../../vendor/hooks.js';
import { boot, post, session } from '../api.js';
import { t } from '../i18n.js';
import { follow, navigate } from '../router.js';
import { ErrorNote, Field, html, useAction } from '../ui.js';

/// When this tab sent the browser to a sign-in provider (sessionStorage).
export const OAUTH_STARTED = 'pingvas.oauth_started';

const input = (type, value, set, extra = {}) => (id) =>
  html`<input id=${id} type=${type} value=${value} onInput=${(e) => set(e.target.value)} required ...${extra} />`;

export function AuthPage({ mode, oauthError }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [name, setName] = useState('');
  const [done, setDone] = useState(null);
  const { busy, error, act } = useAction();

  const submit = (e) => {
    e.preventDefault();
    act(async () => {
      if (mode === 'forgot') {
        const env = await post('/auth/password-reset', { email });
        setDone(env.message || t('auth.reset_sent'));
        return;
      }
      if (mode === 'sign-up') {
        await post('/auth/register', { email, password, name });
      }
      const env = await post('/auth/login', { email, password });
      session.set({ access_token: env.data.access_token, refresh_token: env.data.refresh_token });
      navigate('/generate', { replace: true });
    });
  };

  const title = t('auth.' + mode);
  return html`<section class="auth card" aria-labelledby="auth-title">
    <h1 id="auth-title">${title}</h1>
    <${ErrorNote} error=${error || (mode === 'sign-in' && oauthError)} />
    ${done
      ? html`<p role="status" class="ok">${done}</p>`
      : html`<form onSubmit=${submit} data-form=${mode}>
          ${mode === 'sign-up' &&
          html`<${Field} label=${t('auth.name')} control=${input('text', name, setName, { autocomplete: 'name', maxlength: 100 })} />`}
          <${Field} label=${t('auth.email')}
            control=${input('email', email, setEmail, { autocomplete: 'email', name: 'email' })} />
          ${mode !== 'forgot' &&
          html`<${Field} label=${t('auth.password')} hint=${mode === 'sign-up' ? t('auth.password_rule') : ''}
            control=${input('password', password, setPassword, {
              autocomplete: mode === 'sign-up' ? 'new-password' : 'current-password',
              name: 'password',
              minlength: mode === 'sign-up' ? 8 : undefined,
            })} />`}
          <button class="primary" type="submit" disabled=${busy}>${busy ? t('working') : title}</button>
        </form>`}
    ${mode !== 'forgot' &&
    boot.providers.length > 0 &&
    html`<div class="oauth">
      <p class="muted">${t('auth.or')}</p>
      ${boot.providers.map(
        (p) => html`<a class="button" href=${`${boot.api}/auth/${p}`} data-provider=${p}
          onClick=${() => sessionStorage.setItem(OAUTH_STARTED, String(Date.now()))}>
          ${t('auth.with_' + p)}</a>`,
      )}
    </div>`}
    <p class="switch">
      ${mode === 'sign-in'
        ? html`<a href="/sign-up" onClick=${follow}>${t('auth.sign-up')}</a>${' · '}<a href="/forgot-password" onClick=${follow}>${t('auth.forgot')}</a>`
        : html`<a href="/sign-in" onClick=${follow}>${t('auth.have_account')}</a>`}
    </p>
  </section>`;
}

/// `/verify-email?token=…` from the mail: spends the token once.
export function VerifyEmail({ query }) {
  const token = query.get('token') || '';
  const [state, setState] = useState({ busy: true });
  useEffect(() => {
    post('/auth/verify-email', { token }).then(
      (env) => setState({ ok: env.message || t('auth.verified') }),
      (error) => setState({ error }),
    );
  }, [token]);
  return html`<section class="auth card">
    <h1>${t('auth.verify_title')}</h1>
    ${state.busy && html`<p class="muted" aria-busy="true">${t('working')}</p>`}
    ${state.ok && html`<p role="status" class="ok">${state.ok}</p>`}
    <${ErrorNote} error=${state.error} />
    <p><a href=${session.get() ? '/generate' : '/sign-in'} onClick=${follow}>${t('auth.continue')}</a></p>
  </section>`;
}

/// `/reset-password?token=…` from the mail: a new password.
export function ResetPassword({ query }) {
  const token = query.get('token') || '';
  const [password, setPassword] = useState('');
  const [done, setDone] = useState(null);
  const { busy, error, act } = useAction();
  const submit = (e) => {
    e.preventDefault();
    act(async () => {
      const env = await post('/auth/password-reset/confirm', { token, new_password: password });
      session.clear();
      setDone(env.message || t('auth.password_set'));
    });
  };
  return html`<section class="auth card">
    <h1>${t('auth.reset_title')}</h1>
    <${ErrorNote} error=${error} />
    ${done
      ? html`<p role="status" class="ok">${done}</p>
          <p><a href="/sign-in" onClick=${follow}>${t('auth.sign-in')}</a></p>`
      : html`<form onSubmit=${submit}>
          <${Field} label=${t('auth.new_password')} hint=${t('auth.password_rule')}
            control=${input('password', password, setPassword, { autocomplete: 'new-password', minlength: 8 })} />
          <button class="primary" type="submit" disabled=${busy}>${t('auth.set_password')}</button>
        </form>`}
  </section>`;
}
