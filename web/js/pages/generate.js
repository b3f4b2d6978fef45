// Generate: text-to-image, image-to-image, upscale and inpaint, with the
// catalogue's models (locked ones shown), LoRAs and pre/post nodes.
import { useEffect, useMemo, useRef, useState } from '../../vendor/hooks.js';
import { boot, fileToBase64, get, post } from '../api.js';
import { t } from '../i18n.js';
import { SchemaForm, defaults } from '../schema_form.js';
import { ErrorNote, Field, Loading, html, useAction, useAsync, IMAGE_TYPES } from '../ui.js';
import { JobCard } from './queue.js';

const MODES = ['text-to-image', 'image-to-image', 'upscale', 'inpaint'];
export const REUSE = 'pingvas.reuse';

function modelLabel(m) {
  if (!m.is_available) return `🔒 ${m.display_name} (${m.min_tier}+)`;
  if (m.can_run_now === false) return `${m.display_name} — ${t('gen.no_worker')}`;
  return m.display_name;
}

function ModelSelect({ models, value, onChange }) {
  return (id) => html`<select id=${id} name="model" value=${value} onChange=${(e) => onChange(e.target.value)}>
    ${models.map((m) => html`<option value=${m.name} disabled=${!m.is_available}>${modelLabel(m)}</option>`)}
  </select>`;
}

/// The source image: a file from the device, or an image of the gallery
/// (`?source=<id>`).
function SourcePicker({ source, onChange }) {
  return html`<div class="field">
    <label for="source-file">${t('gen.source')}</label>
    <input id="source-file" type="file" accept=${IMAGE_TYPES}
      onChange=${async (e) => {
        const file = e.target.files[0];
        if (file) onChange({ data: await fileToBase64(file), preview: URL.createObjectURL(file) });
      }} />
    ${source && html`<img class="source-preview" src=${source.preview} alt=${t('gen.source')} />`}
  </div>`;
}

/// A brush over the source image; the mask is white where it repaints.
function MaskBrush({ source, onMask }) {
  const canvas = useRef(null);
  const [size, setSize] = useState(32);
  const drawing = useRef(false);
  useEffect(() => {
    const img = new Image();
    img.onload = () => {
      const c = canvas.current;
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      c.getContext('2d').clearRect(0, 0, c.width, c.height);
      onMask(null);
    };
    img.src = source.preview;
  }, [source.preview]);
  const paint = (e) => {
    if (!drawing.current) return;
    const c = canvas.current;
    const r = c.getBoundingClientRect();
    const x = ((e.clientX - r.left) * c.width) / r.width;
    const y = ((e.clientY - r.top) * c.height) / r.height;
    const g = c.getContext('2d');
    g.fillStyle = 'rgba(255,255,255,1)';
    g.beginPath();
    g.arc(x, y, (size * c.width) / r.width / 2, 0, Math.PI * 2);
    g.fill();
  };
  const finish = () => {
    if (!drawing.current) return;
    drawing.current = false;
    const c = canvas.current;
    const out = document.createElement('canvas');
    out.width = c.width;
    out.height = c.height;
    const g = out.getContext('2d');
    g.fillStyle = '#000';
    g.fillRect(0, 0, c.width, c.height);
    g.drawImage(c, 0, 0);
    onMask(out.toDataURL('image/png'));
  };
  const clear = () => {
    const c = canvas.current;
    c.getContext('2d').clearRect(0, 0, c.width, c.height);
    onMask(null);
  };
  return html`<div class="field">
    <span class="label">${t('gen.mask')}</span>
    <div class="mask-stage">
      <img src=${source.preview} alt="" />
      <canvas ref=${canvas} aria-label=${t('gen.mask_hint')} role="img"
        onPointerDown=${(e) => {
          drawing.current = true;
          e.currentTarget.setPointerCapture(e.pointerId);
          paint(e);
        }}
        onPointerMove=${paint} onPointerUp=${finish} onPointerCancel=${finish}></canvas>
    </div>
    <div class="row">
      <label>${t('gen.brush')} <input type="range" min="4" max="160" value=${size}
        onInput=${(e) => setSize(Number(e.target.value))} /></label>
      <button type="button" onClick=${clear}>${t('gen.clear_mask')}</button>
    </div>
    <small class="muted">${t('gen.mask_hint')}</small>
  </div>`;
}

