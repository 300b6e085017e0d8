// YRD Node web console: a single-page app over the admin API (docs/api.md, docs/console.md).
// The token lives in sessionStorage only; the language choice in localStorage. Everything the
// API says is put in the page as text (dom.js), never as markup.

import {h, append, replace, table, field, select, download, downloadBlob} from './dom.js';
import {DICT, KINDS} from './i18n.js';

const TOKEN_KEY = 'yrd.console.token';
const LANG_KEY = 'yrd.console.lang';
const ACTIVE = new Set(['connecting', 'running', 'waiting', 'verifying']);
const REFRESH_MS = 1000;

let lang = DICT[localStorage.getItem(LANG_KEY)] ? localStorage.getItem(LANG_KEY) : 'zh';
let generation = 0;
let refreshTimer = null;
let keepFlash = false;
let self = null; // our NodeView, once logged in
let regions = new Map(); // code -> {name_zh, name_en}
const app = document.getElementById('app');

// ---------------------------------------------------------------------------------------------
// Labels

export function t(key, vars) {
  let text = DICT[lang][key] ?? DICT.en[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) text = text.split('{' + k + '}').join(String(v));
  return text;
}

function setLang(next) {
  lang = DICT[next] ? next : 'zh';
  localStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  document.title = t('app.title');
}

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

async function errorOf(res) {
  try {
    const body = await res.json();
    if (body && typeof body.message === 'string') return new ApiError(res.status, body.error, body.message);
  } catch (_) {
    // not JSON: fall through
  }
  return new ApiError(res.status, 'http', t('error.http', {status: res.status}));
}

async function call(method, path, body, bearer = token()) {
  const init = {method, headers: {Authorization: 'Bearer ' + bearer}, cache: 'no-store'};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', t('error.network', {message: e.message}));
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

// JSON in and out; a 401 ends the session and shows the login form with the API's message.
async function api(method, path, body) {
  try {
    const res = await call(method, path, body);
    const type = res.headers.get('content-type') || '';
    return type.includes('json') ? res.json() : res.text();
  } catch (e) {
    if (e.status === 401) expired(e.message);
    throw e;
  }
}

const get = (path) => api('GET', path);
const post = (path, body) => api('POST', path, body ?? {});
const del = (path) => api('DELETE', path);

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}

// ---------------------------------------------------------------------------------------------
// Formatting

function regionName(code) {
  if (code === undefined || code === null || code === '') return '';
  const r = regions.get(String(code));
  if (!r) return String(code);
  return String(code) + ' ' + (lang === 'zh' ? r.name_zh : r.name_en);
}

function short(id, n = 12) {
  if (!id) return '';
  return id.length > n + 2 ? id.slice(0, n) + '…' : id;
}

function mono(text, full) {
  return h('code', {title: full || text}, text);
}

function peerCell(peer, region) {
  return h('span', {class: 'peer'}, region ? h('span', {class: 'region'}, regionName(region)) : null,
    mono(short(peer, 16), peer));
}

