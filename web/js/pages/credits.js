// Credits and usage: the balance, a chart of the last 30 days, storage and
// the ledger's transactions.
import { useState } from '../../vendor/hooks.js';
import { get } from '../api.js';
import { useEvents } from '../events.js';
import { t } from '../i18n.js';
import { Loading, bytes, html, number, useAsync, when } from '../ui.js';

/// The 30 days ending today (UTC, as the server counts), zero where idle.
function last30(daily) {
  const by = Object.fromEntries((daily || []).map((d) => [d.date, d]));
  const out = [];
  const today = new Date();
  for (let i = 29; i >= 0; i--) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    const key = d.toISOString().slice(0, 10);
    out.push({ date: key, credits_used: 0, generations: 0, images_created: 0, ...by[key] });
  }
  return out;
}

function Chart({ days }) {
  const max = Math.max(1, ...days.map((d) => d.credits_used));
  const w = 600;
  const h = 160;
  const bw = w / days.length;
  const total = days.reduce((s, d) => s + d.credits_used, 0);
  return html`<figure class="chart">
    <svg viewBox=${`0 0 ${w} ${h + 20}`} role="img" aria-label=${t('credits.chart_label', { total: number(total) })}>
      ${days.map((d, i) => {
        const bh = (d.credits_used / max) * h;
        return html`<rect x=${i * bw + 2} y=${h - bh} width=${bw - 4} height=${Math.max(bh, d.credits_used ? 1 : 0)} class="bar">
          <title>${d.date}: ${number(d.credits_used)} ${t('credits.unit')}, ${d.generations} ${t('credits.generations')}</title></rect>`;
      })}
      <line x1="0" x2=${w} y1=${h} y2=${h} class="axis" />
      <text x="0" y=${h + 16} class="tick">${days[0].date.slice(5)}</text>
      <text x=${w} y=${h + 16} class="tick" text-anchor="end">${days[days.length - 1].date.slice(5)}</text>
    </svg>
    <figcaption class="muted">${t('credits.chart_caption', { max: number(max) })}</figcaption>
  </figure>`;
}

export function Credits() {
  const [page, setPage] = useState(1);
  const [revision, setRevision] = useState(0);
  const credits = useAsync(() => get(`/users/me/credits?per_page=20&page=${page}`), [page, revision]);
  const usage = useAsync(() => get('/users/me/usage?period=30d').then((e) => e.data), [revision]);
  const storage = useAsync(() => get('/storage/usage').then((e) => e.data), [revision]);
  useEvents((ev) => ev.type === 'credits.updated' && setRevision((r) => r + 1));
  const c = credits.data && credits.data.data;
  const meta = credits.data && credits.data.meta;
  const u = usage.data;
  return html`<section class="page credits">
    <h1>${t('nav.credits')}</h1>
    <${Loading} state=${credits}>
      ${c &&
      html`<div class="stats-row">
        <div class="stat card"><span class="muted">${t('credits.available')}</span><strong data-credits=${c.available}>${number(c.available)}</strong></div>
        <div class="stat card"><span class="muted">${t('credits.balance')}</span><strong>${number(c.balance)}</strong></div>
        <div class="stat card"><span class="muted">${t('credits.reserved')}</span><strong>${number(c.reserved)}</strong></div>
      </div>`}
    </${Loading}>
    <h2>${t('credits.last30')}</h2>
    <${Loading} state=${usage}>
      ${u &&
      html`<${Chart} days=${last30(u.daily)} />
        <p class="muted">${t('credits.summary', {
          generations: number(u.summary.total_generations),
          credits: number(u.summary.total_credits_used),
          images: number(u.summary.total_images_created),
        })}</p>
        ${u.by_model.length > 0 &&
        html`<table><caption>${t('credits.by_model')}</caption>
          <thead><tr><th>${t('gen.model')}</th><th>${t('credits.generations')}</th><th>${t('credits.unit')}</th></tr></thead>
          <tbody>${u.by_model.map((m) => html`<tr><td>${m.model}</td><td>${number(m.generations)}</td><td>${number(m.credits_used)}</td></tr>`)}</tbody>
        </table>`}`}
    </${Loading}>
    <h2>${t('credits.storage')}</h2>
    <${Loading} state=${storage}>
      ${storage.data &&
      html`<p><progress max="100" value=${Math.min(100, storage.data.used_percentage)} aria-label=${t('credits.storage')}></progress>
        ${bytes(storage.data.used_bytes)} / ${bytes(storage.data.quota_bytes)} (${Number(storage.data.used_percentage).toFixed(1)}%)</p>`}
    </${Loading}>
    <h2>${t('credits.history')}</h2>
    ${c &&
    html`<table class="ledger">
      <thead><tr><th>${t('credits.when')}</th><th>${t('credits.what')}</th><th>${t('credits.amount')}</th><th>${t('credits.after')}</th></tr></thead>
      <tbody>${c.transactions.map(
        (x) => html`<tr key=${x.id}><td>${when(x.created_at)}</td><td>${x.description || x.type}</td>
          <td class=${x.amount < 0 ? 'neg' : 'pos'}>${x.amount > 0 ? '+' : ''}${number(x.amount)}</td><td>${number(x.balance_after)}</td></tr>`,
      )}</tbody>
    </table>
    ${meta &&
    html`<div class="row pager">
      <button type="button" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>${t('prev')}</button>
      <span>${page} / ${Math.max(1, Math.ceil(meta.total / meta.per_page))}</span>
      <button type="button" disabled=${page * meta.per_page >= meta.total} onClick=${() => setPage(page + 1)}>${t('next')}</button>
    </div>`}`}
  </section>`;
}
