// Plugins: browse the registry, publish a component with its manifest,
// and yank versions of your own.
import { useState } from '../../vendor/hooks.js';
import { del, get, post } from '../api.js';
import { t } from '../i18n.js';
import { ErrorNote, Field, Loading, bytes, html, toast, useAction, useAsync, when } from '../ui.js';

const KINDS = ['node', 'workflow', 'billing'];

function Versions({ plugin }) {
  const versions = useAsync(() => get(`/plugins/${encodeURIComponent(plugin.name)}/versions`).then((e) => e.data), [plugin.name]);
  const { busy, error, act } = useAction();
  const yank = (v) =>
    act(async () => {
      if (!confirm(t('plugins.yank_confirm', { v: `${plugin.name}@${v.version}` }))) return;
      await del(`/plugins/${encodeURIComponent(plugin.name)}/versions/${encodeURIComponent(v.version)}`);
      versions.reload();
    });
  return html`<${Loading} state=${versions}>
    <table>
      <thead><tr><th>${t('plugins.version')}</th><th>${t('plugins.stage')}</th><th>${t('plugins.size')}</th><th>${t('plugins.published')}</th><th></th></tr></thead>
      <tbody>${(versions.data || []).map(
        (v) => html`<tr key=${v.version} data-version=${v.version}>
          <td>${v.version} ${v.yanked && html`<span class="badge failed">${t('plugins.yanked')}</span>`}</td>
          <td>${v.node_kind || '—'}</td><td>${bytes(v.size_bytes)}</td><td>${when(v.created_at)}</td>
          <td>${plugin.is_owner && !v.yanked && html`<button type="button" class="danger" onClick=${() => yank(v)} disabled=${busy}>${t('plugins.yank')}</button>`}</td>
        </tr>`,
      )}</tbody>
    </table>
    <${ErrorNote} error=${error} />
  </${Loading}>`;
}

function Publish({ onDone }) {
  const [m, setM] = useState({ name: '', version: '0.1.0', kind: 'node', description: '', visibility: 'private' });
  const [file, setFile] = useState(null);
  const { busy, error, act } = useAction();
  const set = (k) => (e) => setM((x) => ({ ...x, [k]: e.target.value }));
  const submit = (e) => {
    e.preventDefault();
    act(async () => {
      const form = new FormData();
      form.append('manifest', JSON.stringify(m));
      form.append('component', file, file.name);
      const env = await post('/plugins', form);
      toast(t('plugins.published_ok', { v: `${env.data.plugin.name}@${env.data.version.version}` }));
      onDone();
    });
  };
  return html`<details class="card">
    <summary>${t('plugins.publish')}</summary>
    <form onSubmit=${submit} data-form="publish">
      <div class="grid2">
        <${Field} label=${t('plugins.name')} control=${(id) => html`<input id=${id} name="name" required pattern="[a-z][a-z0-9-]{1,63}" value=${m.name} onInput=${set('name')} />`} />
        <${Field} label=${t('plugins.version')} control=${(id) => html`<input id=${id} name="version" required value=${m.version} onInput=${set('version')} />`} />
        <${Field} label=${t('plugins.kind')} control=${(id) => html`<select id=${id} value=${m.kind} onChange=${set('kind')}>
          ${KINDS.map((k) => html`<option value=${k}>${k}</option>`)}</select>`} />
        <${Field} label=${t('plugins.visibility')} control=${(id) => html`<select id=${id} value=${m.visibility} onChange=${set('visibility')}>
          <option value="private">${t('plugins.private')}</option><option value="public">${t('plugins.public')}</option></select>`} />
      </div>
      <${Field} label=${t('plugins.description')} control=${(id) => html`<input id=${id} value=${m.description} maxlength="500" onInput=${set('description')} />`} />
      <${Field} label=${t('plugins.component')} control=${(id) => html`<input id=${id} name="component" type="file" accept=".wasm,application/wasm" required
        onChange=${(e) => setFile(e.target.files[0] || null)} />`} />
      <${ErrorNote} error=${error} />
      <button type="submit" class="primary" disabled=${busy || !file}>${t('plugins.publish_go')}</button>
    </form>
  </details>`;
}

export function Plugins() {
  const [kind, setKind] = useState('');
  const [revision, setRevision] = useState(0);
  const [open, setOpen] = useState(null);
  const list = useAsync(() => get(`/plugins?per_page=100${kind ? '&kind=' + kind : ''}`).then((e) => e.data), [kind, revision]);
  return html`<section class="page plugins">
    <h1>${t('nav.plugins')}</h1>
    <${Publish} onDone=${() => setRevision((r) => r + 1)} />
    <div class="tabs" role="group" aria-label=${t('plugins.kind')}>
      ${['', ...KINDS].map((k) => html`<button type="button" aria-pressed=${kind === k} onClick=${() => setKind(k)}>${k || t('queue.all')}</button>`)}
    </div>
    <${Loading} state=${list}>
      ${list.data && !list.data.length && html`<p class="muted">${t('plugins.empty')}</p>`}
      <ul class="list">
        ${(list.data || []).map(
          (p) => html`<li class="card" key=${p.name} data-plugin=${p.name}>
            <div class="row spread wrap">
              <div><strong>${p.name}</strong>${p.latest_version && html` <span class="muted">@${p.latest_version}</span>`}
                <span class="badge">${p.kind}</span> <span class="badge">${t('plugins.' + p.visibility, {}, p.visibility)}</span>
                <p class="muted small">${p.description}</p></div>
              <button type="button" aria-expanded=${open === p.name} onClick=${() => setOpen(open === p.name ? null : p.name)}>${t('plugins.versions')}</button>
            </div>
            ${open === p.name && html`<${Versions} plugin=${p} />`}
          </li>`,
        )}
      </ul>
    </${Loading}>
  </section>`;
}