function time(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts;
  return h('time', {datetime: ts, title: ts}, d.toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB'));
}

function bytes(n) {
  if (n === undefined || n === null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (i === 0 ? String(v) : v.toFixed(1)) + ' ' + units[i];
}

function duration(secs) {
  const d = Math.floor(secs / 86400);
  const hh = Math.floor((secs % 86400) / 3600);
  const mm = Math.floor((secs % 3600) / 60);
  const ss = secs % 60;
  return t('duration', {d, h: hh, m: mm, s: ss});
}

function badge(kind, text, testid) {
  return h('span', {class: ['badge', 'badge-' + kind], testid}, text);
}

function shareBadge(type) {
  return badge(type, t('share.' + type));
}

function statusBadge(status) {
  return badge(status, t('status.' + status), 'status');
}

function maskText(m) {
  if (m.rule === 'keep') return t('mask.keepText', {first: m.first, last: m.last});
  return t('mask.' + m.rule);
}

function fieldsText(fields, masks) {
  if (!fields || fields.length === 0) return t('fields.all');
  const byField = new Map((masks || []).map((m) => [m.field, m]));
  return fields.map((f) => (byField.has(f) ? f + ' (' + maskText(byField.get(f)) + ')' : f)).join(', ');
}

function empty(text, testid) {
  return h('p', {class: 'empty', testid}, text);
}

function kindLabel(kind) {
  return KINDS[kind] ? KINDS[kind][lang] : kind;
}

// ---------------------------------------------------------------------------------------------
// Messages

function flash(kind, text, keep = false) {
  const box = document.getElementById('flash');
  if (!box) return;
  keepFlash = keep;
  replace(box, h('div', {class: ['flash', 'flash-' + kind], role: kind === 'error' ? 'alert' : 'status',
    testid: 'flash-' + kind},
  h('span', {}, text),
  h('button', {type: 'button', class: 'link', 'aria-label': t('action.close'),
    on: {click: () => replace(box)}}, '×')));
}

function clearFlash() {
  const box = document.getElementById('flash');
  if (box) replace(box);
}

function showError(e) {
  if (e && e.status === 401) return;
  flash('error', e && e.message ? e.message : String(e));
}

// Runs an action from a button or form; disables the control while it runs and shows failures.
async function act(control, action) {
  if (control) control.disabled = true;
  try {
    await action();
  } catch (e) {
    showError(e);
  } finally {
    if (control) control.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Login

function loginView(message) {
  stopRefresh();
  generation += 1;
  self = null;
  const input = h('input', {id: 'login-token', testid: 'login-token', type: 'password', name: 'token',
    autocomplete: 'current-password', required: true, spellcheck: 'false'});
  const error = h('p', {id: 'login-error', testid: 'login-error', class: 'login-error', role: 'alert',
    hidden: !message}, message || '');
  const submit = h('button', {type: 'submit', id: 'login-submit', testid: 'login-submit', class: 'primary'},
    t('login.submit'));
  const form = h('form', {id: 'login-form', testid: 'login-form', class: 'login-form', on: {submit: async (ev) => {
    ev.preventDefault();
    const candidate = input.value.trim();
    if (!candidate) return;
    submit.disabled = true;
    try {
      const res = await call('GET', '/api/v1/node', undefined, candidate);
      sessionStorage.setItem(TOKEN_KEY, candidate);
      self = await res.json();
      await start();
    } catch (e) {
      error.hidden = false;
      error.textContent = e.status === 401 ? t('login.refused', {message: e.message}) : e.message;
      input.select();
    } finally {
      submit.disabled = false;
    }
  }}},
  h('h1', {}, t('app.title')),
  h('p', {class: 'muted'}, t('login.intro')),
  field(t('login.token'), input, t('login.hint')),
  error,
  h('div', {class: 'actions'}, submit, langSwitch()));
  replace(app, h('div', {class: 'login', testid: 'page-login'}, form));
  input.focus();
}

function expired(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  loginView(t('login.expired', {message}));
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  loginView(t('login.loggedOut'));
}

function langSwitch() {
  return h('label', {class: 'lang'}, h('span', {class: 'sr-only'}, t('lang.label')),
    select({id: 'lang', testid: 'lang', on: {change: (ev) => {
      setLang(ev.target.value);
      if (token() && self) shell(); else loginView();
    }}}, [['zh', '中文'], ['en', 'English']], lang));
}

// ---------------------------------------------------------------------------------------------
// The shell: header, navigation, messages, the current page

const PAGES = [
  ['overview', overviewPage],
  ['catalogue', cataloguePage],
  ['lists', listsPage],
  ['schemas', schemasPage],
  ['requests', requestsPage],
  ['grants', grantsPage],
  ['transfers', transfersPage],
  ['subscriptions', subscriptionsPage],
  ['provenance', provenancePage],
  ['deliveries', deliveriesPage],
  ['queries', queriesPage],
  ['alarms', alarmsPage],
  ['federation', federationPage],
];

async function start() {
  if (!self) self = await get('/api/v1/node');
  if (regions.size === 0) {
    try {
      const list = await get('/api/v1/regions');
      regions = new Map(list.map((r) => [r.code, r]));
    } catch (e) {
      if (e.status === 401) return;
    }
  }
  shell();
}

function shell() {
  const nav = h('nav', {class: 'nav', 'aria-label': t('nav.label')},
    h('ul', {}, PAGES.map(([name]) => h('li', {},
      h('a', {href: '#/' + name, id: 'nav-' + name, testid: 'nav-' + name}, t('nav.' + name))))));
  const header = h('header', {class: 'top'},
    h('div', {class: 'brand'}, h('img', {src: '/console/favicon.svg', alt: '', width: 28, height: 28}),
      h('div', {}, h('strong', {}, t('app.title')), h('span', {class: 'muted'}, t('app.subtitle')))),
    h('div', {class: 'whoami', testid: 'whoami'},
      h('span', {class: 'region'}, self ? regionName(self.region) : ''),
      h('span', {}, self ? self.organisation : ''),
      self ? mono(short(self.peer_id, 16), self.peer_id) : null),
    h('div', {class: 'top-actions'},
      h('span', {id: 'busy', class: 'busy', hidden: true, 'aria-live': 'polite'}, t('loading')),
      langSwitch(),
      h('button', {type: 'button', id: 'logout', testid: 'logout', on: {click: logout}}, t('action.logout'))));
  replace(app, header, h('div', {class: 'body'}, nav,
    h('main', {}, h('div', {id: 'flash', 'aria-live': 'polite'}), h('div', {id: 'view', testid: 'view'}))));
  render();
}

function currentRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [name, q] = raw.split('?');
  const page = PAGES.find(([n]) => n === name) ? name : 'overview';
  return {page, params: new URLSearchParams(q || '')};
}

function go(page, params) {
  const target = '#/' + page + query(params || {});
  if (location.hash === target) render(); else location.hash = target;
}

function stopRefresh() {
  if (refreshTimer) clearTimeout(refreshTimer);
  refreshTimer = null;
}

// Builds the current page off-screen and swaps it in when ready, unless the operator moved on.
async function render() {
  const view = document.getElementById('view');
  if (!view || !token()) return;
  stopRefresh();
  const my = ++generation;
  const {page, params} = currentRoute();
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.id === 'nav-' + page);
  const busy = document.getElementById('busy');
  if (busy) busy.hidden = false;
  const section = h('section', {class: 'page', id: 'page-' + page, testid: 'page-' + page},
    h('h1', {}, t('nav.' + page)));
  const ctx = {params, my, alive: () => my === generation};
  try {
    await PAGES.find(([n]) => n === page)[1](section, ctx);
  } catch (e) {
    if (e.status === 401) return;
    section.append(h('p', {class: 'page-error', role: 'alert', testid: 'page-error'}, e.message || String(e)));
  } finally {
    if (busy && my === generation) busy.hidden = true;
  }
  if (my !== generation) return;
  replace(view, section);
  document.title = t('nav.' + page) + ' · ' + t('app.title');
}

window.addEventListener('hashchange', () => {
  if (!keepFlash) clearFlash();
  keepFlash = false;
  render();
});

// ---------------------------------------------------------------------------------------------
// Overview

async function overviewPage(section) {
  const [node, health, peers] = await Promise.all([get('/api/v1/node'), get('/api/v1/health'),
    get('/api/v1/peers')]);
  self = node;
  const dl = (rows) => h('dl', {class: 'facts'}, rows.filter(Boolean).map(([k, v, testid]) =>
    [h('dt', {}, k), h('dd', {testid}, v)]));
  const known = new Set(['status', 'uptime_secs', 'connected_members', 'members', 'refused_connections', 'store_ok']);
  const extra = Object.entries(health).filter(([k]) => !known.has(k)).map(([k, v]) =>
    [k, typeof v === 'object' ? JSON.stringify(v) : String(v)]);
  append(section,
    h('div', {class: 'cards'},
      h('div', {class: 'card', testid: 'node-card'}, h('h2', {}, t('overview.node')), dl([
        [t('overview.peerId'), mono(node.peer_id), 'node-id'],
        [t('overview.region'), regionName(node.region), 'node-region'],
        [t('overview.organisation'), node.organisation, 'node-name'],
        [t('overview.version'), node.version],
        [t('overview.started'), time(node.started_at)],
        [t('overview.api'), node.api_address || ''],
        [t('overview.listen'), h('ul', {class: 'plain'}, node.listen_addresses.map((a) => h('li', {}, mono(a))))],
      ])),
      h('div', {class: 'card', testid: 'health-card'}, h('h2', {}, t('overview.health')), dl([
        [t('overview.status'), badge(health.status === 'ok' ? 'ok' : 'warn', t('health.' + health.status)), 'health-status'],
        [t('overview.uptime'), duration(health.uptime_secs)],
        [t('overview.connected'), t('overview.connectedOf', {n: health.connected_members, m: health.members}), 'health-connected'],
        [t('overview.refused'), String(health.refused_connections)],
        [t('overview.store'), health.store_ok ? t('common.yes') : t('common.no')],
        ...extra,
      ]))));
  section.append(h('h2', {}, t('overview.peers', {n: peers.length})));
  if (peers.length === 0) {
    section.append(empty(t('overview.noPeers'), 'peers-none'));
    return;
  }
  const groups = new Map();
  for (const p of [...peers].sort((a, b) => String(a.region || '999999').localeCompare(String(b.region || '999999')))) {
    const key = p.region ? regionName(p.region) : t('overview.unverified');
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(p);
  }
  for (const [label, list] of groups) {
    section.append(h('div', {class: 'group', testid: 'peer-group'}, h('h3', {}, label),
      table([
        {label: t('col.organisation'), cell: (p) => p.organisation || ''},
        {label: t('col.peer'), cell: (p) => mono(short(p.peer_id, 20), p.peer_id)},
        {label: t('col.rtt'), cell: (p) => (p.rtt_ms === null || p.rtt_ms === undefined ? '' : p.rtt_ms.toFixed(1) + ' ms'), class: 'num'},
        {label: t('col.since'), cell: (p) => time(p.connected_since)},
        {label: t('col.addresses'), cell: (p) => h('ul', {class: 'plain'}, p.addresses.map((a) => h('li', {}, mono(a))))},
        {label: t('col.agent'), cell: (p) => p.agent || ''},
      ], list, (p) => ({testid: 'peer', dataset: {peer: p.peer_id}}))));
  }
}

// ---------------------------------------------------------------------------------------------
// Network catalogue

async function cataloguePage(section, {params}) {
  const search = {
    text: params.get('text') || '',
    schema: params.get('schema') || '',
    region: params.get('region') || '',
    share_type: params.get('share_type') || '',
  };
  const [hits, schemas, grants, requests] = await Promise.all([
    get('/api/v1/catalogue/search' + query(search)),
    get('/api/v1/schemas?network=true'),
    get('/api/v1/grants?direction=in'),
    get('/api/v1/requests?direction=out'),
  ]);
  const schemaIds = [...new Set(schemas.map((s) => s.id))].sort();
  const textInput = h('input', {id: 'search-text', testid: 'search-text', type: 'search', name: 'text', value: search.text});
  const schemaSel = select({id: 'search-schema', testid: 'search-schema', name: 'schema'},
    [['', t('common.any')], ...schemaIds.map((id) => [id, id])], search.schema);
  const regionSel = select({id: 'search-region', testid: 'search-region', name: 'region'},
    [['', t('common.any')], ...[...regions.keys()].map((c) => [c, regionName(c)])], search.region);
  const shareSel = select({id: 'search-share-type', testid: 'search-share-type', name: 'share_type'},
    [['', t('common.any')], ...['unconditional', 'conditional', 'not-shared'].map((s) => [s, t('share.' + s)])],
    search.share_type);
  section.append(h('form', {class: 'filters', testid: 'search-form', on: {submit: (ev) => {
    ev.preventDefault();
    go('catalogue', {text: textInput.value.trim(), schema: schemaSel.value, region: regionSel.value,
      share_type: shareSel.value});
  }}},
  field(t('search.text'), textInput), field(t('search.schema'), schemaSel),
  field(t('search.region'), regionSel), field(t('search.shareType'), shareSel),
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary', testid: 'search-submit'}, t('action.search')))));

  section.append(h('p', {class: 'muted', testid: 'search-count'}, t('search.count', {n: hits.length})));
  if (hits.length === 0) {
    section.append(empty(t('search.none'), 'search-none'));
    return;
  }
  // The latest valid grant we hold, and our latest request, for each provider's dataset.
  const validGrant = new Map();
  for (const g of grants) {
    if (g.state !== 'valid') continue;
    const key = g.grant.document.provider + '/' + g.grant.document.dataset;
    if (!validGrant.has(key)) validGrant.set(key, g);
  }
  const lastRequest = new Map();
  for (const r of requests) {
    const key = r.peer + '/' + r.request.document.dataset;
    if (!lastRequest.has(key)) lastRequest.set(key, r);
  }
  const body = h('tbody');
  for (const hit of hits) {
    const e = hit.entry;
    const o = e.offer;
    const target = hit.publisher + '/' + o.identifier;
    const ours = self && hit.publisher === self.peer_id;
    const grant = validGrant.get(target);
    const req = lastRequest.get(target);
    const actions = h('div', {class: 'row-actions'});
    const formRow = h('tr', {class: 'form-row', hidden: true, testid: 'request-row'});
    if (ours) {
      actions.append(badge('info', t('search.ours')));
    } else if (o.share_type === 'not-shared') {
      actions.append(h('span', {class: 'muted'}, t('search.notShared')));
    } else {
      if (o.share_type === 'unconditional' || grant) {
        const fetchBtn = h('button', {type: 'button', class: 'primary', testid: 'fetch'}, t('action.fetch'));
        fetchBtn.addEventListener('click', () => act(fetchBtn, () => startFetch(target, grant ? grant.id : undefined)));
        actions.append(fetchBtn);
      }
      if (o.share_type === 'conditional') {
        if (grant) actions.append(h('span', {class: 'note', testid: 'grant-held'}, t('search.grantHeld', {id: short(grant.id, 8), until: grant.grant.document.expires_at.slice(0, 10)})));
        if (req && req.status === 'pending') actions.append(badge('pending', t('search.requestPending'), 'request-pending'));
        if (req && req.status === 'denied' && req.denial) actions.append(h('span', {class: 'note'}, t('search.denied', {reason: req.denial.document.reason})));
        const open = h('button', {type: 'button', testid: 'request-open', 'aria-expanded': 'false'}, t('action.requestAccess'));
        open.addEventListener('click', () => {
          formRow.hidden = !formRow.hidden;
          open.setAttribute('aria-expanded', String(!formRow.hidden));
          const first = formRow.querySelector('input');
          if (!formRow.hidden && first) first.focus();
        });
        actions.append(open);
        formRow.append(h('td', {colspan: 8}, requestForm(target, regionName(hit.region) + ' · ' + hit.organisation + ' · ' + o.identifier, e)));
      }
      const sub = h('button', {type: 'button', class: 'link', testid: 'subscribe'}, t('action.subscribe'));
      sub.addEventListener('click', () => act(sub, async () => {
        const s = await post('/api/v1/subscriptions', {target});
        flash('ok', t('subscriptions.added', {dataset: s.dataset}) + (s.note ? ' — ' + s.note : ''));
      }));
      actions.append(sub);
    }
    body.append(h('tr', {testid: 'hit', dataset: {dataset: o.identifier, publisher: hit.publisher, share: o.share_type}},
      h('td', {}, h('span', {class: 'region'}, regionName(hit.region))),
      h('td', {}, hit.organisation),
      h('td', {}, h('div', {}, h('strong', {}, o.title)), mono(o.identifier), o.description ? h('div', {class: 'muted small'}, o.description) : null),
      h('td', {}, shareBadge(o.share_type)),
      h('td', {testid: 'conditions'}, o.share_conditions || ''),
      h('td', {}, mono(e.conforms_to.id + '@' + e.conforms_to.version)),
      h('td', {class: 'num'}, e.latest_version ? 'v' + e.latest_version : t('search.noVersion'), e.byte_size ? h('div', {class: 'muted small'}, bytes(e.byte_size)) : null),
      h('td', {}, actions)));
    body.append(formRow);
  }
  section.append(h('div', {class: 'table-wrap'}, h('table', {testid: 'hits'},
    h('thead', {}, h('tr', {}, [t('col.region'), t('col.organisation'), t('col.dataset'), t('col.shareType'),
      t('col.conditions'), t('col.standard'), t('col.version'), t('col.actions')].map((l) => h('th', {scope: 'col'}, l)))),
    body)));
}

async function startFetch(target, grant) {
  const transfer = await post('/api/v1/fetch', grant ? {target, grant} : {target});
  flash('ok', t('fetch.started', {dataset: transfer.dataset, id: short(transfer.id, 8)}), true);
  go('transfers', {});
}

function fieldPicker(items, checkedByDefault, extra) {
  const boxes = [];
  const list = h('div', {class: 'field-list'});
  for (const item of items) {
    const box = h('input', {type: 'checkbox', value: item.name, checked: checkedByDefault, dataset: {field: item.name},
      testid: 'field-' + item.name});
    boxes.push(box);
    list.append(h('label', {class: 'check'}, box, h('code', {}, item.name),
      item.title ? h('span', {class: 'muted'}, ' ' + item.title) : null,
      // A personal field leaves masked by this default unless the grant names another rule.
      item.mask ? h('span', {class: 'muted', testid: 'mask-default-' + item.name}, ' · ' + t('mask.default', {rule: maskText(item.mask)})) : null,
      extra ? extra(item, box) : null));
  }
  const setAll = (on) => boxes.forEach((b) => {
    b.checked = on;
    b.dispatchEvent(new Event('change'));
  });
  const tools = h('div', {class: 'field-tools'},
    h('button', {type: 'button', class: 'link', testid: 'fields-all', on: {click: () => setAll(true)}}, t('fields.selectAll')),
    h('button', {type: 'button', class: 'link', testid: 'fields-none', on: {click: () => setAll(false)}}, t('fields.selectNone')));
  return {boxes, node: h('fieldset', {class: 'fields'}, h('legend', {}, t('request.fields')), tools, list)};
}

function requestForm(target, label, entry) {
  const purpose = h('input', {type: 'text', name: 'purpose', required: true, maxlength: 2000, testid: 'request-purpose'});
  const basis = h('input', {type: 'text', name: 'basis', required: true, maxlength: 2000, testid: 'request-basis'});
  const picker = fieldPicker(entry.information_items, true);
  const submit = h('button', {type: 'submit', class: 'primary', testid: 'request-submit'}, t('action.sendRequest'));
  return h('form', {class: 'inline-form', testid: 'request-form', on: {submit: (ev) => {
    ev.preventDefault();
    const chosen = picker.boxes.filter((b) => b.checked).map((b) => b.value);
    if (chosen.length === 0) {
      flash('error', t('fields.noneChosen'));
      return;
    }
    const fields = chosen.length === picker.boxes.length ? [] : chosen;
    act(submit, async () => {
      const r = await post('/api/v1/requests', {target, purpose: purpose.value.trim(), basis: basis.value.trim(), fields});
      flash('ok', t('request.sent', {dataset: r.request.document.dataset, status: t('status.' + r.status), id: short(r.id, 8)}), true);
      render();
    });
  }}},
  h('h3', {}, t('request.title', {target: label})),
  h('div', {class: 'grid2'}, field(t('request.purpose'), purpose, t('request.purposeHint')),
    field(t('request.basis'), basis, t('request.basisHint'))),
  picker.node,
  h('div', {class: 'actions'}, submit));
}

// ---------------------------------------------------------------------------------------------
// Our three lists

const UPDATE_CYCLES = ['realtime', 'daily', 'weekly', 'monthly', 'quarterly', 'annual', 'irregular'];

function csv(text) {
  return text.split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean);
}

function removeButton(path, identifier, listKey) {
  const b = h('button', {type: 'button', class: 'danger', testid: 'remove', dataset: {id: identifier}}, t('action.remove'));
  b.addEventListener('click', () => {
    if (!window.confirm(t('lists.confirmRemove', {id: identifier, list: t(listKey)}))) return;
    act(b, async () => {
      await del(path + encodeURIComponent(identifier));
      flash('ok', t('lists.removed', {id: identifier}), true);
      render();
    });
  });
  return b;
}

function formFrom(form) {
  const data = {};
  for (const el of form.querySelectorAll('[name]')) data[el.name] = el.value.trim();
  return data;
}

async function listsPage(section) {
  const [cat, schemas] = await Promise.all([get('/api/v1/catalogue'), get('/api/v1/schemas?network=true')]);
  const signed = cat.signed ? cat.signed.document : null;
  section.append(h('p', {class: 'muted', testid: 'catalogue-seq'}, signed
    ? t('lists.snapshot', {seq: signed.sequence, at: signed.issued_at}) : t('lists.noSnapshot')));

  // 共享数据清单
  section.append(h('h2', {id: 'offers'}, t('lists.offers'), ' ', h('span', {class: 'count'}, String(cat.offers.length))));
  section.append(cat.offers.length === 0 ? empty(t('lists.none'), 'offers-none') : table([
    {label: t('col.dataset'), cell: (e) => [h('strong', {}, e.offer.title), h('div', {}, mono(e.offer.identifier))]},
    {label: t('col.shareType'), cell: (e) => shareBadge(e.offer.share_type)},
    {label: t('col.conditions'), cell: (e) => e.offer.share_conditions || ''},
    {label: t('col.standard'), cell: (e) => mono(e.conforms_to.id + '@' + e.conforms_to.version)},
    {label: t('col.method'), cell: (e) => t('method.' + e.offer.share_method)},
    {label: t('col.cycle'), cell: (e) => t('cycle.' + e.offer.update_cycle)},
    {label: t('col.version'), cell: (e) => (e.latest_version ? ['v' + e.latest_version, h('div', {class: 'muted small'}, bytes(e.byte_size))] : t('search.noVersion')), class: 'num'},
    {label: t('col.modified'), cell: (e) => time(e.modified)},
    {label: t('col.actions'), cell: (e) => removeButton('/api/v1/catalogue/offers/', e.offer.identifier, 'lists.offers')},
  ], cat.offers, (e) => ({testid: 'offer', dataset: {id: e.offer.identifier}}), 'offers'));
  section.append(offerForm(schemas), versionForm(cat.offers));

  // 履职需求数据清单
  section.append(h('h2', {id: 'demands'}, t('lists.demands'), ' ', h('span', {class: 'count'}, String(cat.demands.length))));
  section.append(cat.demands.length === 0 ? empty(t('lists.none'), 'demands-none') : table([
    {label: t('col.identifier'), cell: (d) => [h('strong', {}, d.title), h('div', {}, mono(d.identifier))]},
    {label: t('col.standard'), cell: (d) => mono(d.schema_id + ' ' + d.version_req)},
    {label: t('col.purpose'), cell: (d) => d.purpose},
    {label: t('col.basis'), cell: (d) => d.legal_basis},
    {label: t('col.cycle'), cell: (d) => t('cycle.' + d.frequency)},
    {label: t('col.regions'), cell: (d) => (d.regions.length ? d.regions.map(regionName).join(', ') : t('common.any'))},
    {label: t('col.actions'), cell: (d) => removeButton('/api/v1/catalogue/demands/', d.identifier, 'lists.demands')},
  ], cat.demands, (d) => ({testid: 'demand', dataset: {id: d.identifier}}), 'demands'));
  section.append(demandForm(schemas));
  section.append(await matchSection());

  // 不予共享清单
  section.append(h('h2', {id: 'withheld'}, t('lists.withheld'), ' ', h('span', {class: 'count'}, String(cat.withheld.length))));
  section.append(cat.withheld.length === 0 ? empty(t('lists.none'), 'withheld-none') : table([
    {label: t('col.identifier'), cell: (w) => [h('strong', {}, w.title), h('div', {}, mono(w.identifier))]},
    {label: t('col.resourceCode'), cell: (w) => w.resource_code || ''},
    {label: t('col.reason'), cell: (w) => w.reason},
    {label: t('col.basis'), cell: (w) => w.legal_basis},
    {label: t('col.actions'), cell: (w) => removeButton('/api/v1/catalogue/withheld/', w.identifier, 'lists.withheld')},
  ], cat.withheld, (w) => ({testid: 'withheld', dataset: {id: w.identifier}}), 'withheld'));
  section.append(withheldForm());
}

// Which offers of the network meet our demands, and whose demands our offers meet.
async function matchSection() {
  const report = await get('/api/v1/demands/match');
  const rows = [...report.for_our_demands.map((m) => ['ours', m]), ...report.for_our_offers.map((m) => ['theirs', m])];
  const box = h('details', {class: 'add', testid: 'demand-match', open: rows.length > 0 || report.unmet_demands.length > 0},
    h('summary', {}, t('match.title', {n: rows.length})));
  if (report.unmet_demands.length) {
    box.append(h('p', {class: 'note', testid: 'unmet'}, t('match.unmet', {ids: report.unmet_demands.join(', ')})));
  }
  if (rows.length === 0) {
    box.append(empty(t('match.none')));
    return box;
  }
  box.append(table([
    {label: t('match.side'), cell: ([side]) => t('match.' + side)},
    {label: t('match.demand'), cell: ([, m]) => [h('strong', {}, m.demand.title), h('div', {}, mono(m.demand.identifier))]},
    {label: t('match.demander'), cell: ([, m]) => [h('span', {class: 'region'}, m.demander_region), h('div', {}, mono(short(m.demander, 16), m.demander))]},
    {label: t('match.offer'), cell: ([, m]) => [h('strong', {}, m.offer_title), h('div', {}, mono(m.offer + ' @' + m.schema_version))]},
    {label: t('col.provider'), cell: ([, m]) => [h('span', {class: 'region'}, m.provider_region), h('div', {}, mono(short(m.provider, 16), m.provider))]},
    {label: t('col.shareType'), cell: ([, m]) => shareBadge(m.share_type)},
  ], rows, ([side, m]) => ({testid: 'match', dataset: {side, offer: m.offer}})));
  return box;
}

function addForm(titleKey, testid, controls, build, path) {
  const submit = h('button', {type: 'submit', class: 'primary', testid: testid + '-submit'}, t('action.add'));
  const form = h('form', {class: 'grid-form', testid, on: {submit: (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      const body = build(formFrom(form));
      const saved = await post(path, body);
      flash('ok', t('lists.added', {id: saved.identifier || (saved.offer && saved.offer.identifier) || ''}), true);
      render();
    });
  }}}, controls, h('div', {class: 'actions wide'}, submit));
  return h('details', {class: 'add'}, h('summary', {}, t(titleKey)), form);
}

function input(name, attrs = {}) {
  return h('input', {type: 'text', name, testid: 'input-' + name, ...attrs});
}

function schemaOptions(schemas) {
  const seen = new Set();
  const opts = [];
  for (const s of schemas) {
    const key = s.id + '@' + s.version;
    if (seen.has(key)) continue;
    seen.add(key);
    opts.push([key, s.id + ' ' + s.version + ' — ' + s.title]);
  }
  return opts;
}

function offerForm(schemas) {
  return addForm('lists.addOffer', 'offer-form', [
    field(t('offer.identifier'), input('identifier', {required: true, pattern: '[a-z0-9][a-z0-9._-]{0,63}'}), t('offer.identifierHint')),
    field(t('offer.title'), input('title', {required: true})),
    field(t('offer.description'), h('textarea', {name: 'description', rows: 2, required: true})),
    field(t('offer.standard'), select({name: 'schema', required: true}, schemaOptions(schemas))),
    field(t('offer.shareType'), select({name: 'share_type'}, ['unconditional', 'conditional', 'not-shared'].map((s) => [s, t('share.' + s)]), 'conditional')),
    field(t('offer.conditions'), input('share_conditions'), t('offer.conditionsHint')),
    field(t('offer.method'), select({name: 'share_method'}, [['file', t('method.file')], ['interface', t('method.interface')]])),
    field(t('offer.cycle'), select({name: 'update_cycle'}, UPDATE_CYCLES.map((c) => [c, t('cycle.' + c)]), 'daily')),
    field(t('offer.open'), select({name: 'open_attribute'}, ['not-open', 'conditionally-open', 'open'].map((c) => [c, t('open.' + c)]))),
    field(t('offer.resourceCode'), input('resource_code', {required: true})),
    field(t('offer.mediaType'), input('media_type', {value: 'application/jsonl', required: true})),
    field(t('offer.theme'), input('theme'), t('common.commaList')),
    field(t('offer.keyword'), input('keyword'), t('common.commaList')),
    field(t('offer.spatial'), input('spatial'), t('offer.spatialHint')),
    field(t('offer.license'), input('license')),
    field(t('offer.issued'), input('issued', {type: 'date'})),
  ], (d) => {
    const [schemaId, schemaVersion] = d.schema.split('@');
    const offer = {identifier: d.identifier, title: d.title, description: d.description,
      theme: csv(d.theme), keyword: csv(d.keyword), media_type: d.media_type, resource_code: d.resource_code,
      share_type: d.share_type, share_method: d.share_method, open_attribute: d.open_attribute,
      update_cycle: d.update_cycle, schema_id: schemaId, schema_version: schemaVersion, spatial: csv(d.spatial)};
    if (d.share_conditions) offer.share_conditions = d.share_conditions;
    if (d.license) offer.license = d.license;
    if (d.issued) offer.issued = d.issued;
    return offer;
  }, '/api/v1/catalogue/offers');
}

function versionForm(offers) {
  const dataset = select({name: 'dataset', testid: 'version-dataset', required: true}, offers.map((e) => [e.offer.identifier, e.offer.identifier]));
  const file = input('file', {required: true, placeholder: '/srv/yrd/exports/data.jsonl'});
  const format = select({name: 'format'}, [['jsonl', 'JSON Lines'], ['csv', 'CSV'], ['file', t('version.opaque')]]);
  const submit = h('button', {type: 'submit', class: 'primary', testid: 'version-submit'}, t('action.publish'));
  const form = h('form', {class: 'grid-form', testid: 'version-form', on: {submit: (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      const m = await post('/api/v1/datasets/' + encodeURIComponent(dataset.value) + '/versions',
        {file: file.value.trim(), format: format.value});
      flash('ok', t('version.published', {dataset: m.document.dataset, version: m.document.version}), true);
      render();
    });
  }}},
  field(t('col.dataset'), dataset), field(t('version.file'), file, t('version.fileHint')), field(t('version.format'), format),
  h('div', {class: 'actions wide'}, submit));
  return h('details', {class: 'add'}, h('summary', {}, t('version.title')), form);
}

