// Linli operator dashboard: one page over the hub's API. No framework, no
// build step, nothing from outside the hub. DOM ids and data-* attributes
// are stable hooks for the browser tests (shared/test/e2e/dashboard_test.go).
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

const S = {
  lang: localStorage.getItem('linli.lang') || 'zh-CN',
  cat: {},
  me: null,
  csrf: '',
  sites: [],
  site: '',
  view: 'map',
  reports: [],
  alarms: [],
  devices: [],
  notices: [],
  activities: [],
  building: '',
  report: '',
  es: null,
  known: new Set(), // alarm ids seen, to sound only new ones
  openTech: new Set(), // devices whose sync details the operator opened
  editNotice: '', // the notice the form edits ('' : a new one)
  editActivity: '',
  search: null, // ids the last search found (null: no search)
  selected: new Set(), // reports picked for a bulk action
  assignees: {}, // site → GET /api/v1/sites/{site}/assignees
  mergeAsk: null, // {id, into}: the merge the operator is asked to confirm
};

// ---- i18n -------------------------------------------------------------
async function loadLang(lang) {
  const r = await fetch(`/static/i18n/${lang}.json`);
  S.cat = await r.json();
  S.lang = lang;
  localStorage.setItem('linli.lang', lang);
  document.documentElement.lang = lang;
  $$('[data-i18n]').forEach(e => { e.textContent = t(e.dataset.i18n); });
  $$('[data-i18n-placeholder]').forEach(e => { e.placeholder = t(e.dataset.i18nPlaceholder); });
  $$('[data-i18n-aria-label]').forEach(e => { e.setAttribute('aria-label', t(e.dataset.i18nAriaLabel)); });
  const other = lang === 'zh-CN' ? 'English' : '中文';
  $('#lang').textContent = other;
  $('#lang-login').textContent = other;
  document.title = t('app.title');
}
function t(key, vars = {}) {
  let s = S.cat[key] ?? key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}
const locale = () => (S.lang === 'zh-CN' ? 'zh-CN' : 'en-GB');
// Times are the site's wall clock (its time_zone from GET /api/v1/sites),
// wherever the operator's browser is.
const zone = () => (S.sites.find(s => s.id === S.site) || {}).time_zone || 'Asia/Shanghai';
const fmtTime = ts => ts ? new Date(ts).toLocaleString(locale(), { timeZone: zone(), month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }) : '—';
const fmtDate = ts => new Date(ts).toLocaleDateString(locale(), { timeZone: zone(), year: 'numeric', month: 'long', day: 'numeric' });
// zoneParts is an instant as the site's calendar and clock.
function zoneParts(ms) {
  const p = {};
  new Intl.DateTimeFormat('en-US', { timeZone: zone(), hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' })
    .formatToParts(new Date(ms)).forEach(x => { p[x.type] = x.value; });
  return p;
}
const pad2 = n => String(n).padStart(2, '0');
// toZoneInput shows an instant in a datetime-local field as the site's time.
function toZoneInput(ts) {
  if (!ts) return '';
  const p = zoneParts(new Date(ts).getTime());
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
}
// fromZoneInput reads a datetime-local field as the site's time and gives
// the instant as RFC 3339 with the site's offset ('' for an empty field).
function fromZoneInput(v) {
  if (!v) return '';
  const [d, hm] = v.split('T'), [y, mo, da] = d.split('-').map(Number), [h, mi] = hm.split(':').map(Number);
  const wall = Date.UTC(y, mo - 1, da, h, mi);
  const off = ms => { const p = zoneParts(ms); return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - ms; };
  let at = wall - off(wall);
  at = wall - off(at); // across a change of offset
  const o = Math.round(off(at) / 60000), sign = o < 0 ? '-' : '+';
  return `${y}-${pad2(mo)}-${pad2(da)}T${pad2(h)}:${pad2(mi)}:00${sign}${pad2(Math.floor(Math.abs(o) / 60))}:${pad2(Math.abs(o) % 60)}`;
}
function ago(ts) {
  const s = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 60) return t('ago.s', { n: Math.floor(s) });
  if (s < 3600) return t('ago.m', { n: Math.floor(s / 60) });
  if (s < 86400) return t('ago.h', { n: Math.floor(s / 3600) });
  return t('ago.d', { n: Math.floor(s / 86400) });
}
// hlcTime turns a hybrid logical clock (wall ms << 16 | logical) into ms.
const hlcTime = h => Math.floor(Number(h) / 65536);

// el builds an element; text is always set as text, never as markup.
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}
const SVG = 'http://www.w3.org/2000/svg';
function sv(tag, attrs = {}, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}

function toast(msg, err = false) {
  const e = $('#toast');
  e.textContent = msg;
  e.className = err ? 'err' : '';
  e.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { e.hidden = true; }, err ? 6000 : 2500);
}

// ---- API --------------------------------------------------------------
class APIError extends Error {
  constructor(status, data, fallback) {
    super((data && data.error) || fallback);
    this.status = status;
    this.field = (data && data.field) || '';
    this.code = (data && data.code) || '';
  }
}
// errText words an API refusal from the catalogue: by field and code
// (err.expires.past), by field (err.title), by code alone (err.code.forbidden);
// the server's English only for a case the catalogue does not know.
function errText(e) {
  const keys = [];
  if (e.field) keys.push(`err.${e.field}.${e.code}`, `err.${e.field}`, `err.any.${e.code}`);
  if (e.code) keys.push(`err.code.${e.code}`);
  const field = S.cat['field.' + e.field] !== undefined ? t('field.' + e.field) : e.field;
  for (const k of keys) if (S.cat[k] !== undefined) return t(k, { field });
  return t('error.generic', { msg: e.message });
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (method !== 'GET') opts.headers['X-CSRF-Token'] = S.csrf;
  if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  if (r.status === 204) return null;
  const ct = r.headers.get('Content-Type') || '';
  const data = ct.includes('json') ? await r.json() : await r.text();
  if (!r.ok) {
    if (r.status === 401 && path !== '/api/v1/login') showLogin();
    throw new APIError(r.status, typeof data === 'object' ? data : null, r.statusText);
  }
  return data;
}
// write runs an operator action and says how it went.
async function write(fn, okMsg) {
  try {
    const out = await fn();
    if (okMsg) toast(okMsg);
    return out;
  } catch (e) {
    toast(e instanceof APIError ? errText(e) : t('error.generic', { msg: e.message }), true);
    throw e;
  }
}
const q = (path, params) => {
  const u = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== undefined));
  return u.toString() ? `${path}?${u}` : path;
};

// ---- login ------------------------------------------------------------
function showLogin() {
  if (S.es) { S.es.close(); S.es = null; }
  Object.values(pending).forEach(clearTimeout);
  S.me = null;
  $('#me').textContent = '';
  $('#app').hidden = true;
  $('#login-screen').hidden = false;
  document.body.dataset.view = 'login';
  document.body.dataset.ready = 'true';
}

async function login(ev) {
  ev.preventDefault();
  const token = $('#login-token').value.trim();
  const body = token ? { token } : { name: $('#login-name').value.trim(), password: $('#login-password').value };
  $('#login-error').textContent = '';
  try {
    const me = await api('POST', '/api/v1/login', body);
    $('#login-password').value = '';
    $('#login-token').value = '';
    await start(me, 'map'); // a new login starts on the map, not on a tab left in the address
  } catch (e) {
    $('#login-error').textContent = e instanceof APIError && S.cat['login.err.' + (e.field || e.code)] !== undefined ?
      t('login.err.' + (e.field || e.code)) : t('login.failed', { msg: e.message });
  }
}

async function start(me, view) {
  document.body.dataset.ready = 'false';
  S.me = me;
  S.csrf = me.csrf || S.csrf;
  document.body.classList.toggle('viewer', me.role === 'viewer');
  $$('[data-admin]').forEach(e => { e.hidden = !me.admin; });
  $('#login-screen').hidden = true;
  $('#app').hidden = false;
  S.sites = await api('GET', '/api/v1/sites');
  const sel = $('#site');
  fillSwitcher();
  const saved = localStorage.getItem('linli.site');
  S.site = S.sites.some(s => s.id === saved) ? saved : (S.sites[0] || {}).id || '';
  sel.value = S.site;
  await refreshAll();
  connectStream();
  fillSiteLists();
  go(view || location.hash.slice(1) || 'map');
  $('#me').textContent = `${me.name} · ${t('role.' + me.role)}`;
  document.body.dataset.ready = 'true';
}
const siteName = s => (S.lang === 'en' ? s.name_en || s.name : s.name) || s.id;
// ALL_SITES is the site switcher's "all my sites": the district view of
// every site the operator may see, not a site of its own.
const ALL_SITES = '*';
function fillSwitcher() {
  const sel = $('#site');
  sel.replaceChildren(...S.sites.map(s => el('option', { value: s.id }, siteName(s))),
    el('option', { value: ALL_SITES }, t('district.all')));
  sel.value = S.view === 'district' ? ALL_SITES : S.site;
}
// fillSiteLists offers the caller's sites by name wherever a site is
// chosen: a new notice or activity (the current site first), an operator's
// sites (ticked), an API token's.
function fillSiteLists() {
  $$('select.site-list').forEach(sel => {
    const keep = sel.value;
    sel.replaceChildren(...S.sites.map(s => el('option', { value: s.id }, siteName(s))));
    sel.value = S.sites.some(s => s.id === keep) ? keep : S.site;
  });
  const tk = $('#tk-sites'), keep = tk.value;
  tk.replaceChildren(el('option', { value: '' }, t('tokens.all_sites')), ...S.sites.map(s => el('option', { value: s.id }, siteName(s))));
  tk.value = keep;
  const fs = $('#of-sites'), ticked = new Set($$('input', fs).filter(i => i.checked).map(i => i.value));
  fs.replaceChildren(el('legend', {}, t('admin.sites')), ...S.sites.map(s => el('label', { class: 'check' },
    el('input', { type: 'checkbox', value: s.id, 'data-site': s.id, checked: ticked.has(s.id) }), siteName(s))));
}
const plan = () => (S.sites.find(s => s.id === S.site) || {}).plan;

