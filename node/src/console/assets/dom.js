// DOM building without HTML strings: every text from the API goes in as a text node, so nothing
// it says can become markup. The page's Content-Security-Policy forbids inline scripts and
// styles, so looks change by class only.

// h('tr', {class: 'x', dataset: {id: 1}, on: {click: f}}, child, ...): children are nodes,
// strings or numbers (text), arrays (flattened), null/undefined/false (skipped).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'on') {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined && v !== null) el.dataset[k] = String(v);
      }
    } else if (key === 'class') {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    } else if (key === 'testid') {
      el.setAttribute('data-testid', value);
    } else if (key === 'value') {
      el.value = value;
    } else if (key === 'checked' || key === 'selected' || key === 'disabled' || key === 'hidden' ||
               key === 'required' || key === 'multiple') {
      el[key] = Boolean(value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, ...children);
  return el;
}

// Appends children (nodes, text, nested arrays; null/undefined/false skipped).
export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Replaces every child of el.
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, ...children);
}

// A table: columns are [{label, cell: row => node|string, class?}], rows any values; row(row)
// gives the <tr>'s attributes.
export function table(columns, rows, row = () => ({}), testid) {
  return h('div', {class: 'table-wrap'},
    h('table', {testid},
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', {scope: 'col', class: c.class}, c.label)))),
      h('tbody', {}, rows.map((r) => h('tr', row(r), columns.map((c) => h('td', {class: c.class}, c.cell(r))))))));
}

// A labelled form control: h('label') wrapping the caption and the control, so clicking the
// caption focuses it.
export function field(label, control, hint) {
  return h('label', {class: 'field'}, h('span', {class: 'field-label'}, label), control,
    hint ? h('small', {class: 'hint'}, hint) : null);
}

export function select(attrs, options, selected) {
  const el = h('select', attrs, options.map(([value, label]) =>
    h('option', {value, selected: value === selected}, label)));
  if (selected !== undefined && options.some(([value]) => value === selected)) el.value = selected;
  return el;
}

// Lets the browser save `text` as a file named `name`.
export function download(name, text, type = 'application/json') {
  downloadBlob(name, new Blob([text], {type}));
}

export function downloadBlob(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = h('a', {href: url, download: name, class: 'hidden'});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