function demandForm(schemas) {
  const ids = [...new Set(schemas.map((s) => s.id))].sort();
  return addForm('lists.addDemand', 'demand-form', [
    field(t('offer.identifier'), input('identifier', {required: true, pattern: '[a-z0-9][a-z0-9._-]{0,63}'})),
    field(t('offer.title'), input('title', {required: true})),
    field(t('offer.standard'), select({name: 'schema_id', required: true}, ids.map((id) => [id, id]))),
    field(t('demand.versionReq'), input('version_req', {value: '^1', required: true}), t('demand.versionReqHint')),
    field(t('request.purpose'), input('purpose', {required: true})),
    field(t('request.basis'), input('legal_basis', {required: true})),
    field(t('demand.frequency'), select({name: 'frequency'}, UPDATE_CYCLES.map((c) => [c, t('cycle.' + c)]), 'monthly')),
    field(t('col.regions'), input('regions'), t('demand.regionsHint')),
  ], (d) => ({identifier: d.identifier, title: d.title, schema_id: d.schema_id, version_req: d.version_req,
    purpose: d.purpose, legal_basis: d.legal_basis, frequency: d.frequency, regions: csv(d.regions)}),
  '/api/v1/catalogue/demands');
}

function withheldForm() {
  return addForm('lists.addWithheld', 'withheld-form', [
    field(t('offer.identifier'), input('identifier', {required: true, pattern: '[a-z0-9][a-z0-9._-]{0,63}'}), t('withheld.identifierHint')),
    field(t('offer.title'), input('title', {required: true})),
    field(t('offer.resourceCode'), input('resource_code')),
    field(t('col.reason'), input('reason', {required: true})),
    field(t('col.basis'), input('legal_basis', {required: true})),
  ], (d) => {
    const w = {identifier: d.identifier, title: d.title, reason: d.reason, legal_basis: d.legal_basis};
    if (d.resource_code) w.resource_code = d.resource_code;
    return w;
  }, '/api/v1/catalogue/withheld');
}

