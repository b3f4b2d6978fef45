// Plan and account: the catalogue, the current subscription with checkout,
// upgrade, downgrade, cancel and resume, and the profile.
import { useState } from '../../vendor/hooks.js';
import { get, patch, post } from '../api.js';
import { useEvents } from '../events.js';
import { t } from '../i18n.js';
import { ErrorNote, Field, Loading, bytes, html, number, toast, useAction, useAsync, when } from '../ui.js';

function Account({ me, onChanged }) {
  const [name, setName] = useState(me.name || '');
  const { busy, error, act } = useAction();
  const save = (e) => {
    e.preventDefault();
    act(async () => {
      await patch('/users/me', { name });
      toast(t('saved'));
      onChanged();
    });
  };
  const resend = () =>
    act(async () => {
      const env = await post('/auth/resend-verification', {});
      toast(env.message || t('auth.mail_sent'));
    });
  return html`<section class="card" aria-labelledby="account-title">
    <h2 id="account-title">${t('plan.account')}</h2>
    <p>${me.email} ${me.email_verified
      ? html`<span class="badge completed">${t('plan.verified')}</span>`
      : html`<span class="badge failed">${t('plan.unverified')}</span>
          <button type="button" onClick=${resend} disabled=${busy}>${t('plan.resend')}</button>`}</p>
    <p class="muted">${t('plan.storage', { used: bytes(me.storage_used), quota: bytes(me.storage_quota) })}</p>
    <form class="row" onSubmit=${save}>
      <${Field} label=${t('auth.name')} control=${(id) => html`<input id=${id} value=${name} maxlength="100" onInput=${(e) => setName(e.target.value)} />`} />
      <button type="submit" disabled=${busy}>${t('save')}</button>
    </form>
    <${ErrorNote} error=${error} />
  </section>`;
}

export function Plan() {
  const [cycle, setCycle] = useState('monthly');
  const [revision, setRevision] = useState(0);
  const plans = useAsync(() => get('/subscriptions/plans').then((e) => e.data), []);
  const current = useAsync(() => get('/subscriptions/current').then((e) => e.data), [revision]);
  const me = useAsync(() => get('/users/me').then((e) => e.data), [revision]);
  const { busy, error, act } = useAction();
  useEvents((ev) => (ev.type === 'subscription.updated' || ev.type === 'credits.updated') && setRevision((r) => r + 1));
  const refresh = () => setRevision((r) => r + 1);
  const sub = current.data;
  const tier = me.data && me.data.tier;
  const order = (plans.data || []).map((p) => p.name);
  const choose = (plan) =>
    act(async () => {
      if (!sub || ['cancelled', 'expired'].includes(sub.status)) {
        const env = await post('/subscriptions/checkout', { plan: plan.name, billing_cycle: cycle });
        const url = new URL(env.data.checkout_url, location.href);
        if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(t('plan.bad_checkout'));
        location.assign(url.href);
        return;
      }
      const up = order.indexOf(plan.name) > order.indexOf(sub.plan.name);
      const env = await post(up ? '/subscriptions/upgrade' : '/subscriptions/downgrade', { target_plan: plan.name });
      toast(env.data.message || t('saved'));
      refresh();
    });
  const cancel = () =>
    act(async () => {
      if (!confirm(t('plan.cancel_confirm'))) return;
      await post('/subscriptions/cancel', {});
      refresh();
    });
  const resume = () => act(async () => (await post('/subscriptions/resume', {}), refresh()));
  return html`<section class="page plan">
    <h1>${t('nav.plan')}</h1>
    <${Loading} state=${me}>${me.data && html`<${Account} me=${me.data} onChanged=${refresh} />`}</${Loading}>
    <${Loading} state=${current}>
      ${sub
        ? html`<div class="card" data-subscription=${sub.status}>
            <h2>${t('plan.current', { plan: sub.plan.display_name })}</h2>
            <p>${t('status.' + sub.status, {}, sub.status)} · ${t('plan.cycle_' + sub.billing_cycle, {}, sub.billing_cycle)}
              ${sub.current_period_end && ' · ' + t('plan.renews', { at: when(sub.current_period_end) })}</p>
            ${sub.pending_plan && html`<p class="muted">${t('plan.pending', { plan: sub.pending_plan })}</p>`}
            ${sub.cancel_at_period_end
              ? html`<p class="muted">${t('plan.ends')}</p><button type="button" onClick=${resume} disabled=${busy}>${t('plan.resume')}</button>`
              : html`<button type="button" class="danger" onClick=${cancel} disabled=${busy}>${t('plan.cancel')}</button>`}
          </div>`
        : html`<p class="muted">${t('plan.none', { tier: tier || 'free' })}</p>`}
    </${Loading}>
    <${ErrorNote} error=${error} />
    <div class="tabs" role="group" aria-label=${t('plan.cycle')}>
      ${['monthly', 'yearly'].map((c) => html`<button type="button" aria-pressed=${cycle === c} onClick=${() => setCycle(c)}>${t('plan.cycle_' + c)}</button>`)}
    </div>
    <${Loading} state=${plans}>
      <ul class="plans">
        ${(plans.data || []).map((p) => {
          const price = cycle === 'yearly' ? p.yearly_price : p.monthly_price;
          const mine = sub ? sub.plan.name === p.name : tier === p.name;
          return html`<li class=${'card plan-card' + (mine ? ' mine' : '')} key=${p.name} data-plan=${p.name}>
            <h3>${p.display_name}</h3>
            <p class="price">${price == null ? t('plan.contact') : price === 0 ? t('plan.free') : `$${price}`}
              ${price ? html`<small class="muted">/${t(cycle === 'yearly' ? 'plan.year' : 'plan.month')}</small>` : ''}</p>
            <ul class="muted small">
              <li>${t('plan.credits', { n: number(p.credits) })}</li>
              <li>${t('plan.storage_gb', { n: p.storage_gb })}</li>
              <li>${t('plan.queue', { n: p.queue_count })}</li>
            </ul>
            ${mine
              ? html`<span class="badge completed">${t('plan.yours')}</span>`
              : price
                ? html`<button type="button" class="primary" onClick=${() => choose(p)} disabled=${busy}>
                    ${sub && !['cancelled', 'expired'].includes(sub.status) ? t('plan.switch') : t('plan.checkout')}</button>`
                : ''}
          </li>`;
        })}
      </ul>
    </${Loading}>
  </section>`;
}