function Loras({ loras, available, onChange }) {
  const add = () => available[0] && onChange([...loras, { name: available[0].name, weight: 0.8 }]);
  return html`<fieldset>
    <legend>LoRA</legend>
    ${loras.map(
      (l, i) => html`<div class="row" key=${i}>
        <select aria-label="LoRA" value=${l.name}
          onChange=${(e) => onChange(loras.map((x, j) => (j === i ? { ...x, name: e.target.value } : x)))}>
          ${available.map((m) => html`<option value=${m.name} disabled=${!m.is_available}>${modelLabel(m)}</option>`)}
        </select>
        <input type="number" aria-label=${t('gen.weight')} min="-2" max="2" step="0.05" value=${l.weight}
          onInput=${(e) => onChange(loras.map((x, j) => (j === i ? { ...x, weight: Number(e.target.value) } : x)))} />
        <button type="button" onClick=${() => onChange(loras.filter((_, j) => j !== i))}>${t('remove')}</button>
      </div>`,
    )}
    ${available.length
      ? html`<button type="button" onClick=${add}>${t('gen.add_lora')}</button>`
      : html`<small class="muted">${t('gen.no_loras')}</small>`}
  </fieldset>`;
}

/// Pre- or post-nodes: published node plugins of that stage, each with a
/// form from its parameters schema.
function Nodes({ stage, plugins, nodes, onChange }) {
  const [pick, setPick] = useState('');
  const { error, act } = useAction();
  const usable = plugins.filter((p) => p.stage === stage);
  const add = () =>
    act(async () => {
      const p = usable.find((x) => x.name === pick) || usable[0];
      if (!p) return;
      onChange([...nodes, { name: p.name, version: p.version, schema: p.schema, parameters: defaults(p.schema) }]);
    });
  return html`<fieldset>
    <legend>${t('gen.' + stage + '_nodes')}</legend>
    <${ErrorNote} error=${error} />
    ${nodes.map(
      (n, i) => html`<div class="node" key=${i}>
        <div class="row"><strong>${n.name}@${n.version}</strong>
          <button type="button" onClick=${() => onChange(nodes.filter((_, j) => j !== i))}>${t('remove')}</button></div>
        <${SchemaForm} schema=${n.schema} value=${n.parameters}
          onChange=${(v) => onChange(nodes.map((x, j) => (j === i ? { ...x, parameters: v } : x)))} />
      </div>`,
    )}
    ${usable.length
      ? html`<div class="row">
          <select aria-label=${t('gen.' + stage + '_nodes')} value=${pick} onChange=${(e) => setPick(e.target.value)}>
            ${usable.map((p) => html`<option value=${p.name}>${p.name}@${p.version} — ${p.description}</option>`)}
          </select>
          <button type="button" onClick=${add}>${t('gen.add_node')}</button>
        </div>`
      : html`<small class="muted">${t('gen.no_nodes')}</small>`}
  </fieldset>`;
}