// ---------------------------------------------------------------------------------------------
// Schemas

async function schemasPage(section, {params}) {
  const scope = params.get('scope') === 'ours' ? 'ours' : 'network';
  const id = params.get('id');
  const [list, doc] = await Promise.all([
    get('/api/v1/schemas' + (scope === 'network' ? '?network=true' : '')),
    id ? get('/api/v1/schemas/' + encodeURIComponent(id) + query({version: params.get('version')})) : null,
  ]);
  section.append(h('div', {class: 'tabs'},
    h('a', {href: '#/schemas?scope=network', class: scope === 'network' ? 'active' : ''}, t('schemas.network')),
    h('a', {href: '#/schemas?scope=ours', class: scope === 'ours' ? 'active' : ''}, t('schemas.ours'))));
  if (doc) section.append(schemaView(doc.document));
  section.append(list.length === 0 ? empty(t('schemas.none'), 'schemas-none') : table([
    {label: t('col.standard'), cell: (s) => [h('strong', {}, s.title), h('div', {}, mono(s.id))]},
    {label: t('col.version'), cell: (s) => s.version},
    {label: t('col.publisher'), cell: (s) => s.region_label},
    {label: t('col.published'), cell: (s) => time(s.published_at)},
    {label: t('col.digest'), cell: (s) => mono(short(s.digest), s.digest)},
    {label: t('col.actions'), cell: (s) => h('a', {href: '#/schemas' + query({scope, id: s.id, version: s.version}), testid: 'schema-view'}, t('action.view'))},
  ], list, (s) => ({testid: 'schema', dataset: {id: s.id, version: s.version}}), 'schemas'));
  section.append(schemaForm());
}

function schemaView(doc) {
  const props = (doc.schema && doc.schema.properties) || {};
  const required = new Set((doc.schema && doc.schema.required) || []);
  return h('div', {class: 'card wide', testid: 'schema-doc'},
    h('h2', {}, doc.title, ' ', h('code', {}, doc.id + '@' + doc.version)),
    h('dl', {class: 'facts'},
      h('dt', {}, t('col.publisher')), h('dd', {}, regionName(doc.region), ' ', mono(short(doc.publisher, 16), doc.publisher)),
      h('dt', {}, t('col.published')), h('dd', {}, time(doc.published_at)),
      h('dt', {}, t('col.digest')), h('dd', {}, mono(doc.digest))),
    table([
      {label: t('col.field'), cell: ([name]) => mono(name)},
      {label: t('col.title'), cell: ([, p]) => p.title || p.description || ''},
      {label: t('col.type'), cell: ([, p]) => [].concat(p.type || '').join(' | ')},
      {label: t('col.required'), cell: ([name]) => (required.has(name) ? t('common.yes') : '')},
    ], Object.entries(props)),
    h('details', {}, h('summary', {}, t('schemas.json')), h('pre', {class: 'json'}, JSON.stringify(doc.schema, null, 2))));
}

function schemaForm() {
  const text = h('textarea', {name: 'schema', rows: 8, required: true, class: 'mono', placeholder: '{"type": "object", "properties": {…}}'});
  return addForm('schemas.publish', 'schema-form', [
    field(t('offer.identifier'), input('id', {required: true, pattern: '[a-z0-9][a-z0-9._-]{0,63}'})),
    field(t('col.version'), input('version', {required: true, value: '1.0.0'})),
    field(t('col.title'), input('title')),
    h('div', {class: 'wide'}, field(t('schemas.schema'), text)),
  ], (d) => {
    let schema;
    try {
      schema = JSON.parse(d.schema);
    } catch (e) {
      throw new Error(t('schemas.badJson', {message: e.message}));
    }
    const body = {id: d.id, version: d.version, schema};
    if (d.title) body.title = d.title;
    return body;
  }, '/api/v1/schemas');
}

// ---------------------------------------------------------------------------------------------
// Access requests

async function requestsPage(section, {params}) {
  const status = params.get('status') || '';
  const [list, cat, where] = await Promise.all([get('/api/v1/requests' + query({status})), get('/api/v1/catalogue'),
    peerRegions()]);
  const items = new Map(cat.offers.map((e) => [e.offer.identifier, e.information_items]));
  section.append(h('div', {class: 'tabs', testid: 'request-filter'},
    ['', 'pending', 'granted', 'denied'].map((s) => h('a', {href: '#/requests' + query({status: s}),
      class: s === status ? 'active' : '', testid: 'filter-' + (s || 'all')}, s ? t('status.' + s) : t('common.all')))));
  for (const direction of ['in', 'out']) {
    const rows = list.filter((r) => r.direction === direction);
    section.append(h('h2', {}, t('requests.' + direction), ' ', h('span', {class: 'count'}, String(rows.length))));
    if (rows.length === 0) {
      section.append(empty(t('requests.none'), 'requests-' + direction + '-none'));
      continue;
    }
    const body = h('tbody');
    for (const r of rows) {
      const d = r.request.document;
      const decision = r.grant
        ? h('div', {class: 'small'}, t('requests.granted', {id: short(r.grant.document.id, 8), until: r.grant.document.expires_at}),
          h('div', {class: 'muted'}, fieldsText(r.grant.document.fields, r.grant.document.masks)))
        : r.denial ? h('div', {class: 'small'}, t('requests.denied', {reason: r.denial.document.reason})) : null;
      const actions = h('div', {class: 'row-actions'});
      const formRow = h('tr', {class: 'form-row', hidden: true});
      if (direction === 'in' && r.status === 'pending') {
        const fields = d.fields.length ? d.fields.map((name) => ({name})) : (items.get(d.dataset) || []);
        const titles = new Map((items.get(d.dataset) || []).map((i) => [i.name, i.title]));
        const approveBtn = h('button', {type: 'button', class: 'primary', testid: 'approve-open'}, t('action.approve'));
        const denyBtn = h('button', {type: 'button', class: 'danger', testid: 'deny-open'}, t('action.deny'));
        const approve = approveForm(r, fields.map((f) => ({name: f.name, title: f.title || titles.get(f.name)})));
        const deny = denyForm(r);
        approveBtn.addEventListener('click', () => {
          deny.hidden = true;
          approve.hidden = !approve.hidden;
          formRow.hidden = approve.hidden;
        });
        denyBtn.addEventListener('click', () => {
          approve.hidden = true;
          deny.hidden = !deny.hidden;
          formRow.hidden = deny.hidden;
        });
        approve.hidden = true;
        deny.hidden = true;
        formRow.append(h('td', {colspan: 8}, approve, deny));
        actions.append(approveBtn, denyBtn);
      }
      body.append(h('tr', {testid: 'request-' + direction, dataset: {id: r.id, status: r.status, dataset: d.dataset}},
        h('td', {}, time(r.recorded_at)),
        h('td', {}, mono(d.dataset)),
        h('td', {}, direction === 'in' ? peerCell(r.peer, d.requester_region) : peerCell(r.peer, where.get(r.peer))),
        h('td', {}, d.purpose),
        h('td', {}, d.legal_basis),
        h('td', {class: 'small'}, fieldsText(d.fields)),
        h('td', {}, statusBadge(r.status), decision),
        h('td', {}, actions)));
      body.append(formRow);
    }
    section.append(h('div', {class: 'table-wrap'}, h('table', {testid: 'requests-' + direction},
      h('thead', {}, h('tr', {}, [t('col.recorded'), t('col.dataset'), direction === 'in' ? t('col.requester') : t('col.provider'),
        t('col.purpose'), t('col.basis'), t('col.fields'), t('col.status'), t('col.actions')].map((l) => h('th', {scope: 'col'}, l)))),
      body)));
  }
}

