// The live queue: the user's jobs with position, progress and results as
// the event socket reports them, cancellable; after a reload the socket
// resumes and the REST state fills in whatever it cannot replay.
import { useEffect, useState } from '../../vendor/hooks.js';
import { del, get } from '../api.js';
import { useEvents } from '../events.js';
import { t } from '../i18n.js';
import { follow } from '../router.js';
import { ErrorNote, Loading, html, number, toast, useAction, useAsync, when } from '../ui.js';

const ENDED = ['completed', 'failed', 'cancelled'];

/// Folds one event into a job's view.
function applyEvent(job, ev) {
  const d = ev.data || {};
  if (d.job_id !== job.job_id) return job;
  if (ENDED.includes(job.status) && ev.type === 'job.progress') return job;
  switch (ev.type) {
    case 'job.queued':
      return { ...job, status: 'queued', queue_position: d.queue_position, estimated_credits: d.estimated_credits };
    case 'job.started':
      return { ...job, status: 'processing', attempt: d.attempt };
    case 'job.requeued':
      return { ...job, status: 'queued', progress: 0 };
    case 'job.progress':
      return { ...job, status: 'processing', progress: d.percent, step: d.step, total_steps: d.total_steps, node: d.node };
    case 'job.completed':
      return { ...job, status: 'completed', progress: 100, images: d.images, credits_used: d.credits_used };
    case 'job.failed':
      return { ...job, status: 'failed', error: d.error, credits_used: d.credits_used, credits_refunded: d.credits_refunded };
    case 'job.cancelled':
      return { ...job, status: 'cancelled', credits_used: d.credits_used, credits_refunded: d.credits_refunded };
    default:
      return job;
  }
}

/// A job from `GET /queue/items/{id}` in the same shape the events build.
function fromDetail(d) {
  return {
    ...d,
    images: d.result ? d.result.images : undefined,
  };
}

const RANK = { queued: 0, processing: 1, completed: 2, failed: 2, cancelled: 2 };

/// Folds a REST answer into a job the events may have moved on since the
/// request left: an answer never takes a job back (a late "queued" must
/// not undo the "completed" an event brought meanwhile).
function withDetail(job, detail) {
  const d = fromDetail(detail);
  if ((RANK[d.status] ?? 0) < (RANK[job.status] ?? 0)) return job;
  if (d.status === job.status && (job.progress || 0) > (d.progress || 0)) d.progress = job.progress;
  return { ...job, ...d };
}

export function JobCard({ job: initial }) {
  const [job, setJob] = useState(initial);
  const { busy, error, act } = useAction();
  const refetch = () =>
    get(`/queue/items/${encodeURIComponent(initial.job_id)}`).then(
      (env) => setJob((j) => withDetail(j, env.data)),
      () => {},
    );
  // Events before this card mounted (a reload) come from the REST state.
  useEffect(() => {
    if (!ENDED.includes(initial.status)) refetch();
  }, [initial.job_id]);
  useEvents((ev) => {
    if (ev.type === 'connected' && ev.resync) refetch();
    else setJob((j) => applyEvent(j, ev));
  });
  const cancel = () =>
    act(async () => {
      const env = await del(`/queue/items/${encodeURIComponent(job.job_id)}`);
      setJob((j) => ({ ...j, ...env.data }));
      toast(t('queue.cancelled_refund', { credits: number(env.data.credits_refunded) }));
    });
  const live = !ENDED.includes(job.status);
  return html`<article class="job card" data-job=${job.job_id} data-status=${job.status}>
    <header class="row">
      <strong>${t('job.' + (job.job_type || 'job'), {}, job.job_type || '')}</strong>
      <span class=${'badge ' + job.status}>${t('status.' + job.status, {}, job.status)}</span>
      ${job.status === 'queued' && job.queue_position != null &&
      html`<span class="muted">${t('queue.position', { n: job.queue_position })}</span>`}
    </header>
    ${job.params && job.params.prompt && html`<p class="prompt">${job.params.prompt}</p>`}
    ${live &&
    html`<div class="row">
      <progress max="100" value=${job.progress || 0} aria-label=${t('queue.progress')}></progress>
      <span class="pct" data-progress=${job.progress || 0}>${job.progress || 0}%</span>
      <button type="button" onClick=${cancel} disabled=${busy}>${t('queue.cancel')}</button>
    </div>`}
    ${job.status === 'failed' && job.error &&
    html`<p class="error" role="alert">${job.error.message}${job.error.reason ? ` — ${job.error.reason}` : ''}</p>`}
    <${ErrorNote} error=${error} />
    ${job.images &&
    html`<div class="thumbs">
      ${job.images.map(
        (im) => html`<a href=${'/gallery?image=' + encodeURIComponent(im.image_id)} onClick=${follow}>
          <img src=${im.thumbnail_url} alt=${t('gallery.image')} width="128" height="128" loading="lazy" /></a>`,
      )}
    </div>`}
    <footer class="muted small">
      ${job.estimated_credits != null && t('queue.estimate', { credits: number(job.estimated_credits) })}
      ${job.credits_used != null && ' · ' + t('queue.used', { credits: number(job.credits_used) })}
      ${job.queued_at && ' · ' + when(job.queued_at)}
    </footer>
  </article>`;
}

export function Queue() {
  const [filter, setFilter] = useState('');
  const status = useAsync(() => get('/queue/status').then((e) => e.data), []);
  const items = useAsync(
    () => get('/queue/items?per_page=30' + (filter ? '&status=' + filter : '')).then((e) => e.data),
    [filter],
  );
  useEvents((ev) => {
    if (ev.type === 'job.queued' || (ev.type === 'connected' && ev.resync)) items.reload();
    if (ev.type.startsWith('job.') && ev.type !== 'job.progress') status.reload();
  });
  const positions = {};
  ((status.data && status.data.queued) || []).forEach((q) => (positions[q.job_id] = q.position));
  return html`<section class="page queue">
    <h1>${t('nav.queue')}</h1>
    ${status.data &&
    html`<p class="stats">
      ${t('queue.summary', {
        active: status.data.active_jobs,
        queued: status.data.queued_jobs,
        today: status.data.completed_today,
      })}
    </p>`}
    <div class="tabs" role="group" aria-label=${t('queue.filter')}>
      ${['', 'queued', 'processing', 'completed', 'failed'].map(
        (s) => html`<button type="button" aria-pressed=${filter === s} onClick=${() => setFilter(s)}>
          ${s ? t('status.' + s) : t('queue.all')}</button>`,
      )}
    </div>
    <${Loading} state=${items}>
      ${items.data && !items.data.length && html`<p class="muted">${t('queue.empty')}</p>`}
      <div class="jobs">
        ${(items.data || []).map(
          (j) => html`<${JobCard} key=${j.job_id}
            job=${{ ...fromDetail(j), queue_position: positions[j.job_id] ?? j.queue_position }} />`,
        )}
      </div>
    </${Loading}>
    <${ErrorNote} error=${status.error} />
  </section>`;
}