async function loadNodePlugins() {
  const list = await get('/plugins?kind=node&per_page=100');
  const out = [];
  await Promise.all(
    list.data
      .filter((p) => p.latest_version)
      .map(async (p) => {
        const versions = await get(`/plugins/${encodeURIComponent(p.name)}/versions`);
        const v = versions.data.find((x) => x.version === p.latest_version);
        if (v && !v.yanked && v.node_kind) {
          out.push({ name: p.name, version: v.version, stage: v.node_kind, schema: v.parameters_schema, description: p.description });
        }
      }),
  );
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

function initial() {
  const base = {
    prompt: '', negative_prompt: '', model: '', width: 512, height: 512, steps: 20, cfg_scale: 7,
    sampler: 'euler_a', seed: -1, batch_size: 1, strength: 0.75, scale: 2, upscaler: '', loras: [],
  };
  try {
    const reuse = JSON.parse(sessionStorage.getItem(REUSE));
    sessionStorage.removeItem(REUSE);
    if (reuse) return { ...base, ...reuse };
  } catch {
    // nothing to reuse
  }
  return base;
}

export function Generate({ query }) {
  const [mode, setMode] = useState(MODES.includes(query.get('mode')) ? query.get('mode') : 'text-to-image');
  const [f, setF] = useState(initial);
  const set = (k) => (v) => setF((x) => ({ ...x, [k]: v }));
  const [source, setSource] = useState(null);
  const [mask, setMask] = useState(null);
  const [pre, setPre] = useState([]);
  const [postNodes, setPostNodes] = useState([]);
  const [board, setBoard] = useState('');
  const [jobs, setJobs] = useState([]);
  const { busy, error, act } = useAction();

  const models = useAsync(() => get('/models').then((e) => e.data), []);
  const nodePlugins = useAsync(loadNodePlugins, []);
  const boards = useAsync(() => get('/boards').then((e) => e.data), []);

  // A gallery image as the source (`?source=<id>`).
  const sourceId = query.get('source');
  useEffect(() => {
    if (!sourceId) return;
    get(`/images/${encodeURIComponent(sourceId)}`).then(
      (env) => setSource({ id: sourceId, preview: env.data.full_url }),
      () => {},
    );
  }, [sourceId]);

  const all = models.data || [];
  const mains = all.filter((m) => m.type === 'main');
  const upscalers = all.filter((m) => m.type === 'upscaler');
  const model = mains.find((m) => m.name === f.model) || mains.find((m) => m.is_available) || mains[0];
  const loraChoices = useMemo(() => all.filter((m) => m.type === 'lora' && model && m.base === model.base), [all, model]);

  const submit = (e) => {
    e.preventDefault();
    act(async () => {
      const nodes = (list) => (list.length ? list.map((n) => ({ name: n.name, version: n.version, parameters: n.parameters })) : undefined);
      const image = source && (source.id || source.data);
      let body;
      if (mode === 'upscale') {
        body = { image, scale: Number(f.scale), model: f.upscaler || undefined, post_nodes: nodes(postNodes) };
      } else {
        body = {
          prompt: f.prompt, model: model && model.name, negative_prompt: f.negative_prompt || undefined,
          steps: Number(f.steps), cfg_scale: Number(f.cfg_scale), sampler: f.sampler, seed: Number(f.seed),
          batch_size: Number(f.batch_size), loras: f.loras.length ? f.loras : undefined,
          pre_nodes: nodes(pre), post_nodes: nodes(postNodes),
        };
        if (mode === 'text-to-image') Object.assign(body, { width: Number(f.width), height: Number(f.height) });
        if (mode === 'image-to-image') Object.assign(body, { source_image: image, strength: Number(f.strength) });
        if (mode === 'inpaint') Object.assign(body, { source_image: image, mask_image: mask });
      }
      if (board) body.save_to_board = board;
      const env = await post('/generate/' + mode, body);
      setJobs((xs) => [{ job_id: env.data.job_id, ...env.data }, ...xs]);
    });
  };

  const num = (k, attrs) => (id) =>
    html`<input id=${id} name=${k} type="number" value=${f[k]} onInput=${(e) => set(k)(e.target.value)} ...${attrs} />`;

  return html`<section class="page generate">
    <h1>${t('nav.generate')}</h1>
    <div class="tabs" role="group" aria-label=${t('gen.mode')}>
      ${MODES.map(
        (m) => html`<button type="button" aria-pressed=${mode === m} data-mode=${m} onClick=${() => setMode(m)}>
          ${t('gen.' + m)}</button>`,
      )}
    </div>
    <${Loading} state=${models}>
      <form class="card" onSubmit=${submit} data-form="generate">
        ${mode !== 'upscale' &&
        html`<${Field} label=${t('gen.prompt')} control=${(id) => html`<textarea id=${id} name="prompt" rows="3" required maxlength="2000"
            value=${f.prompt} onInput=${(e) => set('prompt')(e.target.value)}></textarea>`} />
          <${Field} label=${t('gen.negative')} control=${(id) => html`<textarea id=${id} name="negative_prompt" rows="2"
            value=${f.negative_prompt} onInput=${(e) => set('negative_prompt')(e.target.value)}></textarea>`} />
          <${Field} label=${t('gen.model')} control=${ModelSelect({ models: mains, value: model ? model.name : '', onChange: set('model') })} />`}
        ${mode !== 'text-to-image' && html`<${SourcePicker} source=${source} onChange=${(s) => (setSource(s), setMask(null))} />`}
        ${mode === 'inpaint' && source && html`<${MaskBrush} source=${source} onMask=${setMask} />`}
        ${mode === 'upscale' &&
        html`<div class="grid2">
          <${Field} label=${t('gen.scale')} control=${(id) => html`<select id=${id} value=${f.scale} onChange=${(e) => set('scale')(e.target.value)}>
            ${[2, 3, 4].map((s) => html`<option value=${s}>×${s}</option>`)}</select>`} />
          <${Field} label=${t('gen.upscaler')} control=${ModelSelect({ models: upscalers, value: f.upscaler || (upscalers[0] && upscalers[0].name), onChange: set('upscaler') })} />
        </div>`}
        ${mode !== 'upscale' &&
        html`<div class="grid2">
          ${mode === 'text-to-image' &&
          html`<${Field} label=${t('gen.width')} control=${num('width', { min: 64, max: 2048, step: 8 })} />
            <${Field} label=${t('gen.height')} control=${num('height', { min: 64, max: 2048, step: 8 })} />`}
          ${mode === 'image-to-image' && html`<${Field} label=${t('gen.strength')} control=${num('strength', { min: 0, max: 1, step: 0.05 })} />`}
          <${Field} label=${t('gen.steps')} control=${num('steps', { min: 1, max: 150 })} />
          <${Field} label="CFG" control=${num('cfg_scale', { min: 0, max: 30, step: 0.5 })} />
          <${Field} label=${t('gen.sampler')} control=${(id) => html`<select id=${id} name="sampler" value=${f.sampler} onChange=${(e) => set('sampler')(e.target.value)}>
            ${boot.samplers.map((s) => html`<option value=${s}>${s}</option>`)}</select>`} />
          <${Field} label=${t('gen.seed')} hint=${t('gen.seed_hint')} control=${num('seed', { min: -1, step: 1 })} />
          <${Field} label=${t('gen.batch')} control=${num('batch_size', { min: 1, max: 8 })} />
        </div>
        <${Loras} loras=${f.loras} available=${loraChoices} onChange=${set('loras')} />`}
        <${Loading} state=${nodePlugins}>
          ${mode !== 'upscale' && html`<${Nodes} stage="pre" plugins=${nodePlugins.data || []} nodes=${pre} onChange=${setPre} />`}
          <${Nodes} stage="post" plugins=${nodePlugins.data || []} nodes=${postNodes} onChange=${setPostNodes} />
        </${Loading}>
        ${boards.data &&
        boards.data.length > 0 &&
        html`<${Field} label=${t('gen.board')} control=${(id) => html`<select id=${id} value=${board} onChange=${(e) => setBoard(e.target.value)}>
            <option value="">—</option>
            ${boards.data.map((b) => html`<option value=${b.id}>${b.name}</option>`)}</select>`} />`}
        <${ErrorNote} error=${error} />
        <button class="primary" type="submit" disabled=${busy}>${busy ? t('working') : t('gen.submit')}</button>
      </form>
    </${Loading}>
    <div class="jobs" aria-live="polite">
      ${jobs.map((j) => html`<${JobCard} key=${j.job_id} job=${j} />`)}
    </div>
  </section>`;
}