// ---- navigation -------------------------------------------------------
function go(view) {
  if (!$(`section[data-view="${view}"]`)) view = 'map';
  S.view = view;
  $$('section[data-view]').forEach(s => { s.hidden = s.dataset.view !== view; });
  $$('[data-nav]').forEach(b => { b.setAttribute('aria-current', b.dataset.nav === view ? 'page' : 'false'); });
  document.body.dataset.view = view;
  // The switcher says "all my sites" on the district view only; any other
  // view is of the current site.
  $('#site').value = view === 'district' ? ALL_SITES : S.site;
  if (location.hash !== '#' + view) history.replaceState(null, '', '#' + view);
  if (view === 'map') renderMap(); // labels are fitted to their shapes only while shown
  ({ ratings: loadRatings, admin: loadAdmin, activities: loadActivities, notices: loadNotices, district: loadDistrict }[view] || (() => {}))();
}

async function refreshAll() {
  S.assignees = {};
  await Promise.all([loadReports(), loadAlarms(), loadDevices(), loadNotices(), loadActivities()]);
}

// ---- data -------------------------------------------------------------
// Reports closed longer than the hub's memory hold are archived in its
// store; listing them reads years of them. The list is read again on
// every report, vote and rating the stream brings, so it leaves them out
// unless the triage view asks for closed reports or a search is shown.
function wantArchived() {
  const st = $('#f-status').value;
  return !!S.search || st === 'all' || st === 'resolved' || st === 'rejected';
}
async function loadReports() {
  const archived = wantArchived();
  S.reports = await api('GET', q('/api/v1/reports', { site: S.site, archived: archived ? '' : 0 }));
  S.reportsArchived = archived;
  fillBulkAssignees().catch(() => {}); // the queue and the map need not wait for it
  renderMap();
  renderTriage();
  if (S.report) loadReport(S.report);
  if (S.building) loadBuilding(S.building);
}
async function loadAlarms() {
  S.alarms = await api('GET', q('/api/v1/alarms', { site: S.site }));
  const fresh = S.alarms.filter(a => !S.known.has(a.id + a.since));
  S.alarms.forEach(a => S.known.add(a.id + a.since));
  renderAlarms();
  renderMap();
  if (fresh.length && !fresh.every(a => a.acked)) cue();
  if (S.building) loadBuilding(S.building);
}
async function loadDevices() {
  S.devices = await api('GET', q('/api/v1/devices', { site: S.site }));
  renderHealth();
  renderFleet();
  renderMap();
}

// ---- sound and visual cue for a new alarm -------------------------------
let audio;
function cue() {
  const b = $('#alarm-banner');
  b.classList.remove('flash');
  void b.offsetWidth; // restart the animation
  b.classList.add('flash');
  try {
    audio = audio || new AudioContext();
    const now = audio.currentTime;
    for (let i = 0; i < 3; i++) {
      const o = audio.createOscillator();
      const g = audio.createGain();
      o.frequency.value = 880;
      g.gain.setValueAtTime(0.2, now + i * 0.35);
      g.gain.setValueAtTime(0, now + i * 0.35 + 0.2);
      o.connect(g).connect(audio.destination);
      o.start(now + i * 0.35);
      o.stop(now + i * 0.35 + 0.22);
    }
  } catch { /* no audio device: the banner still flashes */ }
  document.body.dataset.cue = String(Date.now());
}

// ---- map --------------------------------------------------------------
function buildingIDs() {
  const p = plan();
  if (p) return p.buildings.map(b => b.id);
  const ids = new Set([...S.reports.map(r => r.building).filter(Boolean), ...S.alarms.map(a => a.building).filter(Boolean)]);
  return [...ids].sort();
}
function layout() {
  const p = plan();
  if (p) return p;
  // No plan: a grid, three buildings a row.
  const ids = buildingIDs();
  return { width: 900, height: Math.max(1, Math.ceil(ids.length / 3)) * 160 + 40, features: [],
    buildings: ids.map((id, i) => ({ id, name: id, x: 40 + (i % 3) * 290, y: 40 + Math.floor(i / 3) * 160, w: 240, h: 110 })) };
}
const isOpen = r => !r.merged_into && (r.status === 'submitted' || r.status === 'accepted' || r.status === 'in_progress');