function approveForm(r, fields) {
  const rows = [];
  const tbody = h('tbody');
  for (const f of fields) {
    const include = h('input', {type: 'checkbox', checked: true, dataset: {field: f.name}, testid: 'grant-field-' + f.name,
      'aria-label': t('approve.include', {field: f.name})});
    const rule = select({testid: 'mask-' + f.name, 'aria-label': t('approve.maskOf', {field: f.name})},
      [['', t('mask.none')], ['redact', t('mask.redact')], ['hash', t('mask.hash')], ['keep', t('mask.keep')]]);
    const first = h('input', {type: 'number', min: 0, max: 255, value: 6, class: 'small-num', testid: 'mask-first-' + f.name,
      'aria-label': t('approve.first')});
    const last = h('input', {type: 'number', min: 0, max: 255, value: 4, class: 'small-num', testid: 'mask-last-' + f.name,
      'aria-label': t('approve.last')});
    const keep = h('span', {class: 'keep', hidden: true}, h('label', {}, t('approve.first'), ' ', first), ' ',
      h('label', {}, t('approve.last'), ' ', last));
    rule.addEventListener('change', () => {
      keep.hidden = rule.value !== 'keep';
    });
    include.addEventListener('change', () => {
      rule.disabled = !include.checked;
    });
    rows.push({name: f.name, include, rule, first, last});
    tbody.append(h('tr', {testid: 'grant-field', dataset: {field: f.name}},
      h('td', {}, h('label', {class: 'check'}, include, h('code', {}, f.name))),
      h('td', {class: 'muted'}, f.title || ''),
      h('td', {}, rule, ' ', keep)));
  }
  const expires = h('input', {type: 'text', name: 'expires', placeholder: '90d', testid: 'approve-expires',
    pattern: '[0-9]+[dhms]?'});
  const submit = h('button', {type: 'submit', class: 'primary', testid: 'approve-submit'}, t('action.signGrant'));
  return h('form', {class: 'inline-form', testid: 'approve-form', dataset: {id: r.id}, on: {submit: (ev) => {
    ev.preventDefault();
    const chosen = rows.filter((x) => x.include.checked);
    if (chosen.length === 0) {
      flash('error', t('fields.noneChosen'));
      return;
    }
    const masks = chosen.filter((x) => x.rule.value).map((x) => (x.rule.value === 'keep'
      ? {field: x.name, rule: 'keep', first: Number(x.first.value), last: Number(x.last.value)}
      : {field: x.name, rule: x.rule.value}));
    const body = {fields: chosen.map((x) => x.name), masks};
    if (expires.value.trim()) body.expires = expires.value.trim();
    act(submit, async () => {
      const g = await post('/api/v1/requests/' + r.id + '/approve', body);
      flash('ok', t('approve.done', {id: short(g.document.id, 8), until: g.document.expires_at}), true);
      render();
    });
  }}},
  h('h3', {}, t('approve.title', {dataset: r.request.document.dataset})),
  h('p', {class: 'muted small'}, t('approve.intro')),
  h('div', {class: 'table-wrap'}, h('table', {class: 'compact'},
    h('thead', {}, h('tr', {}, h('th', {}, t('col.field')), h('th', {}, t('col.title')), h('th', {}, t('approve.mask')))), tbody)),
  field(t('approve.expires'), expires, t('approve.expiresHint')),
  h('div', {class: 'actions'}, submit));
}

function denyForm(r) {
  const reason = h('textarea', {name: 'reason', rows: 2, required: true, maxlength: 2000, testid: 'deny-reason'});
  const submit = h('button', {type: 'submit', class: 'danger', testid: 'deny-submit'}, t('action.signDenial'));
  return h('form', {class: 'inline-form', testid: 'deny-form', on: {submit: (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      await post('/api/v1/requests/' + r.id + '/deny', {reason: reason.value.trim()});
      flash('ok', t('deny.done'), true);
      render();
    });
  }}},
  h('h3', {}, t('deny.title', {dataset: r.request.document.dataset})),
  field(t('col.reason'), reason, t('deny.hint')),
  h('div', {class: 'actions'}, submit));
}

// ---------------------------------------------------------------------------------------------
// Grants

// The region of each connected member, for documents that name a peer only.
async function peerRegions() {
  const peers = await get('/api/v1/peers');
  return new Map(peers.filter((p) => p.region).map((p) => [p.peer_id, p.region]));
}

async function grantsPage(section) {
  const [list, where] = await Promise.all([get('/api/v1/grants'), peerRegions()]);
  for (const direction of ['out', 'in']) {
    const rows = list.filter((g) => g.direction === direction);
    section.append(h('h2', {}, t('grants.' + direction), ' ', h('span', {class: 'count'}, String(rows.length))));
    if (rows.length === 0) {
      section.append(empty(t('grants.none'), 'grants-' + direction + '-none'));
      continue;
    }
    const body = h('tbody');
    for (const view of rows) {
      const g = view.grant.document;
      const actions = h('div', {class: 'row-actions'});
      const formRow = h('tr', {class: 'form-row', hidden: true});
      if (direction === 'out' && view.state !== 'revoked') {
        const open = h('button', {type: 'button', class: 'danger', testid: 'revoke-open'}, t('action.revoke'));
        open.addEventListener('click', () => {
          formRow.hidden = !formRow.hidden;
        });
        actions.append(open);
        formRow.append(h('td', {colspan: 8}, revokeForm(view)));
      }
      if (direction === 'in' && view.state === 'valid') {
        const fetchBtn = h('button', {type: 'button', class: 'primary', testid: 'fetch'}, t('action.fetch'));
        fetchBtn.addEventListener('click', () => act(fetchBtn, () => startFetch(g.provider + '/' + g.dataset, view.id)));
        actions.append(fetchBtn);
      }
      const revoked = view.revocation ? h('div', {class: 'small'}, t('grants.revokedBecause', {reason: view.revocation.document.reason})) : null;
      body.append(h('tr', {testid: 'grant-' + direction, dataset: {id: view.id, state: view.state, dataset: g.dataset}},
        h('td', {}, mono(short(view.id, 8), view.id)),
        h('td', {}, mono(g.dataset)),
        h('td', {}, peerCell(direction === 'out' ? g.grantee : g.provider, where.get(direction === 'out' ? g.grantee : g.provider))),
        h('td', {class: 'small'}, fieldsText(g.fields, g.masks)),
        h('td', {}, g.purpose, h('div', {class: 'muted small'}, g.legal_basis)),
        h('td', {}, time(g.not_before), ' – ', time(g.expires_at)),
        h('td', {}, badge(view.state, t('grant.' + view.state), 'state'), revoked),
        h('td', {}, actions)));
      body.append(formRow);
    }
    section.append(h('div', {class: 'table-wrap'}, h('table', {testid: 'grants-' + direction},
      h('thead', {}, h('tr', {}, [t('col.grant'), t('col.dataset'), direction === 'out' ? t('col.grantee') : t('col.provider'),
        t('col.fields'), t('col.purpose'), t('col.validity'), t('col.state'), t('col.actions')].map((l) => h('th', {scope: 'col'}, l)))),
      body)));
  }
}

function revokeForm(view) {
  const reason = h('input', {type: 'text', name: 'reason', required: true, maxlength: 2000, testid: 'revoke-reason'});
  const submit = h('button', {type: 'submit', class: 'danger', testid: 'revoke-submit'}, t('action.revoke'));
  return h('form', {class: 'inline-form', on: {submit: (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      await post('/api/v1/grants/' + view.id + '/revoke', {reason: reason.value.trim()});
      flash('ok', t('grants.revoked', {id: short(view.id, 8)}), true);
      render();
    });
  }}}, field(t('col.reason'), reason), h('div', {class: 'actions'}, submit));
}

// ---------------------------------------------------------------------------------------------
// Transfers

async function transfersPage(section, ctx) {
  const list = await get('/api/v1/transfers');
  const active = list.some((x) => ACTIVE.has(x.status));
  section.append(h('p', {class: 'muted', testid: active ? 'auto-refresh' : 'no-refresh'},
    active ? t('transfers.refreshing') : t('transfers.idle')));
  section.append(fetchForm());
  if (list.length === 0) {
    section.append(empty(t('transfers.none'), 'transfers-none'));
  } else {
    section.append(table([
      {label: t('col.started'), cell: (x) => time(x.started_at)},
      {label: t('col.direction'), cell: (x) => t('direction.' + x.direction), class: 'nowrap'},
      {label: t('col.peer'), cell: (x) => peerCell(x.peer, x.peer_region)},
      {label: t('col.dataset'), cell: (x) => [mono(x.dataset), x.version ? ' v' + x.version : '']},
      {label: t('col.status'), cell: (x) => [statusBadge(x.status), x.derived ? badge('info', t('transfers.masked'), 'derived') : null,
        x.error ? h('div', {class: 'small error-text', testid: 'transfer-error'}, x.error) : null]},
      {label: t('col.progress'), cell: (x) => progress(x)},
      {label: t('col.attempts'), cell: (x) => String(x.attempts) + (x.refetched_chunks ? ' / ' + t('transfers.refetched', {n: x.refetched_chunks}) : ''), class: 'num'},
      {label: t('col.time'), cell: (x) => (x.finished_at ? t('transfers.ms', {ms: x.total_ms}) : ''), class: 'num'},
      {label: t('col.digest'), cell: (x) => (x.digest ? mono(short(x.digest), x.digest) : '')},
      {label: t('col.actions'), cell: (x) => (x.direction === 'in' && x.status === 'done' ? contentButton(x) : '')},
    ], list, (x) => ({testid: 'transfer', dataset: {id: x.id, status: x.status, direction: x.direction, dataset: x.dataset}}), 'transfers'));
  }
  if (active) {
    refreshTimer = setTimeout(() => {
      if (ctx.alive() && currentRoute().page === 'transfers') render();
    }, REFRESH_MS);
  }
}

