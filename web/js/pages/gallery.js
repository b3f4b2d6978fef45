// The gallery: a grid that loads more as it scrolls, filtered by star or
// board; an image's panel shows its metadata and stars, files to boards,
// shares, deletes and reuses its settings.
import { useEffect, useRef, useState } from '../../vendor/hooks.js';
import { del, get, patch, post } from '../api.js';
import { useEvents } from '../events.js';
import { t } from '../i18n.js';
import { navigate } from '../router.js';
import { ErrorNote, Field, Loading, bytes, html, toast, useAction, useAsync, when, IMAGE_TYPES } from '../ui.js';
import { REUSE } from './generate.js';

const PER_PAGE = 24;
const REUSABLE = ['prompt', 'negative_prompt', 'model', 'width', 'height', 'steps', 'cfg_scale', 'sampler', 'seed', 'loras'];

function Boards({ boards, current, onPick, onChanged }) {
  const [name, setName] = useState('');
  const { busy, error, act } = useAction();
  const create = (e) => {
    e.preventDefault();
    act(async () => {
      await post('/boards', { name });
      setName('');
      onChanged();
    });
  };
  const remove = (b) =>
    act(async () => {
      if (!confirm(t('gallery.delete_board_confirm', { name: b.name }))) return;
      await del(`/boards/${b.id}`);
      if (current === b.id) onPick('');
      onChanged();
    });
  const rename = (b) =>
    act(async () => {
      const next = prompt(t('gallery.rename_board'), b.name);
      if (!next || next === b.name) return;
      await patch(`/boards/${b.id}`, { name: next });
      onChanged();
    });
  return html`<aside class="boards card" aria-label=${t('gallery.boards')}>
    <h2>${t('gallery.boards')}</h2>
    <ul>
      ${boards.map(
        (b) => html`<li key=${b.id}>
          <button type="button" class="link" aria-pressed=${current === b.id} onClick=${() => onPick(current === b.id ? '' : b.id)}>
            ${b.name} <span class="muted">(${b.image_count ?? 0})</span></button>
          <button type="button" class="icon" aria-label=${t('gallery.rename_board')} onClick=${() => rename(b)}>✎</button>
          <button type="button" class="icon" aria-label=${t('gallery.delete_board')} onClick=${() => remove(b)}>✕</button>
        </li>`,
      )}
    </ul>
    <form onSubmit=${create} class="row">
      <input aria-label=${t('gallery.new_board')} placeholder=${t('gallery.new_board')} value=${name} required maxlength="100"
        onInput=${(e) => setName(e.target.value)} />
      <button type="submit" disabled=${busy}>${t('add')}</button>
    </form>
    <${ErrorNote} error=${error} />
  </aside>`;
}

/// The generation metadata as `<dt>`/`<dd>` pairs.
function metadataRows(meta) {
  const rows = Object.entries(meta || {}).filter(([, v]) => v !== null && v !== '' && typeof v !== 'object');
  const loras = meta && Array.isArray(meta.loras) && meta.loras.length ? meta.loras.map((l) => `${l.name} (${l.weight})`).join(', ') : null;
  return html`${rows.map(([k, v]) => html`<dt>${t('meta.' + k, {}, k)}</dt><dd>${String(v)}</dd>`)}
    ${loras && html`<dt>LoRA</dt><dd>${loras}</dd>`}`;
}