function renderMap() {
  const svg = $('#map');
  const L = layout();
  svg.setAttribute('viewBox', `0 0 ${L.width} ${L.height}`);
  svg.setAttribute('aria-label', plan() ? `${t('map.title')}: ${siteName(S.sites.find(s => s.id === S.site) || {})}` : t('map.no_plan'));
  const roads = (L.features || []).filter(f => f.kind === 'road');
  const kids = [], fits = [];
  for (const f of L.features || []) {
    kids.push(shape(f, { class: 'feature-' + f.kind, 'aria-hidden': 'true' }));
    const label = S.lang === 'en' ? f.label_en || f.label : f.label;
    if (label) {
      const c = centre(f), box = bounds(f);
      const tx = sv('text', { class: 'feature-label', x: c[0], y: c[1], 'text-anchor': 'middle', 'dominant-baseline': 'middle' }, label);
      kids.push(tx);
      fits.push([tx, box.w - 4, 8]);
    }
  }
  for (const b of L.buildings) {
    const open = S.reports.filter(r => r.building === b.id && isOpen(r)).length;
    const late = S.reports.filter(r => r.building === b.id && r.overdue).length;
    const alarms = S.alarms.filter(a => a.building === b.id);
    const acked = alarms.length > 0 && alarms.every(a => a.acked);
    const box = labelBox(b, roads);
    const c = [box.x + box.w / 2, box.y + box.h / 2];
    const name = (S.lang === 'en' ? b.name_en || b.name : b.name) || b.id;
    const sub = [open ? t('map.open_reports', { n: open }) : '', late ? t('map.overdue', { n: late }) : '',
      alarms.length ? t('map.alarms', { n: alarms.length }) : ''].filter(Boolean).join(' · ');
    const title = sv('text', { x: c[0], y: c[1] - 6, 'text-anchor': 'middle' }, name);
    const subt = sv('text', { class: 'sub', x: c[0], y: c[1] + 14, 'text-anchor': 'middle' }, sub);
    // A button named by its text (the building and what is open there),
    // so what a screen reader says is what is shown.
    const g = sv('g', { class: 'building' + (S.building === b.id ? ' sel' : ''), 'data-building': b.id, 'data-open': open, 'data-overdue': late,
      'data-alarm': alarms.length ? 1 : 0, 'data-acked': acked ? 1 : 0, tabindex: 0, role: 'button',
      'aria-pressed': S.building === b.id ? 'true' : 'false' },
      shape(b, {}), title, subt);
    fits.push([title, box.w - 12], [subt, box.w - 12]);
    g.addEventListener('click', () => pickBuilding(b.id));
    g.addEventListener('keydown', e => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pickBuilding(b.id); } });
    kids.push(g);
    // Device health icons of the building's devices.
    (b.devices || []).forEach((id, i) => {
      const d = S.devices.find(x => x.id === id);
      const cls = d ? health(d).cls : 'off';
      const x = (b.points ? Math.min(...b.points.map(p => p[0])) : b.x) + 14 + i * 22;
      const y = (b.points ? Math.min(...b.points.map(p => p[1])) : b.y) + 14;
      kids.push(sv('g', { class: 'dev ' + cls, 'data-device': id, role: 'img', 'aria-label': d ? `${id}: ${health(d).text}` : id },
        sv('circle', { cx: x, cy: y, r: 8 }), sv('title', {}, d ? `${id}: ${health(d).text}` : id)));
    });
  }
  svg.replaceChildren(...kids);
  for (const [tx, w, min] of fits) fitText(tx, w, min);
  const late = S.reports.filter(r => r.overdue).length;
  $('#map-overdue').hidden = !late;
  $('#map-overdue').textContent = t('map.overdue_total', { n: late });
}
// fitText shrinks a label until it fits width (plan units), down to min
// units, then cuts it with an ellipsis: a long English name must not run
// out of its building over a road. Only a drawn map can be measured.
function fitText(tx, width, min = 9) {
  const full = tx.textContent;
  let len = tx.getComputedTextLength();
  if (!full || !len || len <= width) return;
  const size = parseFloat(getComputedStyle(tx).fontSize);
  const to = Math.max(min, Math.floor(size * width / len * 10) / 10);
  tx.style.fontSize = to + 'px';
  for (let n = full.length - 1; n > 0 && tx.getComputedTextLength() > width; n--) tx.textContent = full.slice(0, n) + '…';
}
function bounds(s) {
  if (s.points && s.points.length) {
    const xs = s.points.map(p => p[0]), ys = s.points.map(p => p[1]);
    return { x: Math.min(...xs), y: Math.min(...ys), w: Math.max(...xs) - Math.min(...xs), h: Math.max(...ys) - Math.min(...ys) };
  }
  return { x: s.x, y: s.y, w: s.w, h: s.h };
}
function inShape(s, x, y) {
  if (!s.points || !s.points.length) return x > s.x && x < s.x + s.w && y > s.y && y < s.y + s.h;
  let inside = false; // even-odd ray cast
  for (let i = 0, j = s.points.length - 1; i < s.points.length; j = i++) {
    const [xi, yi] = s.points[i], [xj, yj] = s.points[j];
    if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
// labelBox is the widest rectangle inside a building and clear of roads
// (at least two lines high where one is), on the grid of the building's
// and the roads' edges: the centre of an L-shaped block's bounding box can
// lie outside it, or on a road that passes under it.
function labelBox(b, roads) {
  const bb = bounds(b);
  const edges = (pick, lo, hi) => [...new Set([...(b.points || []).map(pick), lo, hi,
    ...roads.flatMap(r => { const rb = bounds(r); return pick === X ? [rb.x, rb.x + rb.w] : [rb.y, rb.y + rb.h]; })])]
    .filter(v => v >= lo && v <= hi).sort((p, q) => p - q);
  const xs = edges(X, bb.x, bb.x + bb.w), ys = edges(Y, bb.y, bb.y + bb.h);
  const free = xs.slice(1).map((x, i) => ys.slice(1).map((y, j) => {
    const cx = (xs[i] + x) / 2, cy = (ys[j] + y) / 2;
    return inShape(b, cx, cy) && !roads.some(r => inShape(r, cx, cy));
  }));
  let best = null, score = null;
  for (let i1 = 0; i1 < xs.length - 1; i1++) for (let i2 = i1 + 1; i2 < xs.length; i2++)
    for (let j1 = 0; j1 < ys.length - 1; j1++) for (let j2 = j1 + 1; j2 < ys.length; j2++) {
      let ok = true;
      for (let i = i1; ok && i < i2; i++) for (let j = j1; ok && j < j2; j++) ok = free[i][j];
      if (!ok) continue;
      const w = xs[i2] - xs[i1], h = ys[j2] - ys[j1], sc = [h >= 48 ? 1 : 0, w, h];
      if (!score || sc[0] > score[0] || (sc[0] === score[0] && (sc[1] > score[1] || (sc[1] === score[1] && sc[2] > score[2])))) { best = { x: xs[i1], y: ys[j1], w, h }; score = sc; }
    }
  return best || bb;
}
const X = p => p[0], Y = p => p[1];
function shape(s, attrs) {
  if (s.points && s.points.length) return sv('polygon', { ...attrs, points: s.points.map(p => p.join(',')).join(' ') });
  return sv('rect', { ...attrs, x: s.x, y: s.y, width: s.w, height: s.h, rx: 6 });
}
function centre(s) {
  if (s.points && s.points.length) {
    const xs = s.points.map(p => p[0]), ys = s.points.map(p => p[1]);
    return [(Math.min(...xs) + Math.max(...xs)) / 2, (Math.min(...ys) + Math.max(...ys)) / 2];
  }
  return [s.x + s.w / 2, s.y + s.h / 2];
}

function pickBuilding(id) {
  S.building = id;
  renderMap();
  loadBuilding(id);
}
async function loadBuilding(id) {
  const b = await api('GET', `/api/v1/sites/${encodeURIComponent(S.site)}/buildings/${encodeURIComponent(id)}`);
  const none = el('p', { class: 'muted' }, t('bld.none'));
  const p = $('#building-panel');
  p.dataset.building = id;
  const name = b.plan ? ((S.lang === 'en' ? b.plan.name_en || b.plan.name : b.plan.name) || id) : id;
  const doors = new Map((b.plan?.doors || []).map(d => [d, null]));
  b.doors.forEach(d => doors.set(d.door, d));
  const sensors = new Map((b.plan?.sensors || []).map(s => [s, null]));
  b.sensors.forEach(s => sensors.set(s.sensor, s));
  p.replaceChildren(
    el('h2', {}, name),
    el('h3', {}, t('bld.alarms')),
    b.alarms.length ? el('ul', { class: 'list' }, b.alarms.map(alarmItem)) : none.cloneNode(true),
    el('h3', {}, t('bld.reports')),
    b.reports.filter(r => !r.merged_into).length ? el('ul', { class: 'list' }, b.reports.filter(r => !r.merged_into).map(r =>
      el('li', { 'data-report': r.id }, el('span', { class: 'badge st-' + r.status }, t('st.' + r.status)),
        el('button', { class: 'link', onclick: () => { go('triage'); openReport(r.id); } }, r.title), el('span', { class: 'muted' }, `${t('cat.' + r.category)} · +${r.votes}`)))) : none.cloneNode(true),
    el('h3', {}, t('bld.doors')),
    doors.size ? el('ul', { class: 'list' }, [...doors].map(([d, s]) => el('li', { 'data-door': d }, el('strong', {}, d),
      s ? el('span', { class: 'badge' + (s.result === 'forced' || s.result === 'held_open' ? ' off' : ''), 'data-result': s.result }, doorText(s.result, s.reason)) : '',
      s ? el('span', { class: 'muted' }, fmtTime(s.time)) : ''))) : none.cloneNode(true),
    el('h3', {}, t('bld.sensors')),
    sensors.size ? el('ul', { class: 'list' }, [...sensors].map(([n, s]) => el('li', { 'data-sensor': n }, el('strong', {}, n),
      s ? el('span', { class: 'badge' + (s.alarm ? ' off' : ''), 'data-kind': s.kind }, sensorText(s.kind, s.value, s.alarm)) : '',
      s ? el('span', { class: 'muted' }, fmtTime(s.time)) : ''))) : none.cloneNode(true),
    el('h3', {}, t('bld.devices')),
    el('div', { class: 'health' }, (b.plan?.devices || []).map(id => devCard(S.devices.find(d => d.id === id) || { id, role: '' }))),
  );
}

// doorText words a door's last access result (门 开/关, 刷卡通过…).
const doorText = (result, reason) => t('door.' + result) + (reason && S.cat['reason.' + reason] ? ` (${t('reason.' + reason)})` : '');
// sensorText words a reading with its unit: °C, %RH, 烟感 报警/正常.
function sensorText(kind, value, alarm) {
  const v = Number(value);
  switch (kind) {
    case 'temperature': return t('sensor.temperature', { v: v.toFixed(1) });
    case 'humidity': return t('sensor.humidity', { v: v.toFixed(0) });
    case 'smoke': case 'water': return t(`sensor.${kind}.${alarm || v >= 1 ? 'alarm' : 'ok'}`);
    case 'heat': return t('sensor.heat', { v: v.toFixed(1) }) + (alarm ? ' · ' + t('sensor.alarm') : '');
    case 'forced': return t('door.forced');
  }
  return `${t('kind.' + kind)} ${value}`;
}

// ---- device health ----------------------------------------------------
function health(d) {
  if (d.online) {
    if (d.backlog > 0) return { cls: 'lag', text: t('health.online') + ' · ' + t('health.backlog', { n: d.backlog }) };
    return { cls: 'on', text: t('health.online') };
  }
  return { cls: 'off', text: d.last_seen ? t('health.offline_since', { t: fmtTime(d.last_seen) }) : t('health.never') };
}
function devCard(d) {
  const h = health(d);
  return el('div', { class: 'dev-card ' + h.cls, 'data-device': d.id, 'data-online': d.online ? 1 : 0 },
    el('span', { class: 'icon' }), el('strong', {}, d.id), el('small', {}, `${d.role ? t('role.' + d.role) : ''} ${d.version || ''}`),
    el('small', {}, h.text),
    d.backlog ? el('small', {}, t('health.backlog', { n: d.backlog })) : null,
    d.oldest_unsynced ? el('small', {}, t('health.oldest', { age: ago(d.oldest_unsynced) })) : null);
}
function renderHealth() { $('#health').replaceChildren(...S.devices.map(devCard)); }

function renderFleet() {
  $('#fleet tbody').replaceChildren(...S.devices.map(d => {
    const h = health(d);
    return el('tr', { 'data-device': d.id }, el('td', {}, d.id), el('td', {}, d.role ? t('role.' + d.role) : '—'), el('td', {}, d.site),
      el('td', {}, d.version || '—'), el('td', {}, el('span', { class: 'badge ' + (d.online ? 'on' : 'off') }, h.text)),
      el('td', {}, fmtTime(d.last_seen)), el('td', {}, d.backlog ? t('health.backlog', { n: d.backlog }) : t('fleet.synced')),
      el('td', {}, d.oldest_unsynced ? ago(d.oldest_unsynced) : '—'),
      // The sync cursors are for whoever debugs a device, not the daily view.
      el('td', {}, el('details', { class: 'tech', open: S.openTech.has(d.id), ontoggle: e => { S.openTech[e.target.open ? 'add' : 'delete'](d.id); } }, el('summary', {}, t('fleet.details')),
        el('div', { 'data-acked': d.acked_seq }, t('fleet.acked', { n: d.acked_seq })), el('div', { 'data-down': d.down_cursor }, t('fleet.down', { n: d.down_cursor })))));
  }));
}

// ---- all my sites -------------------------------------------------------
// One row per site the operator may see: open and overdue reports, alarms
// open (and of them still sounding), devices in good health; the site's
// name opens it.
async function loadDistrict() {
  // Emptied first: no row of an earlier caller or an older count stays.
  const table = $('#district');
  table.dataset.ready = '0';
  $('tbody', table).replaceChildren();
  const d = await api('GET', '/api/v1/district');
  const num = (n, cls) => el('td', { class: n > 0 && cls ? cls : '' }, String(n));
  $('#district tbody').replaceChildren(...d.sites.map(s => {
    const named = S.sites.find(x => x.id === s.site) || { id: s.site, name: s.name, name_en: s.name_en };
    return el('tr', { 'data-site': s.site },
      el('th', { scope: 'row' }, el('button', { type: 'button', class: 'link', 'data-site': s.site }, siteName(named))),
      num(s.open_reports), num(s.overdue_reports, 'late'),
      el('td', { class: s.open_alarms > 0 ? 'late' : '' }, s.active_alarms < s.open_alarms
        ? t('district.alarms_n', { n: s.open_alarms, active: s.active_alarms }) : String(s.open_alarms)),
      el('td', { class: s.devices_stale > 0 ? 'late' : '' }, t('district.devices_n', { ok: s.devices_healthy, n: s.devices })));
  }));
  table.dataset.ready = '1';
}

// ---- alarms -----------------------------------------------------------
// Each alarm shows its severity, what and where, whether the source still
// reports it, its age and who acknowledged it. Acknowledge and clear each
// ask for confirmation (with an optional note); a clear the hub refuses
// because the source is still active says so.
const where = a => [a.building, a.place || a.source].filter(Boolean).join(' · ');
function alarmItem(a) {
  const kind = t('alarm.kind.' + a.kind);
  return el('li', { class: 'alarm sev-' + a.severity, 'data-alarm-id': a.id, 'data-acked': a.acked ? 1 : 0, 'data-active': a.active ? 1 : 0, 'data-severity': a.severity },
    el('span', { class: 'badge sev' }, t('alarm.sev.' + a.severity)),
    el('strong', {}, `${kind} · ${where(a)}`),
    el('span', { class: 'badge ' + (a.active ? 'off' : 'on'), 'data-state': a.active ? 'active' : 'cleared' }, t(a.active ? 'alarm.state.active' : 'alarm.state.cleared')),
    el('span', {}, t('alarm.age', { t: fmtTime(a.since), age: ago(a.since) })),
    a.acked ? el('span', { 'data-acked-by': a.acked_by }, t('alarm.acked_by', { who: a.acked_by, t: fmtTime(a.acked_at) })) :
      el('button', { class: 'write', 'data-ack': a.id, onclick: () => alarmAction(a, 'ack') }, t('alarm.ack')),
    el('button', { class: 'write', 'data-clear': a.id, onclick: () => alarmAction(a, 'clear') }, t('alarm.clear')));
}
function sortedAlarms() {
  const by = $('#alarm-sort') ? $('#alarm-sort').value : 'severity';
  const rank = { critical: 1, major: 2, minor: 3, warning: 4 };
  const age = (x, y) => new Date(x.since) - new Date(y.since);
  return [...S.alarms].sort((x, y) => by === 'age' ? age(x, y) : (rank[x.severity] || 9) - (rank[y.severity] || 9) || age(x, y));
}
function renderAlarms() {
  const b = $('#alarm-banner');
  const list = sortedAlarms();
  b.replaceChildren(...list.map(alarmItem));
  b.hidden = list.length === 0;
  $('#alarm-list').replaceChildren(...(list.length ? list.map(alarmItem) : [el('li', { class: 'muted' }, t('alarm.none'))]));
}
// confirmDialog asks before an alarm decision; it resolves to the note, or
// null when the operator cancels.
function confirmDialog(msg) {
  const d = $('#confirm');
  $('#confirm-msg').textContent = msg;
  $('#confirm-note').value = '';
  d.showModal();
  return new Promise(resolve => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok' ? $('#confirm-note').value.trim() : null), { once: true });
  });
}
async function alarmAction(a, what) {
  const note = await confirmDialog(t('alarm.confirm.' + what, { kind: t('alarm.kind.' + a.kind), where: where(a) }));
  if (note === null) return;
  try {
    await write(() => api('POST', `/api/v1/alarms/${encodeURIComponent(a.id)}/${what}`, { note }));
  } catch (e) {
    if (e.status === 409 && what === 'clear') toast(t('alarm.clear_refused', { kind: t('alarm.kind.' + a.kind) }), true);
  }
  await loadAlarms();
}
// History: every alarm of the site, closed ones too, with its transitions,
// narrowed by building, kind and days (local midnight to midnight).
async function loadHistory() {
  const day = (v, end) => v ? new Date(v + (end ? 'T23:59:59' : 'T00:00:00')).toISOString() : '';
  const list = await api('GET', q('/api/v1/alarms/history', { site: S.site, building: $('#hist-building').value.trim(),
    kind: $('#hist-kind').value, from: day($('#hist-from').value, false), to: day($('#hist-to').value, true) }));
  $('#hist-list').replaceChildren(...(list.length ? list.map(a => el('li', { class: 'alarm-hist', 'data-alarm-id': a.id, 'data-open': a.open ? 1 : 0 },
    el('span', { class: 'badge sev' }, t('alarm.sev.' + a.severity)),
    el('strong', {}, `${t('alarm.kind.' + a.kind)} · ${where(a)}`),
    el('span', { class: 'badge ' + (a.open ? 'off' : 'on') }, t(a.open ? 'hist.open' : 'hist.closed')),
    el('ol', { class: 'transitions' }, a.transitions.map(tr => el('li', { 'data-what': tr.what },
      `${fmtTime(tr.at)} ${t('hist.what.' + tr.what)}${tr.who ? ' · ' + tr.who : ''}${tr.note ? ' · ' + tr.note : ''}`))))) :
    [el('li', { class: 'muted' }, t('hist.none'))]));
}
// An unacknowledged fire alarm keeps sounding until someone acknowledges it.
setInterval(() => {
  if (S.alarms.some(a => !a.acked && a.severity === 'critical')) cue();
}, 10000);

// ---- live stream ------------------------------------------------------
function connectStream() {
  if (S.es) S.es.close();
  const es = new EventSource(q('/api/v1/stream', { site: S.site }));
  S.es = es;
  const state = $('#stream-state');
  es.onopen = () => { state.textContent = t('live.connected'); state.className = 'badge on'; };
  es.onerror = () => { state.textContent = t('live.disconnected'); state.className = 'badge off'; };
  const onEvent = m => {
    const e = JSON.parse(m.data);
    streamLine(e);
    react(e.kind);
  };
  for (const k of STREAM_KINDS) es.addEventListener(k, onEvent);
  es.addEventListener('lagged', m => streamLine({ kind: 'lagged', time: new Date().toISOString(), body: JSON.parse(m.data) }));
}
const STREAM_KINDS = ['alarm', 'access', 'reading', 'report', 'vote', 'rating', 'checkin', 'release', 'gap', 'report_patch', 'report_merge',
  'report_file', 'notice_set', 'activity_set', 'alarm_ack', 'alarm_clear', 'access_list_set'];
// The kinds an operator filters by, in their words.
function fillStreamKinds() {
  const sel = $('#stream-kind'), keep = sel.value;
  sel.replaceChildren(el('option', { value: '' }, t('all')), ...['alarm', 'access', 'reading', 'report', 'vote', 'checkin', 'rating', 'report_patch', 'report_merge',
    'notice_set', 'activity_set', 'alarm_ack', 'alarm_clear'].map(k => el('option', { value: k }, t('kind.' + k))));
  sel.value = keep;
}
const pending = {};
function later(name, f, ms = 250) { clearTimeout(pending[name]); pending[name] = setTimeout(f, ms); }
function react(kind) {
  if (['alarm', 'access', 'alarm_ack', 'alarm_clear'].includes(kind)) loadAlarms(); // at once: alarms must show within a second
  if (['report', 'vote', 'report_patch', 'report_merge', 'report_file', 'rating'].includes(kind)) later('reports', loadReports);
  if (kind === 'notice_set') later('notices', loadNotices);
  if (['checkin', 'activity_set', 'rating'].includes(kind)) later('activities', loadActivities);
  if (kind === 'rating' && S.view === 'ratings') later('ratings', loadRatings);
}
function streamLine(e) {
  const kind = $('#stream-kind').value, b = $('#stream-building').value.trim(), d = $('#stream-device').value.trim();
  if ((kind && e.kind !== kind) || (b && e.building !== b) || (d && e.device !== d)) return;
  const list = $('#stream');
  list.prepend(el('li', { class: 'k-' + e.kind, 'data-kind': e.kind, 'data-id': e.id || null },
    el('time', { datetime: e.time }, fmtTime(e.time)), ' ', el('strong', {}, t('kind.' + e.kind)), ' ', el('span', {}, liveText(e)),
    e.device ? el('span', { class: 'muted' }, ' · ' + t('live.via', { device: e.device })) : null));
  while (list.children.length > 300) list.lastChild.remove();
}
// place names where something happened: the building's name, else its id.
function place(building) {
  if (!building) return t('live.site_wide');
  const b = (plan()?.buildings || []).find(x => x.id === building);
  return b ? ((S.lang === 'en' ? b.name_en || b.name : b.name) || building) : building;
}
// liveText is one live item as a sentence from the catalogue.
function liveText(e) {
  const x = e.body || {}, where = place(e.building || x.building);
  switch (e.kind) {
    case 'alarm': return t(x.active ? 'live.alarm.on' : 'live.alarm.off', { where, what: t('alarm.kind.' + x.kind), source: x.sensor || '' });
    case 'access': return t('live.access', { where, door: x.door || '', result: doorText(x.result, x.reason) });
    case 'reading': return t('live.reading', { where, sensor: x.sensor || '', value: sensorText(x.kind, x.value, false) });
    case 'report': case 'report_file': return t('live.report', { where, category: t('cat.' + x.category), title: x.title || '' });
    case 'vote': return t('live.vote', { report: x.report || '' });
    case 'checkin': return t(x.action === 'out' ? 'live.checkout' : 'live.checkin', { activity: activityTitle(x.activity) });
    case 'rating': return t('live.rating', { score: x.score, target: activityTitle(x.target) });
    case 'report_patch': return t('live.report_patch', { report: x.report || '', status: x.status ? t('st.' + x.status) : '', who: x.who || '' });
    case 'report_merge': return t('live.report_merge', { report: x.report || '', into: x.into || '' });
    case 'notice_set': return t(x.withdrawn ? 'live.notice_withdrawn' : 'live.notice_set', { title: x.title || '' });
    case 'activity_set': return t(x.cancelled ? 'live.activity_cancelled' : 'live.activity_set', { title: x.title || '' });
    case 'alarm_ack': case 'alarm_clear': return t('live.' + e.kind, { what: t('alarm.kind.' + x.kind), source: x.source || '', who: x.who || '' });
    case 'lagged': return t('live.lagged', { n: x.dropped ?? '?' });
  }
  return '';
}
const activityTitle = id => (S.activities.find(a => a.id === id) || {}).title || id || '';

// ---- triage -----------------------------------------------------------
function fillSelect(sel, values, label) {
  const keep = sel.value;
  const first = sel.firstElementChild;
  sel.replaceChildren(first, ...values.map(v => el('option', { value: v }, label(v))));
  sel.value = values.includes(keep) || keep === '' ? keep : '';
}
const STATUSES = ['submitted', 'accepted', 'in_progress', 'resolved', 'rejected'];
const CATEGORIES = ['fire_safety', 'public_safety', 'facilities', 'sanitation', 'noise', 'elevator', 'other'];
function renderTriage() {
  const fs = $('#f-status');
  if (fs.children.length < 3) STATUSES.forEach(s => fs.append(el('option', { value: s }, t('st.' + s))));
  fillSelect($('#f-category'), CATEGORIES, c => t('cat.' + c));
  fillSelect($('#f-building'), buildingIDs(), b => b);
  const st = fs.value, cat = $('#f-category').value, bld = $('#f-building').value, sort = $('#f-sort').value;
  let rows = S.reports.filter(r => !r.merged_into && (!S.search || S.search.has(r.id)) &&
    (st === '' ? isOpen(r) : st === 'all' || r.status === st) && (!cat || r.category === cat) && (!bld || r.building === bld));
  const shown = new Set(rows.map(r => r.id));
  S.selected.forEach(id => { if (!shown.has(id)) S.selected.delete(id); }); // act only on what is in view
  renderBulk();
  rows.sort(sort === 'votes' ? (a, b) => b.votes - a.votes || a.created.localeCompare(b.created) : (a, b) => a.created.localeCompare(b.created));
  $('#triage tbody').replaceChildren(...(rows.length ? rows.map(r => el('tr', { 'data-report': r.id, 'data-status': r.status, 'data-overdue': r.overdue ? 1 : 0,
    class: [S.report === r.id ? 'sel' : '', r.overdue ? 'overdue' : ''].join(' ').trim(), onclick: () => openReport(r.id) },
    el('td', { onclick: ev => ev.stopPropagation() }, el('input', { type: 'checkbox', class: 'rsel', 'data-id': r.id, 'aria-label': t('bulk.select', { id: r.id }),
      checked: S.selected.has(r.id), onchange: ev => { ev.target.checked ? S.selected.add(r.id) : S.selected.delete(r.id); renderBulk(); } })),
    el('td', {}, el('strong', {}, r.title), el('br'), el('small', { class: 'muted' }, r.id)), el('td', {}, t('cat.' + r.category)), el('td', {}, `${r.building} ${r.unit || ''}`),
    el('td', {}, el('span', { class: 'badge st-' + r.status }, t('st.' + r.status)), r.overdue ? el('span', { class: 'badge late' }, t('triage.overdue')) : null),
    el('td', { 'data-votes': r.votes }, r.votes),
    el('td', {}, ago(r.created)), el('td', {}, assigneeName(r.site, r.assignee) || '—'), el('td', {}, r.due ? fmtTime(r.due) : '—'))) :
    [el('tr', {}, el('td', { colspan: 9, class: 'muted' }, t('triage.empty')))]));
}
// ---- search and bulk actions --------------------------------------------
async function runSearch() {
  const text = $('#f-q').value.trim(), from = $('#f-from').value, to = $('#f-to').value, late = $('#f-overdue').checked;
  if (!text && !from && !to && !late) {
    S.search = null;
    $('#f-found').textContent = '';
  } else {
    const found = await write(() => api('GET', q('/api/v1/reports', { site: S.site, q: text, from, to, overdue: late ? 1 : '' })));
    S.search = new Set(found.map(r => r.id));
    $('#f-found').textContent = t('triage.found', { n: found.filter(r => !r.merged_into).length });
  }
  if (wantArchived() !== S.reportsArchived) return loadReports(); // it renders the triage
  renderTriage();
}
function renderBulk() {
  $('#bulk-count').textContent = t('bulk.count', { n: S.selected.size });
  $('#sel-all').checked = S.selected.size > 0 && S.selected.size === $$('#triage input.rsel').length;
}
async function bulkApply() {
  const ids = [...S.selected];
  if (!ids.length) { toast(t('bulk.none'), true); return; }
  const act = $('#bulk-action').value, who = $('#bulk-assignee').value;
  const body = { ids };
  if (act !== 'assign') body.status = act;
  if (who) body.assignee = who;
  await write(() => api('POST', '/api/v1/reports/bulk', body), t('bulk.done', { n: ids.length }));
  S.selected.clear();
  await loadReports();
}
// ---- assignees ----------------------------------------------------------
async function assigneesOf(site) {
  if (!site) return { closed: false, assignees: [] };
  if (!S.assignees[site]) S.assignees[site] = await api('GET', `/api/v1/sites/${encodeURIComponent(site)}/assignees`);
  return S.assignees[site];
}
const assigneeLabel = a => a.display ? `${a.display} (${a.name})` : a.role ? `${a.name} · ${a.role}` : a.name;
// assigneeName shows an assignee as the list names them (an operator's
// display name), or as stored.
function assigneeName(site, name) {
  const a = name && (S.assignees[site]?.assignees || []).find(x => x.name === name);
  return a ? assigneeLabel(a) : name;
}
function assigneeOptions(list, current) {
  const opts = [el('option', { value: '' }, t('rd.assignee_none')), ...list.assignees.map(a => el('option', { value: a.name }, assigneeLabel(a)))];
  if (current && !list.assignees.some(a => a.name === current)) opts.push(el('option', { value: current }, current)); // set before the list
  return opts;
}
async function fillBulkAssignees() {
  const list = await assigneesOf(S.site);
  const sel = $('#bulk-assignee'), keep = sel.value;
  sel.replaceChildren(...assigneeOptions(list, ''));
  sel.value = keep;
}
// mergeCandidates are the open reports r may be a duplicate of: the same
// building and category first, then the same category, then the same
// building, then the rest, oldest first in each.
function mergeCandidates(r) {
  const score = x => x.building === r.building && x.category === r.category ? 0 : x.category === r.category ? 1 : x.building === r.building ? 2 : 3;
  return S.reports.filter(x => x.id !== r.id && x.site === r.site && isOpen(x) && !(r.duplicates || []).includes(x.id))
    .sort((a, b) => score(a) - score(b) || a.created.localeCompare(b.created));
}
function openReport(id) {
  S.report = id;
  renderTriage();
  loadReport(id);
}
let reportLoads = 0;
async function loadReport(id) {
  const n = ++reportLoads;
  const r = await api('GET', `/api/v1/reports/${encodeURIComponent(id)}`);
  const people = await assigneesOf(r.site);
  // Loads overlap (a live update, the answer to an action): an answer that
  // comes back after a later load started is older, and must not redraw
  // the panel back to a status it has left.
  if (n !== reportLoads) return;
  const p = $('#report-detail');
  // A live update redraws the panel: what the operator has chosen or typed
  // for this report stays (it was lost, and a note typed meanwhile with it).
  const kept = p.dataset.report === r.id ? ['#rd-status', '#rd-assignee', '#rd-note', '#rd-merge-into']
    .map(sel => [sel, $(sel) && $(sel).value]).filter(([, v]) => v) : [];
  p.hidden = false;
  p.dataset.report = r.id;
  p.dataset.status = r.status;
  const next = STATUSES.filter(s => s !== r.status);
  const hist = el('ol', { class: 'history', id: 'rd-history' }, r.history.map(h => el('li', { 'data-event': h.event, 'data-status': h.status || '' },
    el('strong', {}, h.event === 'created' ? t('hist.created') : h.event === 'patched' ? t('hist.patched') : t('hist.' + h.event, { note: h.note || '' })),
    ' ', h.status && h.event !== 'created' ? el('span', { class: 'badge st-' + h.status }, t('st.' + h.status)) : '',
    ' ', el('span', { class: 'muted' }, `${fmtTime(h.time)}${h.who ? ' · ' + (h.who_name || h.who) : ''}`),
    h.note && h.event === 'patched' ? el('div', { 'data-visibility': h.visibility || '' },
      el('span', { class: 'badge ' + (h.visibility === 'internal' ? 'vis-internal' : 'vis-public') }, t(h.visibility === 'internal' ? 'rd.internal' : 'rd.public')), ' ', h.note) : null,
    h.assignee ? el('div', { class: 'muted' }, '→ ' + assigneeName(r.site, h.assignee)) : null)));
  const merged = !!r.merged_into;
  const final = r.status === 'resolved' || r.status === 'rejected';
  p.replaceChildren(...[
    el('h2', {}, `${r.title}`), el('p', { class: 'muted' }, `${t('rd.title', { id: r.id })} · ${t('cat.' + r.category)} · ${t('rd.filed', { building: r.building, unit: r.unit || '', t: fmtTime(r.created) })}`),
    r.description ? el('p', {}, r.description) : null,
    el('p', {}, el('span', { class: 'badge st-' + r.status, id: 'rd-status-badge' }, t('st.' + r.status)), ` +${r.votes} ${t('triage.votes')}`,
      r.assignee ? ` · ${t('triage.assignee')}: ${assigneeName(r.site, r.assignee)}` : '',
      r.overdue ? el('span', { class: 'badge late', id: 'rd-overdue' }, t('triage.overdue')) : null),
    r.note ? el('p', { id: 'rd-public-note' }, t('rd.public_note', { note: r.note })) : null,
    r.internal_note ? el('p', { id: 'rd-internal-note', class: 'muted' }, t('rd.internal_note', { note: r.internal_note })) : null,
    merged ? el('p', { class: 'muted' }, t('rd.merged_into', { id: r.merged_into }), ' ',
      el('button', { id: 'rd-unmerge', class: 'write', type: 'button', onclick: ev => { ev.target.disabled = true; unmergeReport(r.id, r.id); } }, t('rd.unmerge'))) : null,
    r.duplicates ? el('div', { class: 'muted', id: 'rd-duplicates' }, t('rd.duplicates', { ids: r.duplicates.join(', ') }),
      el('ul', { class: 'list' }, r.duplicates.map(d => el('li', {}, d, ' ',
        el('button', { class: 'write', type: 'button', 'data-unmerge': d, onclick: ev => { ev.target.disabled = true; unmergeReport(d, r.id); } }, t('rd.unmerge')))))) : null,
    merged || final ? null : el('form', { class: 'actions write', id: 'rd-form', onsubmit: ev => { ev.preventDefault(); patchReport(r.id, ev.submitter?.id === 'rd-reply' ? 'public' : 'internal'); } },
      el('label', {}, t('rd.action'), el('select', { id: 'rd-status' }, el('option', { value: '' }, '—'), next.map(s => el('option', { value: s }, t('st.' + s))))),
      people.closed ? el('label', {}, t('rd.assignee'), el('select', { id: 'rd-assignee' }, assigneeOptions(people, r.assignee)))
        : el('label', {}, t('rd.assignee'), el('input', { id: 'rd-assignee', size: 10, value: r.assignee || '', list: 'rd-assignee-list' }),
          el('datalist', { id: 'rd-assignee-list' }, people.assignees.map(a => el('option', { value: a.name }, assigneeLabel(a))))),
      el('label', {}, t('rd.note_internal'), el('textarea', { id: 'rd-note', rows: 2, cols: 28 })),
      el('button', { class: 'primary', id: 'rd-apply', type: 'submit' }, t('rd.apply')),
      el('button', { id: 'rd-reply', type: 'submit' }, t('rd.reply'))),
    merged ? null : mergeForm(r),
    el('h3', {}, t('rd.history')), hist].filter(Boolean));
  for (const [sel, v] of kept) {
    const f = $(sel);
    if (f && (f.tagName !== 'SELECT' || [...f.options].some(o => o.value === v))) f.value = v;
  }
  if (r.assignee && $('#rd-assignee') && !kept.some(([sel]) => sel === '#rd-assignee')) $('#rd-assignee').value = r.assignee;
}
// mergeForm picks the report r duplicates from similar open ones and asks
// before merging. The question outlives a live redraw of the panel
// (S.mergeAsk), so an update elsewhere does not take it away.
function mergeForm(r) {
  const cands = mergeCandidates(r);
  if (!cands.length) return el('p', { class: 'muted write', id: 'rd-merge-form' }, t('rd.merge_none'));
  const confirmBox = el('div', { id: 'rd-merge-confirm', role: 'alertdialog', 'aria-label': t('rd.merge_do'), hidden: true });
  const show = into => {
    confirmBox.replaceChildren(el('p', {}, t('rd.merge_confirm', { id: r.id, into })),
      el('button', { class: 'primary', id: 'rd-merge-yes', type: 'button', onclick: ev => { ev.target.disabled = true; S.mergeAsk = null; mergeReport(r.id, into); } }, t('rd.merge_yes')),
      el('button', { id: 'rd-merge-no', type: 'button', onclick: () => { S.mergeAsk = null; confirmBox.hidden = true; } }, t('rd.merge_no')));
    confirmBox.hidden = false;
  };
  const ask = () => {
    S.mergeAsk = { id: r.id, into: $('#rd-merge-into').value };
    show(S.mergeAsk.into);
    $('#rd-merge-yes').focus();
  };
  if (S.mergeAsk?.id === r.id && cands.some(x => x.id === S.mergeAsk.into)) show(S.mergeAsk.into);
  return el('form', { class: 'actions write', id: 'rd-merge-form', onsubmit: ev => { ev.preventDefault(); ask(); } },
    el('label', {}, t('rd.merge_pick'), el('select', { id: 'rd-merge-into' }, cands.map(x =>
      el('option', { value: x.id }, `${x.title} · ${x.building} · ${t('cat.' + x.category)} · ${x.id}`)))),
    el('button', { id: 'rd-merge', type: 'submit' }, t('rd.merge_do')), confirmBox);
}
// patchReport saves the form; the note is internal unless sent as the
// public reply (visibility public), the only kind kiosks and Open311 see.
async function patchReport(id, visibility = 'internal') {
  const sent = { status: $('#rd-status').value, note: $('#rd-note').value.trim() };
  const body = { ...sent, assignee: $('#rd-assignee').value.trim() };
  const old = S.reports.find(r => r.id === id);
  if (old && body.assignee === (old.assignee || '')) delete body.assignee;
  Object.keys(body).forEach(k => { if (!body[k]) delete body[k]; });
  if (body.note) body.visibility = visibility;
  await write(() => api('PATCH', `/api/v1/reports/${encodeURIComponent(id)}`, body), t('rd.saved'));
  // Applied: clear what was sent. Only that — the live update can redraw
  // the form before this answer arrives, and the operator may already have
  // chosen and typed the next step, which a reset of the form threw away.
  if ($('#report-detail').dataset.report === id) {
    if ($('#rd-status')?.value === sent.status) $('#rd-status').value = '';
    if ($('#rd-note') && $('#rd-note').value.trim() === sent.note) $('#rd-note').value = '';
  }
  await loadReports();
}
async function mergeReport(id, into) {
  const r = await write(() => api('POST', `/api/v1/reports/${encodeURIComponent(id)}/merge`, { into }), t('rd.saved'));
  S.report = r.id;
  await loadReports();
}
// unmergeReport undoes dup's merge (a new step in both histories) and
// shows show.
async function unmergeReport(dup, show) {
  await write(() => api('POST', `/api/v1/reports/${encodeURIComponent(dup)}/unmerge`), t('rd.unmerged'));
  S.report = show;
  await loadReports();
}

// ---- notices ----------------------------------------------------------
// The list is the site's notice history: in force first, then expired and
// withdrawn ones, each marked so; the hub keeps them all.
// loadNotices redraws the notice list. Calls overlap (a write's reload and
// live updates), and each waits on a delivery read per notice: only the
// newest call may draw, or an older, slower one puts back the list as it
// was before a write.
let noticesGen = 0;
async function loadNotices() {
  const gen = ++noticesGen;
  const all = (await api('GET', q('/api/v1/notices', { site: S.site, history: 1 }))).filter(n => !n.id.startsWith('alarm-'));
  if (gen !== noticesGen) return;
  const now = Date.now();
  const state = n => n.withdrawn ? 'withdrawn' : n.expires && n.expires <= now ? 'expired' : 'live';
  all.sort((a, b) => (state(a) === 'live' ? 0 : 1) - (state(b) === 'live' ? 0 : 1));
  S.notices = all;
  const list = $('#notice-list');
  if (!all.length) { list.replaceChildren(el('p', { class: 'muted' }, t('notices.none'))); return; }
  const items = await Promise.all(all.map(async n => {
    const st = state(n);
    let d = null;
    if (st === 'live') try { d = await api('GET', `/api/v1/notices/${encodeURIComponent(n.id)}/delivery`); } catch { /* shown without delivery */ }
    const total = d ? d.kiosks.length : 0, got = d ? d.received : 0;
    return el('div', { class: 'notice st-' + st, 'data-notice': n.id, 'data-state': st },
      el('h3', {}, n.title), st !== 'live' ? el('span', { class: 'badge', 'data-badge': st }, t('notices.state.' + st)) : null,
      el('p', { class: 'body' }, n.body),
      el('p', { class: 'muted' }, `${t('ncat.' + n.category)} · ${n.buildings.length ? n.buildings.map(place).join('、') : t('notices.whole_site')}` +
        (n.expires ? ' · ' + t('notices.expires_at', { t: fmtTime(n.expires) }) : '') + ' · ' + t('notices.updated', { t: fmtTime(hlcTime(n.updated)) })),
      d ? el('p', { class: 'delivery ' + (got === total ? 'all' : 'some'), 'data-received': got, 'data-total': total,
        title: d.kiosks.map(k => `${k.device}: ${k.received ? '✓' : '…'}`).join('\n') }, t('notices.delivery', { got, total }),
      ' ', d.kiosks.map(k => el('span', { class: 'badge ' + (k.received ? 'on' : 'off'), 'data-kiosk': k.device, 'data-got': k.received ? 1 : 0 }, k.device))) : null,
      el('div', { class: 'actions' },
        el('button', { type: 'button', 'data-print': n.id, onclick: () => printNotice(n) }, t('notices.print')),
        st === 'withdrawn' ? null : el('button', { type: 'button', class: 'write', 'data-edit': n.id, onclick: () => editNotice(n) }, t('notices.edit')),
        st === 'withdrawn' ? null : confirmButton({ 'data-withdraw': n.id }, t('notices.withdraw'), t('notices.withdraw_sure'), async () => {
          await write(() => api('POST', `/api/v1/notices/${encodeURIComponent(n.id)}/withdraw`, {}), t('notices.withdrawn'));
          await loadNotices();
        })));
  }));
  if (gen !== noticesGen) return;
  list.replaceChildren(...items);
}
// confirmButton asks once more in place before an action that takes
// something away (no modal dialog: the page keeps working meanwhile).
function confirmButton(attrs, label, sure, action) {
  const b = el('button', { type: 'button', class: 'write', ...attrs }, label);
  b.addEventListener('click', async () => {
    if (b.dataset.armed !== '1') {
      b.dataset.armed = '1'; b.textContent = sure; b.classList.add('danger');
      setTimeout(() => { if (b.isConnected) { b.dataset.armed = ''; b.textContent = label; b.classList.remove('danger'); } }, 5000);
      return;
    }
    b.disabled = true;
    try { await action(); } finally { b.disabled = false; }
  });
  return b;
}
function noticeFromForm() {
  const body = { title: $('#nf-title').value.trim(), body: $('#nf-body').value.trim(), category: $('#nf-category').value,
    buildings: $('#nf-buildings').value.split(/[,\s，、]+/).filter(Boolean), expires: fromZoneInput($('#nf-expires').value) };
  return body;
}
function editNotice(n) {
  S.editNotice = n.id;
  $('#nf-site').value = n.site; $('#nf-site').disabled = true;
  $('#nf-title').value = n.title; $('#nf-body').value = n.body; $('#nf-category').value = n.category;
  $('#nf-buildings').value = n.buildings.join(','); $('#nf-expires').value = n.expires ? toZoneInput(n.expires) : '';
  $('#nf-heading').textContent = t('notices.editing'); $('#nf-submit').textContent = t('notices.save');
  $('#nf-cancel').hidden = false;
  $('#nf-title').focus();
}
function resetNoticeForm() {
  S.editNotice = '';
  $('#notice-form').reset();
  $('#nf-site').disabled = false; $('#nf-site').value = S.site;
  $('#nf-heading').textContent = t('notices.new'); $('#nf-submit').textContent = t('notices.publish');
  $('#nf-cancel').hidden = true; $('#nf-preview-box').hidden = true;
}
// previewNotice shows the notice as it will read, before it goes out.
function previewNotice() {
  const n = noticeFromForm(), box = $('#nf-preview-box');
  box.replaceChildren(el('h3', {}, t('notices.preview_of')), noticeSheet({ ...n, site: $('#nf-site').value, expires: n.expires ? Date.parse(n.expires) : 0 }));
  box.hidden = false;
}
// noticeSheet is a notice as the paper board shows it: the community,
// the title, the body, for which buildings, the date.
function noticeSheet(n) {
  const site = S.sites.find(s => s.id === n.site) || { id: n.site };
  return el('div', { class: 'sheet' },
    el('p', { class: 'sheet-org' }, siteName(site)),
    el('h1', { class: 'sheet-title' }, n.title || '—'),
    el('p', { class: 'sheet-cat' }, t('ncat.' + n.category) + ' · ' + (n.buildings.length ? n.buildings.map(place).join('、') : t('notices.whole_site'))),
    el('div', { class: 'sheet-body' }, n.body),
    n.expires ? el('p', { class: 'sheet-exp' }, t('notices.expires_at', { t: fmtDate(n.expires) })) : null,
    el('p', { class: 'sheet-date' }, `${siteName(site)}  ${fmtDate(n.updated ? hlcTime(n.updated) : Date.now())}`));
}
// printNotice prints the notice as the hub has it now: the list on screen
// may predate an edit that the hub applied after the list was read.
async function printNotice(n) {
  try {
    n = (await api('GET', q('/api/v1/notices', { site: S.site, history: 1 }))).find(x => x.id === n.id) || n;
  } catch { /* print what the list shows */ }
  const p = $('#print-notice');
  p.replaceChildren(noticeSheet(n));
  p.hidden = false;
  document.body.classList.add('printing');
  const done = () => { document.body.classList.remove('printing'); p.hidden = true; window.removeEventListener('afterprint', done); };
  window.addEventListener('afterprint', done);
  window.print();
}
async function publishNotice(ev) {
  ev.preventDefault();
  const body = noticeFromForm();
  if (S.editNotice) {
    if (!body.expires) body.expires = '';
    await write(() => api('PATCH', `/api/v1/notices/${encodeURIComponent(S.editNotice)}`, body), t('notices.saved'));
  } else {
    body.site = $('#nf-site').value;
    if (!body.expires) delete body.expires;
    await write(() => api('POST', '/api/v1/notices', body), t('notices.published'));
  }
  resetNoticeForm();
  await loadNotices();
}

// ---- activities -------------------------------------------------------
let activitiesGen = 0; // as noticesGen: only the newest reload draws
async function loadActivities() {
  const gen = ++activitiesGen;
  const acts = await api('GET', q('/api/v1/activities', { site: S.site }));
  if (gen !== activitiesGen) return;
  S.activities = acts;
  const list = $('#activity-list');
  if (!S.activities.length) { list.replaceChildren(el('p', { class: 'muted' }, t('act.none'))); return; }
  list.replaceChildren(...S.activities.map(a => {
    const hours = a.hours.reduce((s, h) => s + h.hours, 0);
    return el('div', { class: 'act' + (a.cancelled ? ' cancelled' : ''), 'data-activity': a.id, 'data-cancelled': a.cancelled ? 1 : 0 },
      el('h3', {}, `${a.title} `, el('span', { class: 'badge' }, t('act.kind.' + a.kind)), a.cancelled ? el('span', { class: 'badge off', 'data-badge': 'cancelled' }, t('act.cancelled')) : null),
      el('p', { class: 'muted' }, [a.start_time ? fmtTime(a.start_time) : '', a.end_time ? '– ' + fmtTime(a.end_time) : '', a.venue ? '· ' + a.venue : ''].filter(Boolean).join(' ')),
      a.description ? el('p', {}, a.description) : null,
      el('p', {}, t('act.summary', { confirmed: a.confirmed.length, capacity: a.capacity || '∞', waitlist: a.waitlist.length, attendance: a.attendance, signups: a.signups || 0, hours: hours.toFixed(1) })),
      a.waitlist.length ? el('p', { class: 'muted' }, a.waitlist.join(', ')) : null,
      el('div', { class: 'actions' },
        el('a', { href: `/api/v1/activities/${encodeURIComponent(a.id)}/attendance.csv?lang=${S.lang}`, download: `attendance-${a.id}.csv`, 'data-csv': a.id }, t('act.csv')),
        a.cancelled ? null : el('button', { type: 'button', class: 'write', 'data-edit': a.id, onclick: () => editActivity(a) }, t('act.edit')),
        a.cancelled ? null : confirmButton({ 'data-cancel': a.id }, t('act.cancel'), t('act.cancel_sure'), async () => {
          await write(() => api('POST', `/api/v1/activities/${encodeURIComponent(a.id)}/cancel`, {}), t('act.cancelled_done'));
          await loadActivities();
        })));
  }));
}
function editActivity(a) {
  S.editActivity = a.id;
  $('#af-site').value = a.site; $('#af-site').disabled = true;
  $('#af-title').value = a.title; $('#af-kind').value = a.kind; $('#af-venue').value = a.venue || ''; $('#af-description').value = a.description || '';
  $('#af-start').value = toZoneInput(a.start_time); $('#af-end').value = toZoneInput(a.end_time); $('#af-capacity').value = a.capacity;
  $('#af-heading').textContent = t('act.editing'); $('#af-submit').textContent = t('act.save'); $('#af-cancel').hidden = false;
  $('#af-title').focus();
}
function resetActivityForm() {
  S.editActivity = '';
  $('#activity-form').reset();
  $('#af-site').disabled = false; $('#af-site').value = S.site;
  $('#af-heading').textContent = t('act.new'); $('#af-submit').textContent = t('act.create'); $('#af-cancel').hidden = true;
}
async function createActivity(ev) {
  ev.preventDefault();
  const body = { title: $('#af-title').value.trim(), kind: $('#af-kind').value, venue: $('#af-venue').value.trim(), description: $('#af-description').value.trim(),
    start: fromZoneInput($('#af-start').value), end: fromZoneInput($('#af-end').value), capacity: Number($('#af-capacity').value || 0) };
  if (S.editActivity) {
    await write(() => api('PATCH', `/api/v1/activities/${encodeURIComponent(S.editActivity)}`, body), t('act.saved'));
  } else {
    body.site = $('#af-site').value;
    await write(() => api('POST', '/api/v1/activities', body), t('act.created'));
  }
  resetActivityForm();
  await loadActivities();
}

// ---- ratings (inline SVG charts) ----------------------------------------
async function loadRatings() {
  const r = await api('GET', q('/api/v1/ratings', { site: S.site, bucket: $('#r-bucket').value }));
  $('#r-overall').textContent = r.overall.count ? t('ratings.overall', { n: r.overall.count, mean: r.overall.mean }) : t('ratings.none');
  $('#chart-category').replaceChildren(bars(r.by_category.map(g => ({ label: t('cat.' + g.key), value: g.mean, n: g.count }))));
  $('#chart-activity').replaceChildren(bars(r.by_activity.map(g => ({ label: g.title || g.key, value: g.mean, n: g.count }))));
  $('#chart-time').replaceChildren(line(r.over_time.map(g => ({ label: g.key.slice(5), value: g.mean, n: g.count }))));
  $('#r-recent').replaceChildren(...r.recent.map(p => el('li', {}, el('span', { class: 'badge' }, '★'.repeat(p.score)),
    el('span', {}, p.title || p.target), p.comment ? el('span', { class: 'muted' }, `“${p.comment}”`) : null, el('span', { class: 'muted' }, fmtTime(hlcTime(p.hlc))))));
}
// chartText is a chart's content as words, its name for screen readers.
const chartText = data => data.length ? data.map(d => `${d.label}: ${d.value.toFixed(1)} (${d.n})`).join('; ') : t('ratings.none');
function bars(data) {
  const W = 320, row = 28, H = Math.max(1, data.length) * row + 8;
  const g = sv('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'chart-bars', 'aria-label': chartText(data) });
  if (!data.length) g.append(sv('text', { x: 0, y: 20 }, t('ratings.none')));
  data.forEach((d, i) => {
    const y = 4 + i * row, w = (d.value / 5) * (W - 150);
    g.append(sv('text', { x: 0, y: y + 16 }, d.label.length > 10 ? d.label.slice(0, 10) + '…' : d.label),
      sv('rect', { class: 'bar', x: 100, y: y + 4, width: Math.max(2, w), height: 16, rx: 3 }),
      sv('text', { x: 104 + w, y: y + 16 }, `${d.value.toFixed(1)} (${d.n})`));
  });
  return el('div', { class: 'chart' }, g);
}
function line(data) {
  const W = 320, H = 160, pad = 24;
  const g = sv('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'chart-line', 'aria-label': chartText(data) });
  if (!data.length) { g.append(sv('text', { x: 0, y: 20 }, t('ratings.none'))); return el('div', { class: 'chart' }, g); }
  const x = i => pad + (data.length === 1 ? (W - 2 * pad) / 2 : i * (W - 2 * pad) / (data.length - 1));
  const y = v => H - pad - (v - 1) / 4 * (H - 2 * pad);
  [1, 3, 5].forEach(v => g.append(sv('text', { x: 0, y: y(v) + 4 }, v)));
  g.append(sv('polyline', { class: 'line', points: data.map((d, i) => `${x(i)},${y(d.value)}`).join(' ') }));
  data.forEach((d, i) => g.append(sv('circle', { class: 'dot', cx: x(i), cy: y(d.value), r: 4 }, sv('title', {}, `${d.label}: ${d.value} (${d.n})`)),
    sv('text', { x: x(i) - 14, y: H - 4 }, d.label)));
  return el('div', { class: 'chart' }, g);
}

// ---- account: tokens, operators, audit ---------------------------------
async function loadAdmin() {
  const tokens = await api('GET', '/api/v1/tokens');
  $('#token-list').replaceChildren(...tokens.map(k => el('li', { 'data-token': k.id }, el('strong', {}, k.name), el('span', { class: 'muted' }, `${k.owner} · ${k.role || ''} · ${fmtTime(k.created)}`),
    el('button', { class: 'link', onclick: async () => { await write(() => api('DELETE', `/api/v1/tokens/${k.id}`)); loadAdmin(); } }, t('tokens.revoke')))));
  if (!S.me.admin) return;
  const ops = await api('GET', '/api/v1/operators');
  $('#operators tbody').replaceChildren(...ops.map(o => el('tr', { 'data-operator': o.name }, el('td', {}, o.name), el('td', {}, o.display || ''),
    el('td', {}, t('role.' + o.role)), el('td', {}, o.sites.join(', ') || t('all')),
    el('td', {}, el('button', { class: 'link', onclick: async () => { await write(() => api('PATCH', `/api/v1/operators/${o.name}`, { disabled: !o.disabled })); loadAdmin(); } },
      o.disabled ? t('admin.enable') : t('admin.disable'))))));
  const audit = await api('GET', '/api/v1/audit?limit=100');
  $('#audit tbody').replaceChildren(...audit.map(e => el('tr', { 'data-seq': e.seq }, el('td', {}, fmtTime(e.time)), el('td', {}, e.who || '?'),
    el('td', {}, `${e.method} ${e.path}`), el('td', {}, e.status), el('td', { class: 'muted' }, e.body ? JSON.stringify(e.body).slice(0, 80) : e.note || ''))));
}
async function createOperator(ev) {
  ev.preventDefault();
  const body = { name: $('#of-name').value.trim(), display: $('#of-display').value.trim(), password: $('#of-password').value,
    role: $('#of-role').value, sites: $$('#of-sites input:checked').map(i => i.value) };
  await write(() => api('POST', '/api/v1/operators', body), t('admin.created'));
  $('#operator-form').reset();
  fillSiteLists();
  loadAdmin();
}
async function createToken(ev) {
  ev.preventDefault();
  const body = { name: $('#tk-name').value.trim() };
  if ($('#tk-role').value) body.role = $('#tk-role').value;
  if ($('#tk-sites').value) body.sites = [$('#tk-sites').value];
  const k = await write(() => api('POST', '/api/v1/tokens', body));
  const p = $('#tk-secret');
  p.textContent = `${t('tokens.shown_once')} ${k.token}`;
  p.hidden = false;
  $('#token-form').reset();
  loadAdmin();
}

// ---- wiring -----------------------------------------------------------
// An API refusal the page did not handle where it happened (a refresh
// racing a logout, a write already reported by write()) is shown, not
// thrown at the console: it is the server's answer, not a page fault.
window.addEventListener('unhandledrejection', e => {
  if (!(e.reason instanceof APIError)) return;
  e.preventDefault();
  if (e.reason.status !== 401 && S.me) toast(errText(e.reason), true);
});

async function init() {
  await loadLang(S.lang);
  $('#nf-category').replaceChildren(...['announcement', 'finance', 'election', 'safety'].map(c => el('option', { value: c }, t('ncat.' + c))));
  fillStreamKinds();
  $('#login').addEventListener('submit', login);
  const toggle = async () => {
    await loadLang(S.lang === 'zh-CN' ? 'en' : 'zh-CN');
    const cat = $('#nf-category').value;
    $('#nf-category').replaceChildren(...['announcement', 'finance', 'election', 'safety'].map(c => el('option', { value: c }, t('ncat.' + c))));
    $('#nf-category').value = cat || 'announcement';
    fillStreamKinds();
    if (S.me) { fillSiteLists(); $('#me').textContent = `${S.me.name} · ${t('role.' + S.me.role)}`; fillSwitcher(); refreshAll(); go(S.view); }
  };
  $('#lang').addEventListener('click', toggle);
  $('#lang-login').addEventListener('click', toggle);
  $('#logout').addEventListener('click', async () => { await api('POST', '/api/v1/logout').catch(() => {}); S.me = null; showLogin(); });
  $$('[data-nav]').forEach(b => b.addEventListener('click', () => go(b.dataset.nav)));
  $('#site').addEventListener('change', async e => {
    if (e.target.value === ALL_SITES) { go('district'); return; }
    const back = S.view === 'district'; // back from all sites: to that site's map
    S.site = e.target.value; S.building = ''; S.report = '';
    resetNoticeForm(); resetActivityForm();
    localStorage.setItem('linli.site', S.site);
    $('#report-detail').hidden = true;
    $('#building-panel').replaceChildren(el('p', { class: 'muted' }, t('map.pick')));
    await refreshAll(); connectStream(); go(back ? 'map' : S.view);
  });
  $('#district').addEventListener('click', e => {
    const b = e.target.closest('button[data-site]');
    if (!b) return;
    $('#site').value = b.dataset.site;
    $('#site').dispatchEvent(new Event('change'));
  });
  ['#f-category', '#f-building', '#f-sort'].forEach(s => $(s).addEventListener('change', renderTriage));
  $('#f-status').addEventListener('change', () => wantArchived() !== S.reportsArchived ? loadReports().catch(() => {}) : renderTriage());
  $('#search-form').addEventListener('submit', e => { e.preventDefault(); runSearch().catch(() => {}); });
  $('#bulk-apply').addEventListener('click', () => bulkApply().catch(() => {}));
  $('#sel-all').addEventListener('change', e => {
    $$('#triage input.rsel').forEach(c => { c.checked = e.target.checked; e.target.checked ? S.selected.add(c.dataset.id) : S.selected.delete(c.dataset.id); });
    renderBulk();
  });
  $('#alarm-sort').addEventListener('change', renderAlarms);
  $('#hist-form').addEventListener('submit', e => { e.preventDefault(); loadHistory().catch(err => toast(t('error.generic', { msg: err.message }), true)); });
  $('#r-bucket').addEventListener('change', loadRatings);
  $('#notice-form').addEventListener('submit', publishNotice);
  $('#nf-preview').addEventListener('click', previewNotice);
  $('#nf-cancel').addEventListener('click', resetNoticeForm);
  $('#af-cancel').addEventListener('click', resetActivityForm);
  $('#activity-form').addEventListener('submit', createActivity);
  $('#operator-form').addEventListener('submit', createOperator);
  $('#token-form').addEventListener('submit', createToken);
  // Presence is not an event: poll the fleet; ages on the page move on.
  setInterval(() => {
    if (!S.me) return;
    loadDevices().catch(() => {});
    if (S.view === 'notices') loadNotices().catch(() => {}); // delivery moves as kiosks ack
  }, 3000);
  setInterval(() => { if (S.me && S.view === 'triage') renderTriage(); }, 60000);
  try {
    const me = await api('GET', '/api/v1/session');
    await start(me);
  } catch {
    showLogin();
  }
}
init();