function progress(x) {
  const pct = x.bytes_total ? Math.floor((x.bytes_done * 100) / x.bytes_total) : (x.status === 'done' ? 100 : 0);
  return h('div', {class: 'progress'},
    h('progress', {max: 100, value: pct, testid: 'progress'}, pct + '%'),
    h('span', {class: 'small'}, pct + '% · ' + bytes(x.bytes_done) + ' / ' + bytes(x.bytes_total)));
}

function contentButton(x) {
  const b = h('button', {type: 'button', class: 'link', testid: 'download'}, t('action.download'));
  b.addEventListener('click', () => act(b, async () => {
    try {
      const res = await call('GET', '/api/v1/transfers/' + x.id + '/content');
      downloadBlob(x.dataset + '-v' + (x.version || 0) + (x.derived ? '.jsonl' : ''), await res.blob());
    } catch (e) {
      if (e.status === 401) expired(e.message); else throw e;
    }
  }));
  return b;
}

function fetchForm() {
  const target = h('input', {type: 'text', name: 'target', required: true, placeholder: '310000/sh-licence-detail', testid: 'fetch-target'});
  const version = h('input', {type: 'number', name: 'version', min: 1, testid: 'fetch-version'});
  const grant = h('input', {type: 'text', name: 'grant', testid: 'fetch-grant'});
  const submit = h('button', {type: 'submit', class: 'primary', testid: 'fetch-submit'}, t('action.fetch'));
  return h('details', {class: 'add'}, h('summary', {}, t('transfers.fetchTitle')),
    h('form', {class: 'grid-form', on: {submit: (ev) => {
      ev.preventDefault();
      const body = {target: target.value.trim()};
      if (version.value) body.version = Number(version.value);
      if (grant.value.trim()) body.grant = grant.value.trim();
      act(submit, async () => {
        const x = await post('/api/v1/fetch', body);
        flash('ok', t('fetch.started', {dataset: x.dataset, id: short(x.id, 8)}), true);
        render();
      });
    }}},
    field(t('common.target'), target, t('common.targetHint')), field(t('col.version'), version, t('fetch.versionHint')),
    field(t('col.grant'), grant, t('fetch.grantHint')), h('div', {class: 'actions wide'}, submit)));
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

async function subscriptionsPage(section) {
  const list = await get('/api/v1/subscriptions');
  const target = h('input', {type: 'text', name: 'target', required: true, placeholder: '310000/sh-enterprise-licence', testid: 'subscribe-target'});
  const submit = h('button', {type: 'submit', class: 'primary', testid: 'subscribe-submit'}, t('action.subscribe'));
  section.append(h('form', {class: 'filters', testid: 'subscribe-form', on: {submit: (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      const s = await post('/api/v1/subscriptions', {target: target.value.trim()});
      flash('ok', t('subscriptions.added', {dataset: s.dataset}) + (s.note ? ' — ' + s.note : ''), true);
      render();
    });
  }}}, field(t('common.target'), target, t('common.targetHint')), h('div', {class: 'actions'}, submit)));
  if (list.length === 0) {
    section.append(empty(t('subscriptions.none'), 'subscriptions-none'));
    return;
  }
  section.append(table([
    {label: t('col.provider'), cell: (s) => peerCell(s.publisher, s.region)},
    {label: t('col.dataset'), cell: (s) => mono(s.dataset)},
    {label: t('col.since'), cell: (s) => time(s.created_at)},
    {label: t('subscriptions.fetched'), cell: (s) => (s.fetched_version ? 'v' + s.fetched_version : t('subscriptions.nothingYet')), class: 'num'},
    {label: t('col.note'), cell: (s) => s.note || ''},
    {label: t('col.actions'), cell: (s) => {
      const b = h('button', {type: 'button', class: 'danger', testid: 'unsubscribe'}, t('action.unsubscribe'));
      b.addEventListener('click', () => act(b, async () => {
        await del('/api/v1/subscriptions' + query({target: s.publisher + '/' + s.dataset}));
        flash('ok', t('subscriptions.removed', {dataset: s.dataset}), true);
        render();
      }));
      return b;
    }},
  ], list, (s) => ({testid: 'subscription', dataset: {dataset: s.dataset}}), 'subscriptions'));
}

// ---------------------------------------------------------------------------------------------
// Provenance

async function provenancePage(section, {params}) {
  const filter = {};
  for (const k of ['kind', 'dataset', 'peer', 'since', 'until', 'limit']) filter[k] = params.get(k) || '';
  const [records, head] = await Promise.all([get('/api/v1/provenance' + query(filter)), get('/api/v1/provenance/head')]);
  const kind = select({id: 'prov-kind', testid: 'prov-kind', name: 'kind'},
    [['', t('common.all')], ...Object.keys(KINDS).map((k) => [k, kindLabel(k)])], filter.kind);
  const controls = {kind};
  for (const k of ['dataset', 'peer', 'since', 'until', 'limit']) {
    controls[k] = h('input', {id: 'prov-' + k, testid: 'prov-' + k, name: k, value: filter[k],
      type: k === 'limit' ? 'number' : 'text', min: k === 'limit' ? 1 : undefined,
      placeholder: k === 'since' || k === 'until' ? t('prov.timeHint') : undefined});
  }
  section.append(h('form', {class: 'filters', testid: 'prov-filter', on: {submit: (ev) => {
    ev.preventDefault();
    const next = {};
    for (const [k, c] of Object.entries(controls)) next[k] = c.value.trim();
    go('provenance', next);
  }}},
  field(t('prov.kind'), kind), field(t('col.dataset'), controls.dataset), field(t('col.peer'), controls.peer),
  field(t('prov.since'), controls.since), field(t('prov.until'), controls.until), field(t('prov.limit'), controls.limit),
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary', testid: 'prov-submit'}, t('action.filter')),
    h('a', {href: '#/provenance', class: 'button-link'}, t('action.reset')))));

  const h0 = head.head ? head.head.document : null;
  const check = h('button', {type: 'button', testid: 'prov-check'}, t('prov.check'));
  check.addEventListener('click', () => act(check, async () => {
    const r = await post('/api/v1/provenance/check');
    flash('ok', t('prov.checked', {size: r.size, root: short(r.root, 16), ms: r.ms}));
  }));
  section.append(h('div', {class: 'card wide', testid: 'prov-head'},
    h('p', {}, h0 ? t('prov.head', {size: h0.size, root: short(h0.root, 16), time: h0.time}) : t('prov.noHead'), ' ',
      t('prov.cosigned', {n: head.cosignatures.length})),
    h('div', {class: 'actions'}, check)));
  section.append(exportForm({dataset: filter.dataset, peer: filter.peer}));

  section.append(h('h2', {}, t('prov.timeline'), ' ', h('span', {class: 'count', testid: 'prov-count'}, String(records.length))));
  if (records.length === 0) {
    section.append(empty(t('prov.none'), 'prov-none'));
    return;
  }
  section.append(h('p', {class: 'muted small'}, t('prov.order')));
  const ol = h('ol', {class: 'timeline', testid: 'timeline'});
  for (const r of [...records].reverse()) {
    const facts = [];
    const add = (label, value) => {
      if (value !== undefined && value !== null && value !== '') facts.push(h('dt', {}, label), h('dd', {}, value));
    };
    add(t('col.dataset'), r.dataset ? [mono(r.dataset), r.version ? ' v' + r.version : ''] : null);
    add(t('col.counterparty'), r.counterparty ? peerCell(r.counterparty, r.counterparty_region) : null);
    add(t('col.purpose'), r.purpose);
    add(t('col.basis'), r.legal_basis);
    add(t('col.fields'), Array.isArray(r.fields) ? r.fields.join(', ') : r.fields);
    add(t('col.grant'), r.grant ? mono(short(r.grant, 8), r.grant) : null);
    add(t('col.digest'), r.data_digest ? mono(short(r.data_digest, 16), r.data_digest) : null);
    add(t('col.cause'), r.cause);
    add(t('col.documents'), r.documents.length ? r.documents.map((d) => d.type).join(', ') : null);
    ol.append(h('li', {class: ['event', 'kind-' + r.kind], testid: 'record', dataset: {seq: r.seq, kind: r.kind, dataset: r.dataset}},
      h('div', {class: 'event-head'}, h('span', {class: 'seq'}, '#' + r.seq), time(r.time),
        h('strong', {class: 'kind', testid: 'record-kind'}, kindLabel(r.kind)), h('code', {class: 'muted'}, r.kind)),
      h('dl', {class: 'facts compact'}, facts)));
  }
  section.append(ol);
}

function exportForm(preset) {
  const dataset = h('input', {type: 'text', name: 'dataset', value: preset.dataset || '', testid: 'export-dataset'});
  const from = h('input', {type: 'number', name: 'from_seq', min: 0, testid: 'export-from'});
  const to = h('input', {type: 'number', name: 'to_seq', min: 0, testid: 'export-to'});
  const peer = h('input', {type: 'text', name: 'peer', value: preset.peer || '', testid: 'export-peer'});
  const submit = h('button', {type: 'submit', class: 'primary', testid: 'export-submit'}, t('action.export'));
  return h('details', {class: 'add', open: Boolean(preset.open)}, h('summary', {}, t('export.title')),
    h('form', {class: 'grid-form', testid: 'export-form', on: {submit: (ev) => {
      ev.preventDefault();
      const body = {};
      if (dataset.value.trim()) body.dataset = dataset.value.trim();
      if (from.value !== '') body.from_seq = Number(from.value);
      if (to.value !== '') body.to_seq = Number(to.value);
      if (peer.value.trim()) body.peer = peer.value.trim();
      act(submit, () => exportBundle(body));
    }}},
    h('p', {class: 'muted small wide'}, t('export.intro')),
    field(t('col.dataset'), dataset), field(t('export.from'), from), field(t('export.to'), to), field(t('col.peer'), peer),
    h('div', {class: 'actions wide'}, submit)));
}

async function exportBundle(body) {
  const bundle = await post('/api/v1/provenance/export', body);
  const name = 'evidence-' + (body.dataset || ('seq-' + (body.from_seq ?? 0) + '-' + (body.to_seq ?? 'head'))) + '.json';
  download(name, JSON.stringify(bundle, null, 2));
  flash('ok', t('export.done', {name, n: bundle.entries.length, docs: bundle.documents.length}));
}

// ---------------------------------------------------------------------------------------------
// Deliveries

// What left in one session: chunks of the file and bytes, and how the session ended. A session
// that ended otherwise than by the fetcher's close, or before every chunk left, is shown as such:
// the record says what actually left, not what was offered.
function sentCell(d) {
  if (d.chunks_sent === undefined || d.chunks_sent === null) return h('span', {class: 'muted small'}, t('deliveries.uncounted'));
  const whole = d.chunk_count !== null && d.chunk_count !== undefined && d.chunks_sent === d.chunk_count;
  const counts = h('div', {class: 'small'}, t('deliveries.chunks', {sent: d.chunks_sent, count: d.chunk_count ?? '?'}), ' · ', bytes(d.bytes_sent));
  const ended = d.ended || 'closed';
  const state = whole && ended === 'closed'
    ? badge('ok', t('deliveries.whole'), 'sent-whole')
    : badge('warn', t('deliveries.ended', {how: t('ended.' + ended)}), 'sent-partial');
  return h('span', {testid: 'sent', dataset: {ended, chunks: d.chunks_sent}, title: d.cause || ''}, state, counts,
    d.cause ? h('div', {class: 'muted small'}, d.cause) : null);
}

