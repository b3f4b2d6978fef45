// A form for a JSON Schema object (a node's `parameters_schema`): strings,
// enums, numbers, integers and booleans, with defaults, bounds and
// descriptions; anything else is edited as JSON.
import { Field, html } from './ui.js';

export function defaults(schema) {
  const out = {};
  for (const [k, p] of Object.entries((schema && schema.properties) || {})) {
    if (p.default !== undefined) out[k] = p.default;
  }
  return out;
}

function control(name, prop, value, set) {
  return (id) => {
    if (Array.isArray(prop.enum)) {
      return html`<select id=${id} name=${name} value=${value ?? ''} onChange=${(e) => set(prop.enum[e.target.selectedIndex - 1])}>
        <option value="">—</option>
        ${prop.enum.map((v) => html`<option value=${String(v)}>${String(v)}</option>`)}
      </select>`;
    }
    switch (prop.type) {
      case 'boolean':
        return html`<input id=${id} name=${name} type="checkbox" checked=${!!value} onChange=${(e) => set(e.target.checked)} />`;
      case 'integer':
      case 'number':
        return html`<input id=${id} name=${name} type="number" value=${value ?? ''} min=${prop.minimum} max=${prop.maximum}
          step=${prop.type === 'integer' ? 1 : 'any'}
          onInput=${(e) => set(e.target.value === '' ? undefined : Number(e.target.value))} />`;
      case 'string':
        return html`<input id=${id} name=${name} type="text" value=${value ?? ''} maxlength=${prop.maxLength}
          onInput=${(e) => set(e.target.value)} />`;
      default:
        return html`<textarea id=${id} name=${name} rows="3" class="mono"
          onChange=${(e) => {
            try {
              set(JSON.parse(e.target.value));
            } catch {
              set(e.target.value);
            }
          }}>${value === undefined ? '' : JSON.stringify(value)}</textarea>`;
    }
  };
}

/// `value` is the object being edited; `onChange(next)` gets the new one.
export function SchemaForm({ schema, value, onChange }) {
  const props = (schema && schema.properties) || {};
  const names = Object.keys(props);
  if (!names.length) return null;
  const required = new Set((schema && schema.required) || []);
  return html`<div class="schema-form">
    ${names.map((k) => {
      const p = props[k];
      const set = (v) => {
        const next = { ...value };
        if (v === undefined || v === '') delete next[k];
        else next[k] = v;
        onChange(next);
      };
      const label = `${p.title || k}${required.has(k) ? ' *' : ''}`;
      return html`<${Field} key=${k} label=${label} hint=${p.description} control=${control(k, p, value[k], set)} />`;
    })}
  </div>`;
}
