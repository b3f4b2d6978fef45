// Workflows: the user's and the public ones, InvokeAI import, and a run
// form built from each workflow's declared inputs.
import { useState } from '../../vendor/hooks.js';
import { del, fileToBase64, get, post } from '../api.js';
import { t } from '../i18n.js';
import { ErrorNote, Field, Loading, html, toast, useAction, useAsync, when, IMAGE_TYPES } from '../ui.js';
import { JobCard } from './queue.js';

function InputControl({ input, value, onChange }) {
  return (id) => {
    if (input.type === 'image') {
      return html`<input id=${id} name=${input.name} type="file" accept=${IMAGE_TYPES} required=${input.default == null}
        onChange=${async (e) => e.target.files[0] && onChange(await fileToBase64(e.target.files[0]))} />`;
    }
    if (input.type === 'integer' || input.type === 'number') {
      return html`<input id=${id} name=${input.name} type="number" value=${value ?? ''} min=${input.min} max=${input.max}
        step=${input.type === 'integer' ? 1 : 'any'} onInput=${(e) => onChange(e.target.value === '' ? undefined : Number(e.target.value))} />`;
    }
    return html`<textarea id=${id} name=${input.name} rows="2" maxlength=${input.max_length} onInput=${(e) => onChange(e.target.value)}>${value ?? ''}</textarea>`;
  };
}

function RunForm({ workflow, onJob }) {
  const inputs = workflow.inputs || [];
  const [values, setValues] = useState(() => Object.fromEntries(inputs.filter((i) => i.default !== undefined).map((i) => [i.name, i.default])));
  const { busy, error, act } = useAction();
  const submit = (e) => {
    e.preventDefault();
    act(async () => {
      const env = await post('/generate/workflow', { workflow_id: workflow.id, inputs: values });
      onJob({ ...env.data, job_type: 'workflow' });
    });
  };
  return html`<form class="run" onSubmit=${submit} data-form="run-workflow">
    ${inputs.map(
      (i) => html`<${Field} key=${i.name} label=${i.name} hint=${[i.type, i.min != null && `≥ ${i.min}`, i.max != null && `≤ ${i.max}`].filter(Boolean).join(' · ')}
        control=${InputControl({ input: i, value: values[i.name], onChange: (v) => setValues((x) => ({ ...x, [i.name]: v })) })} />`,
    )}
    <${ErrorNote} error=${error} />
    <button class="primary" type="submit" disabled=${busy}>${busy ? t('working') : t('wf.run')}</button>
  </form>`;
}

function Import({ onDone }) {
  const [text, setText] = useState('');
  const [report, setReport] = useState(null);
  const { busy, error, setError, act } = useAction();
  const submit = (e) => {
    e.preventDefault();
    act(async () => {
      let body;
      try {
        body = JSON.parse(text);
      } catch (err) {
        setError({ message: t('wf.bad_json', { reason: err.message }) });
        return;
      }
      const env = await post('/workflows/import/invokeai', body);
      setReport(env.data);
      setText('');
      onDone();
    });
  };
  return html`<details class="card">
    <summary>${t('wf.import')}</summary>
    <form onSubmit=${submit} data-form="import">
      <${Field} label=${t('wf.import_file')} control=${(id) => html`<input id=${id} name="import-file" type="file" accept="application/json,.json"
        onChange=${async (e) => e.target.files[0] && setText(await e.target.files[0].text())} />`} />
      <${Field} label=${t('wf.import_json')} control=${(id) => html`<textarea id=${id} name="import-json" rows="6" class="mono" value=${text}
        onInput=${(e) => setText(e.target.value)} required></textarea>`} />
      <${ErrorNote} error=${error} />
      <button type="submit" class="primary" disabled=${busy}>${t('wf.import_go')}</button>
    </form>
    ${report &&
    html`<div role="status">
      <p class="ok">${t('wf.imported', { name: report.name })}</p>
      ${report.import &&
      html`<ul>${(report.import.models || []).map((m) => html`<li>${m.node} (${m.role}) → ${m.model} <span class="muted">${t('wf.matched_by', { by: m.matched_by })}</span></li>`)}
        ${(report.import.notes || []).map((n) => html`<li class="muted">${n}</li>`)}</ul>`}
    </div>`}
  </details>`;
}

export function Workflows() {
  const [scope, setScope] = useState('mine');
  const [revision, setRevision] = useState(0);
  const [running, setRunning] = useState(null);
  const [jobs, setJobs] = useState([]);
  const list = useAsync(() => get(`/workflows?per_page=100&scope=${scope}`).then((e) => e.data), [scope, revision]);
  const { error, act } = useAction();
  const remove = (w) =>
    act(async () => {
      if (!confirm(t('wf.delete_confirm', { name: w.name }))) return;
      await del(`/workflows/${w.id}`);
      setRevision((r) => r + 1);
    });
  const copy = (w) =>
    act(async () => {
      await post(`/workflows/${w.id}/copy`, {});
      toast(t('wf.copied'));
      setRevision((r) => r + 1);
    });
  return html`<section class="page workflows">
    <h1>${t('nav.workflows')}</h1>
    <div class="tabs" role="group" aria-label=${t('wf.scope')}>
      ${['mine', 'all'].map((s) => html`<button type="button" aria-pressed=${scope === s} onClick=${() => setScope(s)}>${t('wf.' + s)}</button>`)}
    </div>
    <${Import} onDone=${() => setRevision((r) => r + 1)} />
    <${ErrorNote} error=${error} />
    <${Loading} state=${list}>
      ${list.data && !list.data.length && html`<p class="muted">${t('wf.empty')}</p>`}
      <ul class="list">
        ${(list.data || []).map(
          (w) => html`<li class="card" key=${w.id} data-workflow=${w.id}>
            <div class="row spread wrap">
              <div><strong>${w.name}</strong> ${w.is_public && html`<span class="badge">${t('wf.public')}</span>`}
                <p class="muted small">${w.description} · ${when(w.updated_at)}</p></div>
              <div class="row">
                <button type="button" aria-expanded=${running === w.id} onClick=${() => setRunning(running === w.id ? null : w.id)}>${t('wf.run')}</button>
                ${w.is_owner
                  ? html`<button type="button" class="danger" onClick=${() => remove(w)}>${t('delete')}</button>`
                  : html`<button type="button" onClick=${() => copy(w)}>${t('wf.copy')}</button>`}
              </div>
            </div>
            ${running === w.id && html`<${RunForm} workflow=${w} onJob=${(j) => setJobs((xs) => [j, ...xs])} />`}
          </li>`,
        )}
      </ul>
    </${Loading}>
    <div class="jobs" aria-live="polite">${jobs.map((j) => html`<${JobCard} key=${j.job_id} job=${j} />`)}</div>
  </section>`;
}