function ImagePanel({ id, boards, onClose, onChanged }) {
  const detail = useAsync(() => get(`/images/${encodeURIComponent(id)}`).then((e) => e.data), [id]);
  const [board, setBoard] = useState('');
  const { busy, error, act } = useAction();
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
  }, []);
  const im = detail.data;
  const run = (fn) =>
    act(async () => {
      await fn();
      detail.reload();
      onChanged();
    });
  const star = () => run(() => (im.is_starred ? del : post)(`/images/${id}/star`));
  const share = () => run(() => post(`/images/${id}/share`, {}));
  const unshare = () => run(() => del(`/images/${id}/share`));
  const addToBoard = () => board && run(() => post(`/boards/${board}/images`, { image_ids: [id] }).then(() => toast(t('gallery.added'))));
  const removeFromBoard = (b) => run(() => del(`/boards/${b}/images/${id}`));
  const remove = () =>
    act(async () => {
      if (!confirm(t('gallery.delete_confirm'))) return;
      await del(`/images/${id}`);
      onChanged();
      onClose();
    });
  const reuse = () => {
    const m = im.metadata || {};
    const settings = {};
    REUSABLE.forEach((k) => m[k] !== undefined && m[k] !== null && (settings[k] = m[k]));
    sessionStorage.setItem(REUSE, JSON.stringify(settings));
    navigate('/generate');
  };
  const shareUrl = im && im.share_url ? new URL(im.share_url, location.origin).href : null;
  return html`<dialog ref=${ref} class="panel" aria-labelledby="panel-title" onClose=${onClose}>
    <div class="row spread">
      <h2 id="panel-title">${t('gallery.image')}</h2>
      <button type="button" class="icon" aria-label=${t('close')} onClick=${() => ref.current.close()}>✕</button>
    </div>
    <${Loading} state=${detail}>
      ${im &&
      html`<div class="panel-body">
        <a href=${im.full_url} target="_blank" rel="noopener"><img class="full" src=${im.full_url} alt=${(im.metadata && im.metadata.prompt) || t('gallery.image')} /></a>
        <div>
          <div class="row wrap">
            <button type="button" aria-pressed=${im.is_starred} data-action="star" onClick=${star} disabled=${busy}>
              ${im.is_starred ? '★ ' + t('gallery.starred') : '☆ ' + t('gallery.star')}</button>
            <button type="button" data-action="reuse" onClick=${reuse}>${t('gallery.reuse')}</button>
            <button type="button" data-use="image-to-image" onClick=${() => navigate('/generate?mode=image-to-image&source=' + id)}>${t('gen.image-to-image')}</button>
            <button type="button" data-use="upscale" onClick=${() => navigate('/generate?mode=upscale&source=' + id)}>${t('gen.upscale')}</button>
            <button type="button" data-use="inpaint" onClick=${() => navigate('/generate?mode=inpaint&source=' + id)}>${t('gen.inpaint')}</button>
            <button type="button" class="danger" data-action="delete" onClick=${remove} disabled=${busy}>${t('delete')}</button>
          </div>
          <${ErrorNote} error=${error} />
          <h3>${t('gallery.boards')}</h3>
          <p>${im.boards.length ? im.boards.map((b) => html`<span class="chip" key=${b.id}>${b.name}
              <button type="button" class="icon" aria-label=${t('gallery.remove_from', { name: b.name })} onClick=${() => removeFromBoard(b.id)}>✕</button></span>`) : html`<span class="muted">—</span>`}</p>
          ${boards.length > 0 &&
          html`<div class="row">
            <select aria-label=${t('gallery.board')} value=${board} onChange=${(e) => setBoard(e.target.value)} data-select="board">
              <option value="">—</option>
              ${boards.map((b) => html`<option value=${b.id}>${b.name}</option>`)}
            </select>
            <button type="button" data-action="add-to-board" onClick=${addToBoard} disabled=${!board || busy}>${t('gallery.add_to_board')}</button>
          </div>`}
          <h3>${t('gallery.share')}</h3>
          ${shareUrl
            ? html`<div class="row wrap">
                <input readonly aria-label=${t('gallery.share_link')} value=${shareUrl} data-share-url=${shareUrl} />
                <button type="button" onClick=${() => navigator.clipboard && navigator.clipboard.writeText(shareUrl).then(() => toast(t('gallery.copied')))}>${t('gallery.copy')}</button>
                <button type="button" onClick=${unshare}>${t('gallery.unshare')}</button>
              </div>
              ${im.share_expires_at && html`<small class="muted">${t('gallery.expires', { at: when(im.share_expires_at) })}</small>`}`
            : html`<button type="button" data-action="share" onClick=${share} disabled=${busy}>${t('gallery.make_link')}</button>`}
          <h3>${t('gallery.details')}</h3>
          <dl class="meta">
            <dt>${t('gallery.size')}</dt><dd>${im.width}×${im.height} · ${bytes(im.file_size)}</dd>
            <dt>${t('gallery.created')}</dt><dd>${when(im.created_at)}</dd>
            ${metadataRows(im.metadata)}
          </dl>
        </div>
      </div>`}
    </${Loading}>
  </dialog>`;
}