async function deliveriesPage(section, {params}) {
  const dataset = params.get('dataset') || '';
  const [cat, list] = await Promise.all([get('/api/v1/catalogue'),
    dataset ? get('/api/v1/provenance/deliveries' + query({dataset})) : null]);
  const ids = cat.offers.map((e) => e.offer.identifier);
  const choice = h('input', {type: 'text', id: 'deliveries-dataset', testid: 'deliveries-dataset', name: 'dataset',
    value: dataset, list: 'our-datasets', required: true});
  section.append(h('form', {class: 'filters', testid: 'deliveries-form', on: {submit: (ev) => {
    ev.preventDefault();
    go('deliveries', {dataset: choice.value.trim()});
  }}},
  h('datalist', {id: 'our-datasets'}, ids.map((id) => h('option', {value: id}))),
  field(t('col.dataset'), choice, t('deliveries.hint')),
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary', testid: 'deliveries-submit'}, t('action.show')))));
  if (!dataset) {
    section.append(h('div', {class: 'quick'}, ids.map((id) => h('a', {href: '#/deliveries' + query({dataset: id}),
      class: 'chip', testid: 'deliveries-pick'}, id))));
    section.append(empty(t('deliveries.choose'), 'deliveries-choose'));
    return;
  }
  const exportBtn = h('button', {type: 'button', testid: 'deliveries-export'}, t('export.dataset', {dataset}));
  exportBtn.addEventListener('click', () => act(exportBtn, () => exportBundle({dataset})));
  section.append(h('h2', {}, t('deliveries.of', {dataset}), ' ', h('span', {class: 'count'}, String(list.length))),
    h('div', {class: 'actions'}, exportBtn));
  if (list.length === 0) {
    section.append(empty(t('deliveries.none'), 'deliveries-none'));
    return;
  }
  section.append(table([
    {label: '#', cell: (d) => String(d.seq), class: 'num'},
    {label: t('col.time'), cell: (d) => time(d.time)},
    {label: t('col.receiver'), cell: (d) => h('span', {class: 'peer'}, d.receiver_region ? h('span', {class: 'region'}, d.receiver_region) : null,
      mono(short(d.receiver, 16), d.receiver))},
    {label: t('col.version'), cell: (d) => (d.version ? 'v' + d.version : ''), class: 'num'},
    {label: t('col.fields'), cell: (d) => h('span', {class: 'small'}, d.fields)},
    {label: t('col.purpose'), cell: (d) => [d.purpose || '', d.legal_basis ? h('div', {class: 'muted small'}, d.legal_basis) : null]},
    {label: t('col.grant'), cell: (d) => (d.grant ? mono(short(d.grant, 8), d.grant) : t('deliveries.noGrant'))},
    {label: t('col.digest'), cell: (d) => (d.data_digest ? mono(short(d.data_digest), d.data_digest) : '')},
    {label: t('col.sent'), cell: sentCell},
    {label: t('col.receipt'), cell: (d) => (d.receipt_at
      ? h('span', {testid: 'receipt'}, badge('ok', t('deliveries.receipt', {seq: d.receipt_seq})), ' ', time(d.receipt_at))
      : badge('warn', t('deliveries.noReceipt'), 'no-receipt'))},
  ], list, (d) => ({testid: 'delivery', dataset: {seq: d.seq, receiver: d.receiver}}), 'deliveries'));
}

// ---------------------------------------------------------------------------------------------
// Queries (数据核验): one verify or lookup call to a provider, and the calls about one key of
// our datasets. Key values travel only in request bodies (never in the page's address), so
// they stay out of the browser history and the node's access log.

// `field=value` pairs, one a line (or separated by `;`); the value is everything after the
// first `=`.
function keyPairs(text) {
  const pairs = [];
  for (const line of text.split(/[\n;；]/)) {
    const s = line.trim();
    if (!s) continue;
    const at = s.indexOf('=');
    if (at <= 0) throw new Error(t('queries.badPair', {pair: s}));
    pairs.push({field: s.slice(0, at).trim(), value: s.slice(at + 1).trim()});
  }
  if (pairs.length === 0) throw new Error(t('queries.noPair'));
  return pairs;
}

// A provider's refusal reaches us as the API's 502 "peer P refused (CODE): MESSAGE".
function refusalOf(e) {
  if (!e || e.status !== 502 || typeof e.message !== 'string') return null;
  const m = /refused \(([a-z0-9-]+)\): ([\s\S]*)$/.exec(e.message);
  return m ? {code: m[1], message: m[2]} : null;
}

function yesNo(value, yes, no, testid) {
  return badge(value ? 'ok' : 'warn', value ? yes : no, testid);
}

function answerView(outcome, asked) {
  const a = outcome.answer.document;
  // Empty lists are left out of the signed answer.
  const matchedFields = a.matched_fields || [];
  const fields = a.fields || [];
  const facts = [];
  const add = (label, value) => {
    if (value !== undefined && value !== null && value !== '') facts.push(h('dt', {}, label), h('dd', {}, value));
  };
  add(t('queries.found'), yesNo(a.found, t('queries.foundYes'), t('queries.foundNo'), 'answer-found'));
  if (a.mode === 'verify') {
    add(t('queries.matched'), yesNo(a.matched, t('queries.matchedYes'), t('queries.matchedNo'), 'answer-matched'));
    add(t('queries.matchedFields'), h('span', {testid: 'answer-matched-fields'},
      asked.map((kv) => badge(matchedFields.includes(kv.field) ? 'ok' : 'danger',
        kv.field + (matchedFields.includes(kv.field) ? ' ✓' : ' ✗')))));
  } else {
    add(t('queries.recordCount'), h('span', {testid: 'answer-count'}, String(a.record_count),
      a.truncated ? ' ' + t('queries.truncated') : ''));
    add(t('col.fields'), fields.length ? fieldsText(fields, a.masks) : null);
  }
  add(t('col.provider'), peerCell(a.provider));
  add(t('col.dataset'), [mono(a.dataset), ' v' + a.version]);
  add(t('queries.answeredAt'), time(a.answered_at));
  add(t('col.grant'), a.grant ? mono(short(a.grant, 8), a.grant) : t('deliveries.noGrant'));
  add(t('queries.dataDigest'), mono(short(a.data_digest, 16), a.data_digest));
  add(t('queries.queryDigest'), mono(short(a.query_digest, 16), a.query_digest));
  add(t('queries.resultDigest'), mono(short(a.result_digest, 16), a.result_digest));
  add(t('queries.signature'), mono(short(outcome.answer.signature || '', 16), outcome.answer.signature));
  add(t('queries.seq'), outcome.seq !== null && outcome.seq !== undefined ? '#' + outcome.seq : null);
  const box = h('div', {class: 'card wide', testid: 'query-answer', dataset: {found: a.found, mode: a.mode,
    matched: a.matched === undefined ? '' : a.matched}},
  h('h3', {}, t('queries.answer', {mode: t('queries.mode.' + a.mode)})),
  h('dl', {class: 'facts'}, facts));
  if (a.mode === 'lookup' && outcome.records && outcome.records.length) {
    const cols = fields.length ? fields : Object.keys(outcome.records[0]);
    box.append(table(cols.map((f) => ({label: f, cell: (r) => (r[f] === undefined || r[f] === null ? '' : String(r[f]))})),
      outcome.records, () => ({testid: 'answer-record'}), 'answer-records'));
  }
  return box;
}

function queryForm(result) {
  const target = h('input', {type: 'text', name: 'target', required: true, testid: 'query-target',
    placeholder: '310000/sh-licences', spellcheck: 'false'});
  const mode = select({name: 'mode', testid: 'query-mode'}, [['verify', t('queries.mode.verify')], ['lookup', t('queries.mode.lookup')]], 'verify');
  const key = h('textarea', {name: 'key', rows: 3, required: true, testid: 'query-key', spellcheck: 'false',
    autocomplete: 'off', placeholder: 'uscc=91310000MA1FL0000X'});
  const fields = h('input', {type: 'text', name: 'fields', testid: 'query-fields', disabled: true, spellcheck: 'false'});
  const grant = h('input', {type: 'text', name: 'grant', testid: 'query-grant', spellcheck: 'false', maxlength: 32});
  const purpose = h('input', {type: 'text', name: 'purpose', maxlength: 2000, testid: 'query-purpose'});
  const basis = h('input', {type: 'text', name: 'basis', maxlength: 2000, testid: 'query-basis'});
  mode.addEventListener('change', () => {
    fields.disabled = mode.value !== 'lookup';
  });
  const submit = h('button', {type: 'submit', class: 'primary', testid: 'query-submit'}, t('queries.submit'));
  return h('form', {class: 'grid-form', testid: 'query-form', autocomplete: 'off', on: {submit: (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      const body = {target: target.value.trim(), mode: mode.value, key: keyPairs(key.value)};
      if (mode.value === 'lookup') body.fields = csv(fields.value);
      if (grant.value.trim()) body.grant = grant.value.trim();
      if (purpose.value.trim()) body.purpose = purpose.value.trim();
      if (basis.value.trim()) body.legal_basis = basis.value.trim();
      replace(result, h('p', {class: 'muted'}, t('loading')));
      try {
        const outcome = await post('/api/v1/query', body);
        replace(result, answerView(outcome, body.key));
      } catch (e) {
        const r = refusalOf(e);
        if (r) {
          replace(result, h('div', {class: 'page-error', role: 'alert', testid: 'query-refused', dataset: {code: r.code}},
            h('strong', {}, t('queries.refused')), ' ', badge('danger', r.code, 'refusal-code'), ' ', h('span', {}, r.message)));
        } else {
          replace(result, h('div', {class: 'page-error', role: 'alert', testid: 'query-error'}, e.message || String(e)));
          if (e.status === 401) throw e;
        }
      }
    });
  }}},
  field(t('queries.target'), target, t('queries.targetHint')),
  field(t('queries.modeLabel'), mode),
  h('div', {class: 'wide'}, field(t('queries.key'), key, t('queries.keyHint'))),
  field(t('col.fields'), fields, t('queries.fieldsHint')),
  field(t('col.grant'), grant, t('fetch.grantHint')),
  field(t('col.purpose'), purpose, t('queries.defaultHint')),
  field(t('col.basis'), basis, t('queries.defaultHint')),
  h('div', {class: 'actions wide'}, submit));
}