function Upload({ onDone }) {
  const { busy, error, act } = useAction();
  const pick = (e) =>
    act(async () => {
      const file = e.target.files[0];
      if (!file) return;
      const form = new FormData();
      form.append('file', file);
      await post('/images/upload', form);
      e.target.value = '';
      onDone();
    });
  return html`<div class="upload">
    <label class="button">${busy ? t('working') : t('gallery.upload')}
      <input type="file" accept=${IMAGE_TYPES} class="visually-hidden" onChange=${pick} /></label>
    <${ErrorNote} error=${error} />
  </div>`;
}

export function Gallery({ query }) {
  const [starred, setStarred] = useState(false);
  const [board, setBoard] = useState('');
  const [images, setImages] = useState([]);
  const [page, setPage] = useState({ next: 1, total: null, loading: false, error: null });
  const [open, setOpen] = useState(query.get('image'));
  const [revision, setRevision] = useState(0);
  const boards = useAsync(() => get('/boards').then((e) => e.data), [revision]);
  const sentinel = useRef(null);
  const filter = (starred ? '&starred=true' : '') + (board ? '&board_id=' + encodeURIComponent(board) : '');

  const load = (n, replace) => {
    setPage((p) => ({ ...p, loading: true, error: null }));
    get(`/images?page=${n}&per_page=${PER_PAGE}${filter}`).then(
      (env) => {
        setImages((xs) => (replace ? env.data : [...xs, ...env.data.filter((x) => !xs.some((y) => y.id === x.id))]));
        setPage({ next: n + 1, total: env.meta.total, loading: false, error: null });
      },
      (error) => setPage((p) => ({ ...p, loading: false, error })),
    );
  };
  useEffect(() => load(1, true), [filter, revision]);
  const more = page.total == null || images.length < page.total;
  useEffect(() => {
    if (!sentinel.current || !more || page.loading || page.error) return undefined;
    const io = new IntersectionObserver((es) => es.some((e) => e.isIntersecting) && load(page.next));
    io.observe(sentinel.current);
    return () => io.disconnect();
  }, [page, more]);
  useEvents((ev) => ev.type === 'job.completed' && setRevision((r) => r + 1));

  const changed = () => setRevision((r) => r + 1);
  const openImage = (id) => {
    setOpen(id);
    history.replaceState(null, '', id ? `/gallery?image=${encodeURIComponent(id)}` : '/gallery');
  };
  return html`<section class="page gallery">
    <div class="row spread wrap">
      <h1>${t('nav.gallery')}</h1>
      <div class="row wrap">
        <button type="button" aria-pressed=${starred} onClick=${() => setStarred(!starred)} data-filter="starred">★ ${t('gallery.starred_only')}</button>
        <${Upload} onDone=${changed} />
      </div>
    </div>
    <div class="gallery-layout">
      <${Loading} state=${boards}>
        <${Boards} boards=${boards.data || []} current=${board} onPick=${setBoard} onChanged=${changed} />
      </${Loading}>
      <div>
        ${page.total === 0 && html`<p class="muted">${t('gallery.empty')}</p>`}
        <ul class="grid" aria-label=${t('nav.gallery')}>
          ${images.map(
            (im) => html`<li key=${im.id}>
              <button type="button" class="thumb" data-image=${im.id} onClick=${() => openImage(im.id)}
                aria-label=${(im.metadata && im.metadata.prompt) || t('gallery.image')}>
                <img src=${im.thumbnail_url} alt="" loading="lazy" width="256" height="256" />
                ${im.is_starred && html`<span class="star" aria-hidden="true">★</span>`}
              </button>
            </li>`,
          )}
        </ul>
        <${ErrorNote} error=${page.error} />
        ${more && html`<div ref=${sentinel} class="sentinel muted" aria-busy=${page.loading}>${page.loading ? t('loading') : ''}</div>`}
        ${more && !page.loading && html`<button type="button" onClick=${() => load(page.next)}>${t('gallery.more')}</button>`}
      </div>
    </div>
    ${open && html`<${ImagePanel} id=${open} boards=${boards.data || []} onClose=${() => openImage(null)} onChanged=${changed} />`}
  </section>`;
}