function callOutcome(r) {
  const found = r.found === undefined ? null
    : h('div', {class: 'muted small', testid: 'call-found'}, t(r.found ? 'queries.found' : 'queries.notFound'));
  if (r.kind === 'query-answered') return [badge('ok', t('queries.kind.answered')), found];
  if (r.kind === 'query-refused') return [badge('danger', t('queries.kind.refused')), r.cause ? h('div', {class: 'muted small'}, r.cause) : null];
  return [badge(r.cause ? 'warn' : 'info', t('queries.kind.sent')), found, r.cause ? h('div', {class: 'muted small'}, r.cause) : null];
}

function callsTable(list, publisher) {
  if (list.length === 0) return empty(t('queries.noCalls'), 'calls-none');
  return table([
    {label: '#', cell: (r) => String(r.seq), class: 'num'},
    {label: t('col.time'), cell: (r) => time(r.time)},
    {label: publisher ? t('col.provider') : t('queries.caller'), cell: (r) => (r.counterparty ? peerCell(r.counterparty, r.counterparty_region) : '')},
    {label: t('queries.modeLabel'), cell: (r) => (r.query_mode ? badge('info', t('queries.mode.' + r.query_mode)) : '')},
    {label: t('col.purpose'), cell: (r) => [r.purpose || '', r.legal_basis ? h('div', {class: 'muted small'}, r.legal_basis) : null]},
    {label: t('queries.outcome'), cell: callOutcome},
    {label: t('col.fields'), cell: (r) => h('span', {class: 'small'}, r.fields || '')},
    {label: t('col.version'), cell: (r) => (r.version ? 'v' + r.version : ''), class: 'num'},
    {label: t('col.grant'), cell: (r) => (r.grant ? mono(short(r.grant, 8), r.grant) : '')},
    {label: t('queries.client'), cell: (r) => r.client || ''},
  ], list, (r) => ({testid: 'call', dataset: {seq: r.seq, kind: r.kind, mode: r.query_mode || ''}}), 'calls');
}

function callsForm(offers, result) {
  const withKeys = offers.filter((e) => (e.offer.query_keys || []).length > 0);
  const dataset = h('input', {type: 'text', name: 'dataset', required: true, list: 'query-datasets', testid: 'calls-dataset',
    spellcheck: 'false'});
  const key = h('input', {type: 'text', name: 'key', required: true, testid: 'calls-key', spellcheck: 'false',
    autocomplete: 'off', placeholder: 'uscc=91310000MA1FL0000X'});
  const publisher = h('input', {type: 'text', name: 'publisher', testid: 'calls-publisher', spellcheck: 'false'});
  const submit = h('button', {type: 'submit', class: 'primary', testid: 'calls-submit'}, t('action.show'));
  return h('form', {class: 'grid-form', testid: 'calls-form', autocomplete: 'off', on: {submit: (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      const [kv] = keyPairs(key.value);
      const body = {dataset: dataset.value.trim(), key: kv};
      if (publisher.value.trim()) body.publisher = publisher.value.trim();
      const list = await post('/api/v1/provenance/queries', body);
      replace(result, h('h3', {}, t('queries.callsOf', {dataset: body.dataset, field: kv.field}), ' ',
        h('span', {class: 'count', testid: 'calls-count'}, String(list.length))), callsTable(list, body.publisher));
    });
  }}},
  h('datalist', {id: 'query-datasets'}, withKeys.map((e) => h('option', {value: e.offer.identifier},
    e.offer.title + ' — ' + e.offer.query_keys.join(', ')))),
  h('p', {class: 'muted small wide'}, t('queries.logIntro')),
  field(t('col.dataset'), dataset, withKeys.length ? t('queries.datasetHint', {ids: withKeys.map((e) => e.offer.identifier).join(', ')}) : t('queries.noQueryOffers')),
  field(t('queries.key'), key, t('queries.oneKeyHint')),
  field(t('col.publisher'), publisher, t('queries.publisherHint')),
  h('div', {class: 'actions wide'}, submit));
}

async function queriesPage(section, {params}) {
  const tab = params.get('tab') === 'log' ? 'log' : 'call';
  section.append(h('div', {class: 'tabs', testid: 'query-tabs'},
    h('a', {href: '#/queries?tab=call', class: tab === 'call' ? 'active' : '', testid: 'tab-call'}, t('queries.tabCall')),
    h('a', {href: '#/queries?tab=log', class: tab === 'log' ? 'active' : '', testid: 'tab-log'}, t('queries.tabLog'))));
  if (tab === 'call') {
    const result = h('div', {id: 'query-result', testid: 'query-result', 'aria-live': 'polite'});
    section.append(h('p', {class: 'muted'}, t('queries.intro')), queryForm(result), result);
    return;
  }
  const cat = await get('/api/v1/catalogue');
  const result = h('div', {id: 'calls-result', testid: 'calls-result', 'aria-live': 'polite'});
  section.append(callsForm(cat.offers, result), result);
}

// ---------------------------------------------------------------------------------------------
// Alarms

async function alarmsPage(section) {
  const list = await get('/api/v1/provenance/alarms');
  if (list.length === 0) {
    section.append(h('p', {class: 'ok-text', testid: 'alarms-none'}, t('alarms.none')));
    return;
  }
  const open = list.filter((a) => !a.resolved);
  section.append(h('p', {class: open.length ? 'error-text' : 'ok-text'},
    open.length ? t('alarms.intro') : t('alarms.allResolved')));
  section.append(table([
    {label: t('col.time'), cell: (a) => time(a.time)},
    {label: t('alarms.log'), cell: (a) => mono(short(a.log, 20), a.log)},
    {label: t('alarms.held'), cell: (a) => t('alarms.headText', {size: a.held.document.size, root: short(a.held.document.root, 12)})},
    {label: t('alarms.presented'), cell: (a) => t('alarms.headText', {size: a.presented.document.size, root: short(a.presented.document.root, 12)})},
    {label: t('col.cause'), cell: (a) => a.cause},
    {label: t('col.status'), cell: (a) => (a.resolved
      ? [badge('ok', t('alarms.resolved')), h('div', {class: 'muted small'}, time(a.resolved.time), ' ', a.resolved.note)]
      : badge('danger', t('alarms.open'), 'alarm-open'))},
  ], list, () => ({testid: 'alarm'}), 'alarms'));
  // One resolution per forked log: its newest presented head becomes the baseline.
  for (const log of [...new Set(open.map((a) => a.log))]) {
    section.append(resolveForm(log));
  }
}

function resolveForm(log) {
  const note = h('input', {type: 'text', name: 'note', required: true, maxlength: 2000, testid: 'resolve-note'});
  const submit = h('button', {type: 'submit', class: 'danger', testid: 'resolve-submit'}, t('alarms.resolve'));
  return h('form', {class: 'inline-form', on: {submit: (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      const done = await post('/api/v1/provenance/alarms/resolve', {log, note: note.value.trim()});
      flash('ok', t('alarms.resolvedN', {n: done.length, log: short(log, 16)}), true);
      render();
    });
  }}}, h('h3', {}, t('alarms.resolveTitle', {log: short(log, 20)})),
  h('p', {class: 'muted small'}, t('alarms.resolveHelp')),
  field(t('alarms.note'), note), h('div', {class: 'actions'}, submit));
}

// ---------------------------------------------------------------------------------------------
// The federation charter: members by region, proposals with a sign action, history

async function federationPage(section) {
  let fed;
  try {
    fed = await get('/api/v1/federation');
  } catch (e) {
    if (e.status !== 404) throw e;
    section.append(empty(t('federation.none'), 'federation-none'));
    return;
  }
  const [history, proposals] = await Promise.all([get('/api/v1/federation/history'),
    get('/api/v1/federation/proposals')]);
  const c = fed.charter;
  section.append(h('p', {class: c.state === 'in-force' ? 'ok-text' : 'error-text', testid: 'federation-state'},
    t('federation.summary', {name: c.name, id: c.federation, version: c.version,
      state: t('federation.state.' + c.state), n: fed.policy.threshold, role: t('role.' + fed.policy.signers)}),
    ' ', t('federation.expires'), ' ', time(c.expires)));
  section.append(h('h2', {}, t('federation.members', {n: fed.members.length})));
  const members = [...fed.members].sort((a, b) => String(a.region).localeCompare(String(b.region))
    || a.member_id.localeCompare(b.member_id));
  section.append(table([
    {label: t('col.region'), cell: (m) => regionName(m.region)},
    {label: t('federation.role'), cell: (m) => t('role.' + m.role)},
    {label: t('federation.memberId'), cell: (m) => mono(m.member_id)},
    {label: t('col.organisation'), cell: (m) => m.organisation},
    {label: t('col.peer'), cell: (m) => h('ul', {class: 'plain'}, m.peers.map((p) => h('li', {}, mono(short(p, 16), p))))},
  ], members, () => ({testid: 'member'}), 'members'));
  section.append(h('h2', {}, t('federation.proposals', {n: proposals.length})));
  if (proposals.length === 0) {
    section.append(empty(t('federation.noProposals'), 'proposals-none'));
  } else {
    section.append(table([
      {label: t('col.digest'), cell: (p) => mono(short(p.digest, 16), p.digest)},
      {label: t('federation.version'), cell: (p) => String(p.version)},
      {label: t('federation.signatures'), cell: (p) => String(p.signers.length)},
      {label: t('col.status'), cell: (p) => (p.ready ? badge('ok', t('federation.ready'))
        : h('span', {class: 'muted small'}, p.lacking || ''))},
      {label: t('col.actions'), cell: (p) => {
        const button = h('button', {type: 'button', class: 'primary', testid: 'proposal-sign'}, t('federation.sign'));
        button.addEventListener('click', () => act(button, async () => {
          await post('/api/v1/federation/proposals/' + encodeURIComponent(p.digest) + '/sign');
          flash('ok', t('federation.signed', {digest: short(p.digest, 16)}), true);
          render();
        }));
        return button;
      }},
    ], proposals, () => ({testid: 'proposal'}), 'proposals'));
  }
  section.append(h('h2', {}, t('federation.history')));
  section.append(table([
    {label: t('federation.version'), cell: (v) => String(v.version)},
    {label: t('col.digest'), cell: (v) => mono(short(v.digest, 16), v.digest)},
    {label: t('federation.issued'), cell: (v) => time(v.issued)},
    {label: t('federation.expires'), cell: (v) => time(v.expires)},
    {label: t('federation.memberCount'), cell: (v) => String(v.members)},
    {label: t('federation.signedBy'), cell: (v) => (v.signed_by_previous.length ? v.signed_by_previous : v.signed_by_own).join(', ')},
  ], [...history].reverse(), () => ({testid: 'charter-version'}), 'history'));
}

// ---------------------------------------------------------------------------------------------
// Start

setLang(lang);
if (token()) {
  start().catch((e) => {
    if (e.status !== 401) loginView(e.message);
  });
} else {
  loginView();
}
