// Linli lobby kiosk: the resident-facing touch UI, served by the kiosk edge
// itself. Plain JavaScript with no framework and no request to anywhere but
// this edge, so it works the same with or without a network. Every string
// comes from i18n/<lang>.json; data from the API is only ever set as text,
// never parsed as HTML.
'use strict';
(() => {
  // A card reader acting as a keyboard types a whole number within ~100 ms;
  // 600 ms also lets a person type one on a hardware keyboard, and a longer
  // pause starts a new number, so stray keys never prefix a later card.
  const KEY_GAP_MS = 600;
  const POLL_SYNC_MS = 3000;
  const POLL_NOTICES_MS = 15000;
  // The identified resident's activities: a move up from the waitlist shows
  // within this long.
  const POLL_MINE_MS = 4000;
  const READ_TIMEOUT_MS = 10000;
  // Writes wait for the edge's fsync, which a busy disk can slow down.
  const WRITE_TIMEOUT_MS = 20000;
  const DEFAULT_LANG = 'zh-CN';
  const OTHER_LANG = { 'zh-CN': 'en', en: 'zh-CN' };
  const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
  const CATEGORIES = ['fire_safety', 'public_safety', 'facilities', 'sanitation', 'noise', 'elevator', 'other'];
  const FIELDS = ['resident', 'activity', 'action', 'category', 'title', 'description', 'building', 'unit',
    'score', 'comment', 'target', 'report', 'body', 'id'];

  // Everything about the person at the screen lives here and in the DOM of
  // the current screen; reset() drops both. Nothing is ever written to
  // localStorage, sessionStorage or cookies.
  const S = {
    lang: DEFAULT_LANG,
    kiosk: { building: '', idle_timeout_ms: 60000, categories: CATEGORIES },
    sync: undefined, // last GET /api/v1/sync; null when the edge did not answer
    notices: [],
    alarms: [], // the alarms of the site residents see, pushed by the edge
    seen: new Set(), // alarms whose full-screen alert was dismissed here (id and since)
    resident: null,
    screen: 'start',
    arg: null,
    gen: 0, // bumped on every reset: answers for an earlier person are dropped
    draft: {}, // form contents by screen, kept across a language switch
    acts: null, // the resident's activities as last polled
    prevStatus: {}, // activity → status, to notice a move up from the waitlist
    movedUp: new Set(),
    sessionReports: [], // ids filed in this session, anonymous ones included
    elder: false, // elderly mode (larger type, fewer choices): for this session only
    lastInput: Date.now(),
  };
  const cats = {};
  const $ = (id) => document.getElementById(id);

  // ---- strings ------------------------------------------------------------

  function has(key) { return cats[S.lang] && Object.prototype.hasOwnProperty.call(cats[S.lang], key); }
  function t(key, vars) {
    let s = has(key) ? cats[S.lang][key] : (cats[DEFAULT_LANG] || {})[key];
    if (s === undefined) return key;
    return s.replace(/\{(\w+)\}/g, (m, k) => (vars && vars[k] !== undefined ? String(vars[k]) : m));
  }

  async function loadLang(lang) {
    if (cats[lang]) return true;
    const r = await api('GET', 'i18n/' + lang + '.json');
    if (r.status !== 200 || !r.data) return false;
    cats[lang] = r.data;
    return true;
  }

  async function setLang(lang, rerender) {
    if (!(await loadLang(lang))) { toast(t('err.network'), 'err'); return; }
    S.lang = lang;
    applyStatic();
    if (rerender) render();
  }

  // Static parts of the page: marked with data-i18n in index.html.
  function applyStatic() {
    document.documentElement.lang = S.lang;
    document.title = t('app.title');
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    const lang = $('lang');
    lang.textContent = t('lang.other');
    lang.setAttribute('lang', OTHER_LANG[S.lang]);
    lang.setAttribute('aria-label', t('lang.switch'));
    $('where').textContent = S.kiosk.building ? t('app.where', { building: S.kiosk.building }) : t('app.where_none');
    renderSync();
    renderAlarm();
    tickClock();
  }

  // ---- DOM helpers --------------------------------------------------------

  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of kids.flat()) {
      if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  const SVG = 'http://www.w3.org/2000/svg';
  // 24×24 stroked line icons; '|' separates paths.
  const ICONS = {
    fire_safety: 'M12 3c1 4 5 5.5 5 10a5 5 0 0 1-10 0c0-2.5 1.5-3.5 2-5 .8 1.5 1.6 2 2.5 2C11 7.5 11.5 5 12 3z',
    public_safety: 'M12 3l7 3v5c0 5-3.5 8.5-7 10-3.5-1.5-7-5-7-10V6z|M9 12l2 2 4-4',
    facilities: 'M14.7 6.3a4 4 0 0 0-5.4 5.4L4 17l3 3 5.3-5.3a4 4 0 0 0 5.4-5.4l-2.6 2.6-2.8-.6-.6-2.8z',
    sanitation: 'M4 7h16|M9 7V4h6v3|M6 7l1 13h10l1-13|M10 11v6|M14 11v6',
    noise: 'M4 9v6h4l5 4V5L8 9z|M16 9a4 4 0 0 1 0 6|M19 6a8 8 0 0 1 0 12',
    elevator: 'M5 3h14v18H5z|M9 10l3-3 3 3|M9 14l3 3 3-3',
    other: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z|M8 12h.01|M12 12h.01|M16 12h.01',
    activities: 'M4 5h16v16H4z|M4 9h16|M8 3v4|M16 3v4|M9 15l2 2 4-4',
    report: 'M5 21V4|M5 4h11l-2 4 2 4H5',
    mine: 'M9 3h6v3H9z|M7 4H5v17h14V4h-2|M8 11h8|M8 15h8',
    rate: 'M12 3l2.8 5.7 6.2.9-4.5 4.4 1 6.2L12 17.3 6.5 20.2l1-6.2L3 9.6l6.2-.9z',
    notices: 'M6 8a6 6 0 0 1 12 0c0 7 3 8 3 8H3s3-1 3-8|M10 20a2 2 0 0 0 4 0',
    card: 'M3 5h18v14H3z|M7 10h4|M7 14h6|M15 9h3v4h-3z',
    exit: 'M10 4H5v16h5|M14 8l4 4-4 4|M18 12H9',
    alarm: 'M12 3L2 20h20z|M12 9v5|M12 17h.01',
    back: 'M15 5l-7 7 7 7',
    phone: 'M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2',
    elder: 'M4 20h16|M7 20V10h3|M7 10l2-6h1|M14 20v-8h3v8|M10 14h4',
  };
  function icon(name) {
    const s = document.createElementNS(SVG, 'svg');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    s.setAttribute('class', 'icon');
    for (const d of ICONS[name].split('|')) {
      const p = document.createElementNS(SVG, 'path');
      p.setAttribute('d', d);
      s.append(p);
    }
    return s;
  }

  function fmtTime(iso, withDate) {
    if (!iso) return '';
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const o = { hour: '2-digit', minute: '2-digit' };
    if (withDate !== false) Object.assign(o, { month: 'numeric', day: 'numeric' });
    try { return new Intl.DateTimeFormat(S.lang, o).format(d); } catch (e) { return d.toLocaleString(); }
  }

  // Show the resident id only in part: the screen is public.
  function masked(id) {
    if (id.length <= 4) return id;
    return id.slice(0, 1) + '•'.repeat(Math.min(id.length - 3, 6)) + id.slice(-2);
  }

  function chars(s) { return [...s].length; }

  // ---- API ----------------------------------------------------------------

  async function api(method, path, body) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), method === 'GET' ? READ_TIMEOUT_MS : WRITE_TIMEOUT_MS);
    try {
      const opts = { method, cache: 'no-store', signal: ctrl.signal, headers: {} };
      if (body !== undefined) {
        opts.headers['Content-Type'] = 'application/json';
        opts.body = JSON.stringify(body);
      }
      const res = await fetch(path, opts);
      let data = null;
      try { data = await res.json(); } catch (e) { data = null; }
      return { status: res.status, data };
    } catch (e) {
      return { status: 0, data: null }; // no answer: the edge is down or slow
    } finally {
      clearTimeout(timer);
    }
  }

  // errText says what went wrong in the resident's words. For a write
  // without an answer the record may or may not be on the kiosk, so it says
  // exactly that instead of claiming either.
  function errText(r, write) {
    if (r.status === 0) return t(write ? 'err.network_write' : 'err.network');
    if (r.status === 400) {
      const f = r.data && r.data.field;
      return FIELDS.includes(f) && has('err.field.' + f) ? t('err.field.' + f) : t('err.bad_input');
    }
    if (r.status === 404) return t('err.not_found');
    if (r.status === 409 && r.data && r.data.code === 'cancelled') return t('act.cancelled_note');
    if (r.status === 507) return t('err.disk_full');
    if (r.status === 503) return t('err.unavailable');
    return t('err.server', { code: r.status });
  }

  // post is a write: done only when the edge answered 201, which means the
  // record is on the kiosk's disk.
  async function post(path, body) {
    const r = await api('POST', path, body);
    return { ok: r.status === 201, status: r.status, data: r.data, error: r.status === 201 ? '' : errText(r, true) };
  }

  // Run a write from a button: busy while it runs, the answer in msg.
  async function busy(btn, msg, fn) {
    const label = btn.textContent;
    btn.disabled = true;
    btn.setAttribute('aria-busy', 'true');
    btn.textContent = t('common.saving');
    if (msg) { msg.textContent = ''; msg.className = 'msg'; delete msg.dataset.list; }
    const gen = S.gen;
    try {
      return await fn();
    } finally {
      if (gen === S.gen && btn.isConnected) {
        btn.disabled = false;
        btn.removeAttribute('aria-busy');
        btn.textContent = label;
      }
    }
  }

  function showErr(msg, text) {
    msg.textContent = text;
    msg.className = 'msg err';
  }

  // ---- chrome: sync state, alarms, clock, toast -----------------------------

  async function pollSync() {
    const r = await api('GET', 'api/v1/sync');
    S.sync = r.status === 200 ? r.data : null;
    renderSync();
    setTimeout(pollSync, POLL_SYNC_MS);
  }

  // Waiting records are a normal state of an offline-first kiosk, shown
  // calmly; only an edge that does not answer is an error.
  function renderSync() {
    const box = $('sync');
    const s = S.sync;
    let state, text, sub = '';
    if (s === undefined) {
      state = 'unknown';
      text = '';
    } else if (!s) {
      state = 'down';
      text = t('sync.down');
    } else if (s.connected) {
      state = 'online';
      text = s.pending > 0 ? t('sync.online_sending', { n: s.pending }) : t('sync.online_all');
    } else {
      state = 'offline';
      text = s.pending > 0 ? t('sync.offline_saved', { n: s.pending }) : t('sync.offline_none');
    }
    if (s && s.last_sync) sub = t('sync.last', { time: fmtTime(s.last_sync) });
    else if (s) sub = t('sync.never');
    // The hub no longer takes this kiosk as itself: staff must see it.
    if (s && (s.identity === 'replaced' || s.identity === 'revoked')) {
      state = 'down';
      text = s.identity === 'revoked' ? t('sync.identity_revoked') : t('sync.identity_replaced');
    }
    box.dataset.state = state;
    box.dataset.pending = s ? String(s.pending) : '';
    $('sync-text').textContent = text;
    $('sync-sub').textContent = sub;
    for (const el of document.querySelectorAll('[data-offline-note]')) el.hidden = !offline();
  }

  async function pollNotices() {
    const r = await api('GET', 'api/v1/notices');
    if (r.status === 200 && Array.isArray(r.data)) {
      const changed = JSON.stringify(r.data) !== JSON.stringify(S.notices);
      S.notices = r.data;
      if (changed) {
        renderAlarm();
        if (S.screen === 'notices' || S.screen === 'start') refreshList();
      }
    }
    setTimeout(pollNotices, POLL_NOTICES_MS);
  }

  // Alarms are pushed: the edge holds a server-sent-events stream open and
  // sends the whole list as soon as the hub's change reaches it (a poll
  // would show a fire up to a poll interval late). EventSource reconnects
  // by itself; each connect starts with the current list.
  function watchAlarms() {
    const es = new EventSource('api/v1/alarms/stream');
    es.addEventListener('alarms', (e) => {
      let list;
      try { list = JSON.parse(e.data); } catch (err) { return; }
      if (!Array.isArray(list)) return;
      S.alarms = list;
      const live = new Set(list.map(alarmKey));
      for (const k of S.seen) if (!live.has(k)) S.seen.delete(k); // raised again later: alert again
      renderAlarm();
    });
  }

  function alarmKey(a) { return a.id + '@' + a.since; }

  // Fire (smoke, heat), water and door alarms each have their own words and
  // instructions in the catalogues; the hub sends only kinds and places.
  function alarmGroup(kind) { return kind === 'smoke' || kind === 'heat' ? 'fire' : kind === 'water' ? 'water' : 'door'; }

  // The time of an alarm in the site's zone, whatever zone this screen's
  // clock is set to: residents compare it with the clocks around them.
  function siteTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const o = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZone: S.kiosk.time_zone || 'Asia/Shanghai' };
    try { return new Intl.DateTimeFormat(S.lang, o).format(d); } catch (e) { return d.toISOString().slice(11, 16); }
  }

  function alarmWhere(a) {
    const b = a.building ? t('alert.building', { b: a.building }) : '';
    return [b, a.place].filter(Boolean).join(' · ');
  }

  // An alarm not yet dismissed here fills the screen (most severe first);
  // after that, and for every alarm until its source clears, a banner
  // stays on every screen.
  function renderAlarm() {
    const box = $('alarm');
    const alarms = S.alarms;
    renderAlert(alarms.find((a) => !S.seen.has(alarmKey(a))));
    if (!alarms.length) { box.hidden = true; box.replaceChildren(); return; }
    const a = alarms[0];
    box.dataset.kind = a.kind;
    box.replaceChildren(icon('alarm'), h('span', { class: 'alarm-text' },
      h('strong', { text: t('alert.kind.' + a.kind) + ' ' }), alarmWhere(a) + ' · ' + siteTime(a.since),
      alarms.length > 1 ? ' ' + t('alarm.more', { n: alarms.length - 1 }) : ''),
    h('button', { type: 'button', class: 'on-dark', onclick: () => { S.seen.delete(alarmKey(a)); renderAlarm(); } }, t('alarm.show')));
    box.hidden = false;
  }

  function renderAlert(a) {
    const box = $('alert');
    if (!a) { box.hidden = true; box.replaceChildren(); delete box.dataset.id; return; }
    const group = alarmGroup(a.kind);
    const steps = [1, 2, 3].map((i) => 'alert.do.' + group + '.' + i).filter(has);
    box.dataset.id = a.id;
    box.dataset.kind = a.kind;
    box.dataset.group = group;
    // The alert covers the language button of the bar: it has its own.
    box.replaceChildren(h('button', { type: 'button', class: 'lang alert-lang', lang: OTHER_LANG[S.lang], 'aria-label': t('lang.switch'),
      onclick: () => setLang(OTHER_LANG[S.lang], true) }, t('lang.other')),
    h('div', { class: 'alert-box' },
      h('div', { class: 'alert-icon', 'aria-hidden': 'true' }, icon('alarm')),
      h('h2', { id: 'alert-title', text: t('alert.title.' + group) }),
      h('p', { class: 'alert-kind', text: t('alert.kind.' + a.kind) }),
      h('p', { class: 'alert-where', text: alarmWhere(a) }),
      h('p', { class: 'alert-time', text: t('alert.since', { time: siteTime(a.since) }) }),
      h('ol', { class: 'alert-steps' }, steps.map((k) => h('li', { text: t(k) }))),
      h('button', { type: 'button', class: 'primary big alert-ok', onclick: () => { S.seen.add(alarmKey(a)); renderAlarm(); } }, t('alert.ok'))));
    box.hidden = false;
  }

  function tickClock() {
    const d = new Date();
    try {
      $('clock').textContent = new Intl.DateTimeFormat(S.lang, { month: 'numeric', day: 'numeric', weekday: 'short', hour: '2-digit', minute: '2-digit' }).format(d);
    } catch (e) { $('clock').textContent = d.toLocaleString(); }
  }

  let toastTimer = 0;
  function toast(text, kind) {
    const el = $('toast');
    el.textContent = text;
    el.className = 'toast ' + (kind || '');
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 8000);
  }
  function clearToast() { clearTimeout(toastTimer); $('toast').hidden = true; $('toast').textContent = ''; }

  // ---- idle: forget the resident --------------------------------------------

  function idleMs() { return Math.max(1000, Number(S.kiosk.idle_timeout_ms) || 60000); }
  // A countdown shows for the last 10 s, or the last quarter of a short timeout.
  function warnMs() { return Math.min(10000, idleMs() / 4); }
  function touched() {
    S.lastInput = Date.now();
    if (!$('idle').hidden) $('idle').hidden = true;
  }
  function hasSession() {
    return S.resident !== null || S.screen !== 'start' || S.lang !== DEFAULT_LANG || Object.keys(S.draft).length > 0;
  }
  function idleTick() {
    const idle = Date.now() - S.lastInput;
    if (!hasSession()) {
      $('idle').hidden = true;
    } else if (idle >= idleMs()) {
      reset();
    } else if (idle >= idleMs() - warnMs()) {
      const left = Math.ceil((idleMs() - idle) / 1000);
      $('idle-text').textContent = t('idle.text', { n: left });
      if ($('idle').hidden) {
        $('idle').hidden = false;
        $('idle-stay').focus();
      }
    }
  }

  // reset returns to the start screen as if nobody had been here: the
  // resident, their forms, lists and messages, and the language go.
  function reset() {
    S.gen++;
    S.resident = null;
    S.draft = {};
    S.acts = null;
    S.prevStatus = {};
    S.movedUp = new Set();
    S.sessionReports = [];
    S.lastResult = null;
    setElder(false);
    keyBuf = '';
    $('idle').hidden = true;
    clearToast();
    if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
    if (S.lang !== DEFAULT_LANG) {
      S.lang = DEFAULT_LANG;
      applyStatic();
    }
    S.lastInput = Date.now();
    go('start');
  }

  // ---- identification ---------------------------------------------------------

  // A card reader types digits and Enter into whatever has focus. Outside
  // text fields those keys collect here, so a card works on every screen
  // with nothing focused; inside a field they are ordinary typing.
  let keyBuf = '';
  let keyAt = 0;
  function editable(el) {
    return el && (el.isContentEditable || el.tagName === 'TEXTAREA' ||
      (el.tagName === 'INPUT' && !['checkbox', 'radio', 'button', 'submit'].includes(el.type)));
  }
  function onKey(e) {
    touched();
    if (e.key === 'Escape') {
      keyBuf = '';
      if (!$('idle').hidden) return;
      back();
      return;
    }
    if (e.ctrlKey || e.altKey || e.metaKey || editable(e.target)) return;
    const now = performance.now();
    if (now - keyAt > KEY_GAP_MS) keyBuf = '';
    keyAt = now;
    if (e.key === 'Enter') {
      if (keyBuf && ID_RE.test(keyBuf)) {
        e.preventDefault(); // the number, not the focused button, answers Enter
        const id = keyBuf;
        keyBuf = '';
        identify(id);
      }
      keyBuf = '';
      return;
    }
    if (e.key.length === 1 && /[A-Za-z0-9_-]/.test(e.key)) keyBuf = (keyBuf + e.key).slice(-64);
  }

  function identify(id) {
    id = id.trim();
    if (!ID_RE.test(id)) return false;
    const fresh = S.resident !== id;
    if (fresh) {
      // A different card: the previous person's session ends here. Someone
      // who only chose a language or began an anonymous report keeps it.
      if (S.resident !== null) reset();
      S.resident = id;
    }
    go('home');
    toast(t('id.welcome', { who: masked(id) }), 'ok');
    if (fresh) pollMine();
    return true;
  }

  // ---- navigation ----------------------------------------------------------------

  const SCREENS = {};
  let listRefresh = null; // the current screen's list re-render, for polls

  // Screens about one resident; without one they fall back to the start.
  const NEEDS_ID = ['home', 'activities', 'rate'];

  function go(screen, arg) {
    if (NEEDS_ID.includes(screen) && !S.resident) screen = 'start';
    // A message belongs to the screen it was shown on: left up, it would
    // cover the next screen's fields.
    clearToast();
    S.screen = screen;
    S.arg = arg === undefined ? null : arg;
    render();
  }

  function back() {
    if (S.screen === 'start' || S.screen === 'home') return;
    go(S.resident ? 'home' : 'start');
  }

  function render() {
    listRefresh = null;
    const root = h('section', { class: 'screen', 'data-screen': S.screen, 'aria-labelledby': 'screen-title' });
    SCREENS[S.screen](root, S.arg);
    $('main').replaceChildren(root);
    osk.redraw(); // its field went with the old screen
    renderAlarm();
    window.scrollTo(0, 0);
    // Move focus to the new screen's title, so keyboard and screen reader
    // users start there (no field is focused: a card read still works).
    const title = root.querySelector('#screen-title');
    if (title) { title.tabIndex = -1; title.focus({ preventScroll: true }); }
  }

  function refreshList() { if (listRefresh) listRefresh(); }

  // Replace a list's content and keep focus on the same control, so a poll
  // never throws a keyboard user back to the top.
  function swap(box, kids) {
    const key = document.activeElement && box.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    box.replaceChildren(...kids);
    if (key) {
      const el = box.querySelector('[data-key="' + CSS.escape(key) + '"]');
      if (el) el.focus({ preventScroll: true });
    }
  }

  function topbar(titleKey, vars) {
    const kids = [];
    if (S.screen !== 'start' && S.screen !== 'home') {
      kids.push(h('button', { type: 'button', class: 'nav-back', onclick: back }, icon('back'), t('nav.back')));
    }
    kids.push(h('h1', { id: 'screen-title', text: t(titleKey, vars) }));
    if (S.resident) {
      kids.push(h('button', { type: 'button', class: 'nav-exit', onclick: reset }, icon('exit'), t('nav.exit')));
    }
    return h('div', { class: 'topbar' }, kids);
  }

  // offlineNote says the lists are as last synced; it follows the sync
  // state while the screen is up (renderSync), so it goes when the kiosk
  // reconnects and comes when it drops.
  function offlineNote() {
    const el = h('p', { class: 'note calm', 'data-offline-note': '1', text: t('offline.last_synced') });
    el.hidden = !offline();
    return el;
  }
  function offline() { return !!(S.sync && !S.sync.connected); }

  // ---- screens -------------------------------------------------------------------

  SCREENS.start = (root) => {
    root.append(
      h('div', { class: 'hero' },
        h('h1', { id: 'screen-title', text: t('start.title') }),
        h('p', { class: 'lead', text: t('start.lead') })),
      h('button', { type: 'button', class: 'primary huge', id: 'go-identify', onclick: () => go('identify') },
        icon('card'), h('span', {}, t('start.identify'), h('small', { text: t('start.identify_hint') }))),
      h('div', { class: 'tiles two' },
        tile('notices', 'start.notices', () => go('notices')),
        tile('report', 'start.report_anon', () => go('report', 'new'))),
      h('div', { class: 'tiles two follow-tools' },
        h('button', { type: 'button', class: 'tile', id: 'elder-toggle', 'aria-pressed': String(S.elder),
          onclick: () => { setElder(!S.elder); render(); } }, icon('elder'), h('span', { text: t(S.elder ? 'elder.off' : 'elder.on') })),
        callTile()));
    if (S.elder) return; // fewer choices: the notice board is one tap away
    const box = h('div', { class: 'preview', 'aria-live': 'off' });
    root.append(h('h2', { class: 'sec', text: t('start.latest') }), box);
    listRefresh = () => swap(box, S.notices.length ? S.notices.slice(0, 3).map((n) => noticeCard(n, true)) :
      [h('p', { class: 'note', text: t('notices.none') })]);
    listRefresh();
  };

  function tile(iconName, key, onclick, extra) {
    return h('button', Object.assign({ type: 'button', class: 'tile', 'data-go': iconName, onclick }, extra || {}), icon(iconName), h('span', { text: t(key) }));
  }

  SCREENS.identify = (root) => {
    const input = h('input', { id: 'rid', name: 'resident', type: 'text', inputmode: 'none', autocomplete: 'off',
      autocapitalize: 'characters', spellcheck: 'false', maxlength: '64', class: 'rid', 'aria-describedby': 'rid-msg' });
    const msg = h('p', { id: 'rid-msg', class: 'msg', role: 'alert' });
    const submit = () => {
      const v = input.value.trim();
      if (!identify(v)) showErr(msg, t(v ? 'id.invalid' : 'id.empty'));
    };
    const press = (k) => {
      if (k === 'del') input.value = input.value.slice(0, -1);
      else if (k === 'clr') input.value = '';
      else input.value = (input.value + k).slice(0, 64);
      msg.textContent = '';
    };
    const keys = ['1', '2', '3', '4', '5', '6', '7', '8', '9', 'clr', '0', 'del'].map((k) =>
      h('button', { type: 'button', class: 'key' + (k.length > 1 ? ' fn' : ''), 'data-key': k, onclick: () => press(k),
        'aria-label': k === 'del' ? t('id.del') : k === 'clr' ? t('id.clear') : null },
      k === 'del' ? '⌫' : k === 'clr' ? t('id.clear_short') : k));
    root.append(topbar('id.title'),
      h('p', { class: 'lead', text: t('id.lead') }),
      h('form', { class: 'identify', novalidate: true, onsubmit: (e) => { e.preventDefault(); submit(); } },
        h('label', { for: 'rid', text: t('id.label') }), input, msg,
        h('div', { class: 'keypad', role: 'group', 'aria-label': t('id.keypad') }, keys),
        h('button', { type: 'submit', class: 'primary big', id: 'rid-ok' }, t('id.ok'))));
  };

  SCREENS.home = (root) => {
    const mineTile = tile('mine', 'home.mine', () => go('mine'));
    root.append(topbar('home.title', { who: masked(S.resident) }),
      h('p', { class: 'lead', text: t('home.lead') }),
      h('div', { class: 'tiles' },
        tile('activities', 'home.activities', () => go('activities')),
        tile('report', 'home.report', () => go('report', 'new')),
        mineTile,
        S.elder ? '' : tile('rate', 'home.rate', () => go('rate')),
        S.elder ? '' : tile('notices', 'home.notices', () => go('notices')),
        callTile(),
        tile('exit', 'home.exit', reset, { class: 'tile quiet' })));
    // A badge when one of the resident's reports changed since they last
    // looked at them (the kiosk keeps when that was).
    const gen = S.gen;
    (async () => {
      const r = await api('GET', 'api/v1/reports?resident=' + encodeURIComponent(S.resident));
      if (gen !== S.gen || !mineTile.isConnected || r.status !== 200 || !Array.isArray(r.data)) return;
      const n = r.data.filter((x) => x.changed).length;
      mineTile.dataset.changed = String(n);
      if (n) mineTile.append(h('span', { class: 'count', id: 'mine-badge', text: t('home.mine_changed', { n }) }));
    })();
  };

  // ---- following reports up, elderly mode, the office's phone -------------------------

  function setElder(on) {
    S.elder = on;
    document.body.classList.toggle('elder', on);
  }

  // callTile shows the property office's number; null when the kiosk has none.
  function callTile() {
    if (!S.kiosk.office_phone) return '';
    return h('button', { type: 'button', class: 'tile', id: 'call-office', onclick: () => go('call') },
      icon('phone'), h('span', { text: t('call.tile') }));
  }

  SCREENS.call = (root) => {
    root.append(topbar('call.title'),
      h('p', { class: 'lead', text: t('call.lead') }),
      h('p', { class: 'phone', id: 'office-phone' }, h('a', { href: 'tel:' + S.kiosk.office_phone.replace(/[^0-9+]/g, ''), text: S.kiosk.office_phone })),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary big', onclick: back }, t('common.done'))));
  };

  // The time of an HLC timestamp (its wall clock is the high 48 bits).
  function hlcTime(ts) { return new Date(Math.floor(Number(ts) / 65536)).toISOString(); }

  // reportNumber is what a resident reads out: the short number, or the id
  // of a report filed before kiosks numbered them.
  function reportNumber(x) { return x.number || x.id; }

  function timeline(x) {
    const steps = Array.isArray(x.steps) ? x.steps : [];
    if (!steps.length) return '';
    return h('ol', { class: 'timeline', 'aria-label': t('mine.timeline') }, steps.map((st) =>
      h('li', { 'data-event': st.event, 'data-status': st.status || '' },
        h('span', { class: 'when', text: fmtTime(hlcTime(st.hlc)) }), ' ',
        h('strong', { text: t('step.' + st.event) }),
        st.status && st.event === 'patched' ? ' · ' + t('status.' + st.status) : '',
        st.reply && st.event !== 'merged_into' ? h('span', { class: 'reply' }, t('mine.note') + ' ' + st.reply) : '')));
  }

  // reopenBox offers "still not fixed" on a resolved report while the
  // kiosk's window lasts.
  function reopenBox(x) {
    if (!x.reopenable || !S.resident) return '';
    const msg = h('p', { class: 'msg', role: 'alert' });
    const btn = h('button', { type: 'button', class: 'primary', 'data-key': 'reopen-' + x.id, 'data-reopen': x.id }, t('mine.reopen'));
    const gen = S.gen;
    btn.addEventListener('click', () => busy(btn, msg, async () => {
      const r = await post('api/v1/reports/' + encodeURIComponent(x.id) + '/reopen', { resident: S.resident });
      if (gen !== S.gen) return;
      if (!r.ok) { showErr(msg, r.error); return; }
      box.replaceChildren(h('p', { class: 'ok', 'data-reopened': x.id, text: t('mine.reopened') }));
    }));
    const box = h('div', { class: 'reopen' }, h('p', { class: 'note', text: t('mine.reopen_until', { time: fmtTime(x.reopen_until) }) }), btn, msg);
    return box;
  }

  // qrFor is the QR code of a report's public page, when the kiosk makes them.
  function qrFor(id, number) {
    if (!S.kiosk.qr) return '';
    return h('figure', { class: 'qr' }, h('img', { src: 'api/v1/reports/' + encodeURIComponent(id) + '/qr.svg', alt: t('rep.qr_alt', { n: number }), width: '240', height: '240' }),
      h('figcaption', { text: t('rep.qr_hint') }));
  }

  // ---- activities -------------------------------------------------------------------

  async function fetchMine() {
    const r = encodeURIComponent(S.resident);
    const [a, c] = await Promise.all([api('GET', 'api/v1/activities?resident=' + r), api('GET', 'api/v1/checkins?resident=' + r)]);
    if (a.status !== 200 || !Array.isArray(a.data)) return { error: errText(a) };
    const last = {};
    if (c.status === 200 && Array.isArray(c.data)) for (const x of c.data) last[x.activity] = x;
    return { acts: a.data, last };
  }

  // pollMine follows the identified resident's standing, to tell them at
  // once when the hub moved them up from the waitlist.
  async function pollMine() {
    const gen = S.gen;
    if (!S.resident) return;
    const m = await fetchMine();
    if (gen !== S.gen) return;
    if (!m.error) {
      for (const a of m.acts) {
        if (S.prevStatus[a.id] === 'waitlisted' && a.status === 'confirmed') {
          S.movedUp.add(a.id);
          toast(t('act.moved_up', { title: a.title }), 'ok');
        } else if (S.prevStatus[a.id] === 'recorded' && a.status === 'confirmed') {
          // Recorded, awaiting the hub: now confirmed, which is no move
          // up from a waitlist the resident was never told of.
          toast(t('act.confirmed_later', { title: a.title }), 'ok');
        }
        S.prevStatus[a.id] = a.status || '';
      }
      const changed = JSON.stringify(m) !== JSON.stringify(S.acts);
      S.acts = m;
      if (changed && S.screen === 'activities') refreshList();
    }
    setTimeout(() => { if (gen === S.gen) pollMine(); }, POLL_MINE_MS);
  }

  SCREENS.activities = (root) => {
    const list = h('div', { class: 'cards', id: 'activity-list', 'aria-live': 'polite' });
    const msg = h('p', { class: 'msg', role: 'alert' });
    root.append(topbar('act.title'), h('p', { class: 'lead', text: t('act.lead') }), offlineNote() || '', msg, list);
    listRefresh = () => {
      const m = S.acts;
      if (!m) { swap(list, [h('p', { class: 'note', text: t('common.loading') })]); return; }
      // The list's own error comes and goes with the list; the answer to
      // a tap (a card's) stays until the next tap, whatever a refresh finds.
      const tapAnswer = msg.textContent && !msg.dataset.list;
      if (m.error) {
        if (!tapAnswer) { showErr(msg, m.error); msg.dataset.list = '1'; }
        return;
      }
      if (msg.dataset.list) { msg.textContent = ''; msg.className = 'msg'; delete msg.dataset.list; }
      swap(list, m.acts.length ? m.acts.map((a) => activityCard(a, m.last[a.id], msg)) :
        [h('p', { class: 'note', text: t('act.none') })]);
    };
    listRefresh();
    const gen = S.gen;
    fetchMine().then((m) => {
      if (gen !== S.gen || S.screen !== 'activities') return;
      // Redraw only what changed: a redraw replaces the cards, and a tap
      // landing on one as it is replaced is lost.
      const changed = JSON.stringify(m) !== JSON.stringify(S.acts);
      S.acts = m;
      if (changed) listRefresh();
    });
  };

  function activityCard(a, last, msg) {
    const left = last && last.action === 'out';
    // The replica's standing, else this kiosk's own record of a check-in
    // the hub has not answered yet.
    const st = left ? 'left' : a.status || (last && last.action === 'in' ? last.status || 'recorded' : 'none');
    // "Full" is never shown to a resident who holds a seat.
    const seats = a.capacity > 0 ?
      (a.seats_left > 0 ? t('act.seats_left', { n: a.seats_left, cap: a.capacity }) :
        t(st === 'confirmed' ? 'act.full_yours' : 'act.full', { cap: a.capacity })) :
      t('act.no_limit');
    const when = a.start ? (fmtTime(a.start) + (a.end ? ' – ' + fmtTime(a.end, false) : '')) : '';
    const actions = [];
    const checkin = (action) => async (e) => {
      const btn = e.currentTarget;
      const gen = S.gen;
      await busy(btn, msg, async () => {
        const r = await post('api/v1/checkins', { resident: S.resident, activity: a.id, action });
        if (gen !== S.gen) return;
        if (!r.ok) { showErr(msg, r.error); return; }
        // The standing first, then one answer that agrees with it: the hub
        // may have confirmed the resident already, and "full" next to
        // "seat confirmed" is two answers to one tap.
        S.acts = await fetchMine();
        if (gen !== S.gen) return;
        const now = S.acts && S.acts.acts ? S.acts.acts.find((x) => x.id === a.id) : null;
        let res = action === 'out' ? 'out' : r.data.status;
        if (res !== 'out' && now && now.status === 'confirmed') res = 'confirmed';
        if (res === 'recorded' && r.data.act) res = 'pending'; // known here, awaiting the hub's seat
        if (res === 'confirmed' && r.data.act === 'signup') res = 'signup';
        if (action !== 'out') S.prevStatus[a.id] = (now && now.status) || r.data.status;
        S.lastResult = { id: a.id, result: res };
        toast(t('act.result.' + res, { title: a.title }), res === 'waitlisted' ? 'calm' : 'ok');
        if (S.screen === 'activities') refreshList();
      });
    };
    // Before the check-in window a check-in is a sign-up, inside it
    // attendance: one who signed up checks in again on the day.
    const ended = a.act === 'ended';
    if (!ended && !left && !a.cancelled && (st === 'none' || (a.act === 'attendance' && !a.attended))) {
      actions.push(h('button', { type: 'button', class: 'primary', 'data-key': 'in-' + a.id, onclick: checkin('in') },
        t(a.act === 'signup' ? 'act.signup' : 'act.checkin')));
    }
    if (st !== 'none' && !left && !ended) actions.push(h('button', { type: 'button', 'data-key': 'out-' + a.id, onclick: checkin('out') }, t(st === 'waitlisted' ? 'act.leave_waitlist' : 'act.checkout')));
    if (a.attended) {
      actions.push(h('button', { type: 'button', 'data-key': 'rate-' + a.id, onclick: () => rateAgain({ target: a.id, title: a.title, kind: 'activity' }) }, t('act.rate')));
    }
    // The answer to the last tap on this card, while it still holds (a move
    // up from the waitlist supersedes "waitlisted").
    let result = S.lastResult && S.lastResult.id === a.id ? S.lastResult.result : '';
    const resultStatus = { signup: 'confirmed', pending: 'recorded' }[result] || result;
    if (result && (result === 'out' ? !left : a.status && resultStatus !== a.status)) result = '';
    return h('article', { class: 'card act' + (a.cancelled ? ' cancelled' : ''), 'data-id': a.id, 'data-status': st, 'data-result': result || null,
      'data-cancelled': a.cancelled ? '1' : null },
      h('div', { class: 'card-head' }, h('span', { class: 'badge kind-' + a.kind, text: t('kind.' + a.kind) }),
        a.cancelled ? h('span', { class: 'badge st-cancelled', text: t('act.cancelled') }) : '',
        h('span', { class: 'badge st-' + st, text: t('act.status.' + st) })),
      h('h3', { text: a.title || a.id }),
      a.cancelled ? h('p', { class: 'result r-cancelled', text: t('act.cancelled_note') }) : '',
      when ? h('p', { class: 'meta', text: when }) : '',
      ended ? h('p', { class: 'note', text: t('act.ended') }) :
        a.act === 'signup' && a.checkin_opens ? h('p', { class: 'meta', text: t('act.opens', { time: fmtTime(a.checkin_opens) }) }) : '',
      a.venue ? h('p', { class: 'meta', text: t('act.venue', { venue: a.venue }) }) : '',
      a.description ? h('p', { class: 'desc', text: a.description }) : '',
      h('p', { class: 'seats' + (a.capacity > 0 && a.seats_left === 0 ? ' full' : ''), text: seats }),
      S.movedUp.has(a.id) && a.status === 'confirmed' ? h('p', { class: 'good', text: t('act.moved_up_note') }) : '',
      result ? h('p', { class: 'result r-' + result, text: t('act.result.' + result, { title: a.title }) }) : '',
      a.status && !a.synced ? h('p', { class: 'note', text: t('act.unsynced') }) : '',
      last && !left && last.time ? h('p', { class: 'meta', text: t('act.in_since', { time: fmtTime(last.time) }) }) : '',
      actions.length ? h('div', { class: 'actions' }, actions) : '');
  }

  // ---- reports ------------------------------------------------------------------------

  // A report is filed by touch alone (a lobby kiosk has no keyboard):
  // category, then one of the site's common problems of it (or "other",
  // typed on the on-screen keyboard), then the building from the site's
  // buttons and the unit from a keypad, then send. Every field still takes
  // a hardware keyboard where one is attached.
  function reportDraft() {
    if (!S.draft.report) {
      S.draft.report = { step: 'category', category: '', choice: -1, other: false, building: S.kiosk.building || '',
        unit: '', title: '', desc: '', anon: !S.resident };
    }
    return S.draft.report;
  }

  function choicesOf(category) {
    const c = S.kiosk.report_choices && S.kiosk.report_choices[category];
    return Array.isArray(c) ? c : [];
  }
  // A choice in the resident's language: the title they saw is the one filed.
  function choiceText(c) { return (S.lang === 'en' && c.en) || c.zh; }
  function buildingName(b) { return (S.lang === 'en' ? b.name_en : b.name) || b.name || b.id; }

  function reportTitle(d) {
    const c = choicesOf(d.category)[d.choice];
    return !d.other && c ? choiceText(c) : d.title.trim();
  }

  // normUnit writes a unit as the site stores it (unit, the word for unit
  // and room; "1 402"; full-width digits → "1-402"), as the edge does on
  // every report. The Chinese words are escaped: text lives in catalogues.
  const UNIT = '\u5355\u5143', ROOM = '(?:\u5ba4|\u53f7)?'; // unit; room or number
  function normUnit(s) {
    s = s.replace(/[\uFF01-\uFF5E]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xFEE0))
      .replace(/\u3000/g, ' ').replace(/[—–−]/g, '-').trim();
    let m = new RegExp('^(\\d{1,2})\\s*(?:' + UNIT + '|[-_/#.\\s])\\s*(\\d{1,5})\\s*' + ROOM + '$').exec(s);
    if (m) return (m[1].replace(/^0+(?=\d)/, '')) + '-' + m[2];
    m = new RegExp('^(\\d{1,5})\\s*' + ROOM + '$').exec(s);
    if (m) return m[1];
    m = new RegExp('^(\\d{1,2})\\s*' + UNIT + '$').exec(s);
    if (m) return m[1].replace(/^0+(?=\d)/, '');
    return s;
  }

  SCREENS.report = (root, arg) => {
    // A new visit starts over once the last report was sent; otherwise the
    // draft is kept (a language switch, a look at the notices).
    if (arg === 'new') {
      S.arg = null; // once: re-renders of this visit keep the draft
      if (S.draft.report && S.draft.report.step === 'done') delete S.draft.report;
    }
    const d = reportDraft();
    if (d.step === 'category') {
      root.append(topbar('rep.title'), h('p', { class: 'lead', text: t('rep.pick') }),
        h('div', { class: 'tiles cats', role: 'group', 'aria-label': t('rep.category') },
          CATEGORIES.filter((c) => (S.kiosk.categories || CATEGORIES).includes(c)).map((c) =>
            h('button', { type: 'button', class: 'tile cat cat-' + c, 'data-category': c, 'aria-pressed': String(d.category === c),
              onclick: () => {
                if (d.category !== c) { d.choice = -1; d.other = false; }
                d.category = c;
                // Without choices for the category there is only free text.
                d.step = choicesOf(c).length ? 'problem' : 'form';
                if (!choicesOf(c).length) d.other = true;
                render();
              } }, icon(c), h('span', { text: t('cat.' + c) })))));
      return;
    }
    if (d.step === 'problem') return reportProblem(root, d);
    if (d.step === 'done') return reportDone(root, d);
    reportForm(root, d);
  };

  function chosenCategory(d) {
    return h('div', { class: 'chosen' }, icon(d.category), h('strong', { text: t('cat.' + d.category) }),
      h('button', { type: 'button', id: 'rep-change', onclick: () => { d.step = 'category'; render(); } }, t('rep.change')));
  }

  function reportProblem(root, d) {
    const list = choicesOf(d.category);
    root.append(topbar('rep.title'), chosenCategory(d), h('p', { class: 'lead', text: t('rep.pick_problem') }),
      h('div', { class: 'choices', role: 'group', 'aria-label': t('rep.what') },
        list.map((c, i) => h('button', { type: 'button', class: 'choice', 'data-choice': String(i),
          'aria-pressed': String(!d.other && d.choice === i),
          onclick: () => { d.choice = i; d.other = false; d.step = 'form'; render(); } }, choiceText(c))),
        h('button', { type: 'button', class: 'choice other', id: 'rep-other', 'aria-pressed': String(d.other),
          onclick: () => { d.other = true; d.choice = -1; d.step = 'form'; render(); } }, t('rep.other'))));
  }

  function field(id, labelKey, el, hintKey) {
    el.id = id;
    if (hintKey) el.setAttribute('aria-describedby', id + '-hint');
    return h('div', { class: 'field' }, h('label', { for: id, text: t(labelKey) }), el,
      hintKey ? h('small', { id: id + '-hint', text: t(hintKey) }) : '');
  }

  function reportForm(root, d) {
    const msg = h('p', { class: 'msg', role: 'alert', id: 'rep-msg' });
    const dupBox = h('div', { class: 'dups', id: 'dups', 'aria-live': 'polite' });
    const bind = (key) => (e) => { d[key] = e.target.type === 'checkbox' ? e.target.checked : e.target.value; };
    const buildings = Array.isArray(S.kiosk.buildings) ? S.kiosk.buildings : [];
    const planned = (id) => buildings.find((b) => b.id === id);

    // The building: the site's buildings as buttons when the kiosk has the
    // site plan, else typed.
    let building, buildingBox;
    if (buildings.length) {
      if (d.building && !planned(d.building)) d.building = '';
      const pick = (id) => {
        d.building = id;
        for (const b of buildingBox.querySelectorAll('[data-building]')) b.setAttribute('aria-pressed', String(b.dataset.building === id));
        unitHint.textContent = unitHintText();
        msg.textContent = ''; msg.className = 'msg';
        loadDups();
      };
      buildingBox = h('fieldset', { class: 'pick buildings', id: 'rep-buildings' }, h('legend', { text: t('rep.building') }),
        h('div', { class: 'bgrid' }, buildings.map((b) => h('button', { type: 'button', class: 'bld', 'data-building': b.id,
          'aria-pressed': String(d.building === b.id), onclick: () => pick(b.id) }, buildingName(b)))));
    } else {
      building = h('input', { type: 'text', value: d.building, maxlength: '64', autocomplete: 'off', oninput: bind('building'),
        onchange: () => loadDups() });
      buildingBox = field('rep-building', 'rep.building', building);
    }

    // The unit: typed on a keypad as unit-room ("1-402"); the edge writes
    // other forms the same way.
    const unit = h('input', { type: 'text', value: d.unit, maxlength: '64', autocomplete: 'off', inputmode: 'none', oninput: bind('unit') });
    const unitHintText = () => {
      const b = planned(d.building);
      return b && b.units ? t('rep.unit_hint_plan', { units: b.units, floors: b.floors || '?' }) : t('rep.unit_hint');
    };
    const unitHint = h('small', { id: 'rep-unit-hint', text: unitHintText() });
    const press = (k) => {
      if (k === 'del') unit.value = unit.value.slice(0, -1);
      else if (unit.value.length < 12) unit.value += k;
      d.unit = unit.value;
      msg.textContent = ''; msg.className = 'msg';
    };
    unit.id = 'rep-unit';
    unit.setAttribute('aria-describedby', 'rep-unit-hint');
    const unitBox = h('div', { class: 'field unit' }, h('label', { for: 'rep-unit', text: t('rep.unit') }), unit, unitHint,
      h('div', { class: 'keypad unitpad', role: 'group', 'aria-label': t('rep.unit_keypad') },
        ['1', '2', '3', '4', '5', '6', '7', '8', '9', '-', '0', 'del'].map((k) =>
          h('button', { type: 'button', class: 'key' + (k === 'del' || k === '-' ? ' fn' : ''), 'data-ukey': k, onclick: () => press(k),
            'aria-label': k === 'del' ? t('id.del') : k === '-' ? t('rep.unit_sep') : null },
          k === 'del' ? '⌫' : k === '-' ? t('rep.unit_sep_short') : k))));

    // The problem: the choice tapped, or typed on the on-screen keyboard.
    let title = null;
    let what;
    if (d.other) {
      title = h('input', { type: 'text', value: d.title, maxlength: '120', autocomplete: 'off', inputmode: 'none', required: true,
        'data-osk': '1', oninput: bind('title') });
      what = field('rep-title', 'rep.what', title, 'rep.what_hint');
    } else {
      what = h('div', { class: 'field' }, h('span', { class: 'label', id: 'rep-what-label', text: t('rep.what') }),
        h('p', { class: 'picked', id: 'rep-picked', 'aria-labelledby': 'rep-what-label' }, h('strong', { text: reportTitle(d) }),
          h('button', { type: 'button', id: 'rep-repick', onclick: () => { d.step = 'problem'; render(); } }, t('rep.repick'))));
    }
    const desc = h('textarea', { rows: '2', maxlength: '500', inputmode: 'none', 'data-osk': '1', oninput: bind('desc') });
    desc.value = d.desc;
    const anon = h('input', { type: 'checkbox', id: 'rep-anon', onchange: bind('anon') });
    anon.checked = d.anon || !S.resident;
    anon.disabled = !S.resident;
    const submit = h('button', { type: 'submit', class: 'primary big', id: 'rep-submit' }, t('rep.submit'));

    const loadDups = async () => {
      const b = d.building.trim();
      if (!ID_RE.test(b)) { dupBox.replaceChildren(); return; }
      const gen = S.gen;
      const r = await api('GET', 'api/v1/reports?open=true&category=' + encodeURIComponent(d.category) + '&building=' + encodeURIComponent(b));
      if (gen !== S.gen || !dupBox.isConnected || r.status !== 200 || !Array.isArray(r.data)) return;
      if (!r.data.length) { dupBox.replaceChildren(); return; }
      const mine = await mineIds();
      if (gen !== S.gen || !dupBox.isConnected) return;
      dupBox.replaceChildren(h('h2', { class: 'sec', id: 'dups-title', text: t('rep.dups', { n: r.data.length }) }),
        h('p', { class: 'note', text: t('rep.dups_hint') }),
        ...r.data.slice(0, 5).map((x) => dupCard(x, mine, d)));
    };

    const onSubmit = async (e) => {
      e.preventDefault();
      osk.close();
      const b = d.building.trim(), u = normUnit(d.unit), ti = reportTitle(d);
      if (!ID_RE.test(b)) { showErr(msg, t(buildings.length ? 'err.pick_building' : 'err.field.building')); (building || buildingBox.querySelector('button')).focus(); return; }
      if (u && !ID_RE.test(u)) { showErr(msg, t('err.field.unit')); unit.focus(); return; }
      if (!ti || chars(ti) > 120) { showErr(msg, t('err.field.title')); if (title) title.focus(); return; }
      const body = { category: d.category, title: ti, description: d.desc.trim(), building: b, unit: u };
      if (S.resident && !d.anon) body.resident = S.resident;
      const gen = S.gen;
      await busy(submit, msg, async () => {
        const r = await post('api/v1/reports', body);
        if (gen !== S.gen) return;
        if (!r.ok) { showErr(msg, r.error); return; }
        S.sessionReports.push(r.data.id);
        d.step = 'done';
        d.done = { id: r.data.id, number: r.data.number, voted: false, title: ti, anon: !body.resident };
        render();
      });
    };

    root.append(topbar('rep.title'), chosenCategory(d), dupBox,
      h('form', { class: 'form rep-form', novalidate: true, onsubmit: onSubmit, 'aria-labelledby': 'screen-title' },
        h('div', { class: 'col' }, what, buildingBox, unitBox),
        h('div', { class: 'col' },
          field('rep-desc', 'rep.details', desc, 'rep.details_hint'),
          h('div', { class: 'check' }, anon, h('label', { for: 'rep-anon', text: t('rep.anon') }),
            h('small', { text: t(S.resident ? 'rep.anon_hint' : 'rep.anon_forced') })),
          msg, submit)));
    loadDups();
  }

  async function mineIds() {
    const out = new Map();
    if (!S.resident) return out;
    const r = await api('GET', 'api/v1/reports?resident=' + encodeURIComponent(S.resident));
    if (r.status === 200 && Array.isArray(r.data)) for (const x of r.data) out.set(x.id, x.mine);
    return out;
  }

  function dupCard(x, mine, d) {
    const msg = h('p', { class: 'msg', role: 'alert' });
    let act;
    if (mine.get(x.id) === 'filed') act = h('p', { class: 'note', text: t('rep.dup_yours') });
    else if (mine.get(x.id) === 'voted') act = h('p', { class: 'note', text: t('rep.dup_voted') });
    else if (!S.resident) act = h('p', { class: 'note', text: t('rep.vote_needs_id') });
    else {
      act = h('button', { type: 'button', class: 'primary', 'data-key': 'vote-' + x.id, 'data-vote': x.id, onclick: async (e) => {
        const gen = S.gen;
        await busy(e.currentTarget, msg, async () => {
          const r = await post('api/v1/reports/' + encodeURIComponent(x.id) + '/votes', { resident: S.resident });
          if (gen !== S.gen) return;
          if (!r.ok) { showErr(msg, r.error); return; }
          d.step = 'done';
          d.done = { id: x.id, voted: true, title: x.title };
          render();
        });
      } }, t('rep.metoo'));
    }
    return h('article', { class: 'card dup', 'data-id': x.id },
      h('h3', { text: x.title }),
      h('p', { class: 'meta', text: [x.building + (x.unit ? ' ' + x.unit : ''), t('status.' + x.status), t('rep.votes', { n: x.votes })].join(' · ') }),
      act, msg);
  }

  function reportDone(root, d) {
    const box = h('div', { class: 'status-box', id: 'rep-status', 'aria-live': 'polite' });
    root.append(topbar(d.done.voted ? 'rep.voted_title' : 'rep.done_title'),
      h('div', { class: 'done' }, h('p', { class: 'big-ok', id: 'rep-headline', text: t(d.done.voted ? 'rep.voted' : d.done.synced ? 'rep.done_synced' : 'rep.done') }),
        h('p', { text: d.done.title }),
        d.done.voted ? '' : h('p', { class: 'number', id: 'rep-number', 'data-id': d.done.id, text: t('rep.number', { id: d.done.number || d.done.id }) }),
        d.done.voted ? '' : qrFor(d.done.id, d.done.number || d.done.id),
        d.done.anon ? h('p', { class: 'note', text: t('rep.anon_note') }) : '',
        box,
        h('div', { class: 'actions' },
          S.resident ? h('button', { type: 'button', class: 'primary', onclick: () => go('mine') }, t('rep.see_mine')) : '',
          h('button', { type: 'button', onclick: () => { delete S.draft.report; go(S.resident ? 'home' : 'start'); } }, t('common.done')))));
    const gen = S.gen;
    const follow = async () => {
      if (gen !== S.gen || !box.isConnected) return;
      const r = await api('GET', 'api/v1/reports/' + encodeURIComponent(d.done.id));
      if (gen !== S.gen || !box.isConnected) return;
      if (r.status === 200 && r.data) {
        box.replaceChildren(reportStatus(r.data));
        // "Saved on this kiosk" is true only until the hub has it.
        if (r.data.synced && !d.done.voted) { d.done.synced = true; $('rep-headline').textContent = t('rep.done_synced'); }
      }
      setTimeout(follow, POLL_SYNC_MS);
    };
    queueMicrotask(follow); // once the screen is in the page
  }

  // reportStatus is a report's state as last synced, in words.
  function reportStatus(x) {
    return h('p', { class: 'status st-' + x.status, 'data-status': x.status, 'data-synced': String(!!x.synced) },
      h('strong', { text: t('status.' + x.status) }), ' · ',
      x.synced ? t('rep.synced', { time: fmtTime(x.updated_at) }) : t('rep.not_synced'));
  }

  SCREENS.mine = (root) => {
    const list = h('div', { class: 'cards', id: 'mine-list', 'aria-live': 'polite' });
    const msg = h('p', { class: 'msg', role: 'alert' });
    root.append(topbar('mine.title'), offlineNote() || '', msg, list);
    const gen = S.gen;
    let seenSent = false;
    const load = async () => {
      const items = [];
      if (S.resident) {
        const r = await api('GET', 'api/v1/reports?resident=' + encodeURIComponent(S.resident));
        if (gen !== S.gen) return;
        if (r.status !== 200 || !Array.isArray(r.data)) { showErr(msg, errText(r)); return; }
        items.push(...r.data);
      }
      for (const id of S.sessionReports) {
        if (items.some((x) => x.id === id)) continue;
        const r = await api('GET', 'api/v1/reports/' + encodeURIComponent(id));
        if (gen !== S.gen) return;
        if (r.status === 200 && r.data) items.push(Object.assign(r.data, { mine: 'anon' }));
      }
      if (gen !== S.gen || !list.isConnected) return;
      msg.textContent = '';
      swap(list, items.length ? items.map(mineCard) : [h('p', { class: 'note', text: t('mine.none') })]);
      // Looked at: the home screen's badge counts changes after this.
      if (S.resident && !seenSent) { seenSent = true; post('api/v1/reports/seen', { resident: S.resident }); }
      // Statuses change as the kiosk syncs: follow them while shown.
      setTimeout(() => { if (gen === S.gen && list.isConnected) load(); }, POLL_MINE_MS);
    };
    swap(list, [h('p', { class: 'note', text: t('common.loading') })]);
    queueMicrotask(load); // once the screen is in the page
  };

  function mineCard(x) {
    const rateable = x.status === 'resolved' && S.resident;
    return h('article', { class: 'card report', 'data-id': x.id, 'data-status': x.status, 'data-changed': String(!!x.changed) },
      h('div', { class: 'card-head' }, h('span', { class: 'badge', text: t('cat.' + x.category) }),
        h('span', { class: 'badge rel', text: t('mine.rel.' + x.mine) }),
        x.changed ? h('span', { class: 'badge new', text: t('mine.changed') }) : ''),
      h('h3', { text: x.title }),
      h('p', { class: 'number', text: t('rep.number', { id: reportNumber(x) }) }),
      h('p', { class: 'meta', text: [x.building + (x.unit ? ' ' + x.unit : ''), t('rep.votes', { n: x.votes })].join(' · ') }),
      x.merged_into ? h('p', { class: 'merged', 'data-merged-into': x.merged_into, text: t('mine.merged', { n: x.merged_into_number || x.merged_into }) }) : '',
      reportStatus(x),
      timeline(x),
      x.note && !(x.steps || []).length ? h('p', { class: 'op-note' }, h('strong', { text: t('mine.note') + ' ' }), x.note) : '',
      reopenBox(x),
      rateable ? h('div', { class: 'actions' }, h('button', { type: 'button', 'data-key': 'rate-' + x.id,
        onclick: () => rateAgain({ target: x.id, title: x.title, kind: 'report' }) }, t('mine.rate'))) : '');
  }

  // ---- ratings --------------------------------------------------------------------------

  SCREENS.rate = (root, arg) => {
    if (arg && arg.target) return rateForm(root, arg);
    const list = h('div', { class: 'cards', id: 'rate-list' });
    const msg = h('p', { class: 'msg', role: 'alert' });
    root.append(topbar('rate.title'), h('p', { class: 'lead', text: t('rate.lead') }), msg, list);
    swap(list, [h('p', { class: 'note', text: t('common.loading') })]);
    const gen = S.gen;
    (async () => {
      const r = encodeURIComponent(S.resident);
      const [reps, acts, rated] = await Promise.all([api('GET', 'api/v1/reports?resident=' + r),
        api('GET', 'api/v1/activities?resident=' + r), api('GET', 'api/v1/ratings?resident=' + r)]);
      if (gen !== S.gen || !list.isConnected) return;
      if (reps.status !== 200 || acts.status !== 200) { showErr(msg, errText(reps.status !== 200 ? reps : acts)); list.replaceChildren(); return; }
      const prior = {};
      if (rated.status === 200 && Array.isArray(rated.data)) for (const x of rated.data) prior[x.target] = x.score;
      const targets = [
        ...reps.data.filter((x) => x.status === 'resolved').map((x) => ({ target: x.id, title: x.title, kind: 'report' })),
        ...acts.data.filter((x) => x.attended).map((x) => ({ target: x.id, title: x.title, kind: 'activity' })),
      ];
      swap(list, targets.length ? targets.map((x) => h('article', { class: 'card', 'data-id': x.target },
        h('div', { class: 'card-head' }, h('span', { class: 'badge', text: t('rate.kind.' + x.kind) })),
        h('h3', { text: x.title }),
        prior[x.target] ? h('p', { class: 'meta', text: t('rate.prior', { n: prior[x.target] }) }) : '',
        h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', 'data-key': 'rate-' + x.target,
          onclick: () => rateAgain(x) }, t(prior[x.target] ? 'rate.again' : 'rate.go'))))) :
        [h('p', { class: 'note', text: t('rate.none') })]);
    })();
  };

  // rateAgain opens the rating form, afresh once a rating was sent.
  function rateAgain(x) {
    const d = S.draft['rate:' + x.target];
    if (d && d.done) delete S.draft['rate:' + x.target];
    go('rate', x);
  }

  function rateForm(root, arg) {
    const key = 'rate:' + arg.target;
    const d = S.draft[key] || (S.draft[key] = { score: 0, comment: '', done: false });
    if (d.done) {
      root.append(topbar('rate.title'), h('div', { class: 'done' }, h('p', { class: 'big-ok', id: 'rate-done', text: t('rate.thanks') }),
        h('p', { text: arg.title }), h('p', { class: 'meta', text: t('rate.given', { n: d.score }) }),
        h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: () => { delete S.draft[key]; go('home'); } }, t('common.done')))));
      return;
    }
    const msg = h('p', { class: 'msg', role: 'alert', id: 'rate-msg' });
    const stars = [1, 2, 3, 4, 5].map((n) => {
      const input = h('input', { type: 'radio', name: 'score', id: 'score-' + n, value: String(n),
        onchange: () => { d.score = n; msg.textContent = ''; msg.className = 'msg'; } });
      input.checked = d.score === n;
      return h('div', { class: 'star' }, input, h('label', { for: 'score-' + n },
        h('span', { class: 'n', 'aria-hidden': 'true', text: '★'.repeat(n) }), h('span', { text: t('rate.s' + n) })));
    });
    const comment = h('textarea', { rows: '3', maxlength: '500', oninput: (e) => { d.comment = e.target.value; } });
    comment.value = d.comment;
    const submit = h('button', { type: 'submit', class: 'primary big', id: 'rate-submit' }, t('rate.submit'));
    const onSubmit = async (e) => {
      e.preventDefault();
      if (!d.score) { showErr(msg, t('rate.need_score')); return; }
      const gen = S.gen;
      await busy(submit, msg, async () => {
        const r = await post('api/v1/ratings', { resident: S.resident, target: arg.target, score: d.score, comment: d.comment.trim() });
        if (gen !== S.gen) return;
        if (!r.ok) { showErr(msg, r.error); return; }
        d.done = true;
        render();
      });
    };
    root.append(topbar('rate.title'),
      h('p', { class: 'lead' }, h('span', { class: 'badge', text: t('rate.kind.' + arg.kind) }), ' ', h('strong', { text: arg.title })),
      h('form', { class: 'form', novalidate: true, onsubmit: onSubmit },
        h('fieldset', { class: 'stars' }, h('legend', { text: t('rate.score') }), stars),
        field('rate-comment', 'rate.comment', comment, 'rate.comment_hint'),
        msg, submit));
  }

  // ---- notices ----------------------------------------------------------------------------

  function noticeCard(n, short) {
    const kind = n.alarm ? 'alarm' : n.category;
    return h('article', { class: 'card notice n-' + kind, 'data-id': n.id, 'data-alarm': String(!!n.alarm) },
      h('div', { class: 'card-head' }, n.alarm ? icon('alarm') : '',
        h('span', { class: 'badge', text: n.alarm ? t('alarm.label') : t('ncat.' + n.category) }),
        h('span', { class: 'meta', text: fmtTime(n.time) })),
      h('h3', { text: n.title }),
      short ? '' : h('p', { class: 'body', text: n.body }),
      !short && n.expires_at ? h('p', { class: 'meta', text: t('notices.until', { time: fmtTime(n.expires_at) }) }) : '');
  }

  SCREENS.notices = (root) => {
    const list = h('div', { class: 'cards one', id: 'notice-list' });
    root.append(topbar('notices.title'), h('p', { class: 'lead', text: t('notices.lead') }), offlineNote() || '', list);
    listRefresh = () => swap(list, S.notices.length ? S.notices.map((n) => noticeCard(n, false)) :
      [h('p', { class: 'note', text: t('notices.none') })]);
    listRefresh();
  };

  // ---- on-screen keyboard -----------------------------------------------------------
  //
  // A lobby kiosk has no keyboard and `chromium --kiosk` shows none, so
  // text fields marked data-osk open this one when tapped: letters, digits
  // and punctuation, and in Chinese mode pinyin with candidate characters from a
  // table of common characters (pinyin.json: fetched from this edge the
  // first time, so it works offline and adds nothing to the start screen).
  // Keys never take focus from the field, and text goes in as if typed
  // (an input event), so the forms need nothing of their own.
  const osk = (() => {
    const ROWS = ['1234567890', 'qwertyuiop', 'asdfghjkl', 'zxcvbnm'];
    const PAGE = 8;
    let target = null, zh = true, buf = '', page = 0, table = null, loading = null;

    function loadTable() {
      if (table || loading) return;
      loading = api('GET', 'pinyin.json').then((r) => {
        loading = null;
        if (r.status === 200 && r.data && typeof r.data === 'object') table = r.data;
        draw();
      });
    }

    // The candidates for the start of the pinyin typed so far: the
    // longest syllable it begins with, else (a syllable still being
    // typed) the first characters of every syllable that begins with it.
    function candidates() {
      if (!buf || !table) return { syl: buf, list: [] };
      for (let n = Math.min(6, buf.length); n > 0; n--) {
        const syl = buf.slice(0, n);
        if (table[syl]) return { syl, list: [...table[syl]] };
      }
      const list = [];
      for (const k of Object.keys(table)) if (k.startsWith(buf)) list.push(...[...table[k]].slice(0, 2));
      return { syl: buf, list };
    }

    function insert(text) {
      if (!target || !target.isConnected) return;
      const max = Number(target.getAttribute('maxlength')) || Infinity;
      const now = [...target.value];
      target.value = now.concat([...text].slice(0, Math.max(0, max - now.length))).join('');
      target.dispatchEvent(new Event('input', { bubbles: true }));
    }

    function pick(i) {
      const c = candidates();
      if (!c.list[i + page * PAGE]) return;
      insert(c.list[i + page * PAGE]);
      buf = buf.slice(c.syl.length);
      page = 0;
      draw();
    }

    function press(k) {
      if (!target) return;
      if (k === 'del') {
        if (buf) buf = buf.slice(0, -1);
        else {
          target.value = [...target.value].slice(0, -1).join('');
          target.dispatchEvent(new Event('input', { bubbles: true }));
        }
        page = 0;
      } else if (k === 'mode') {
        if (buf) insert(buf);
        buf = '';
        zh = !zh;
        if (zh) loadTable();
      } else if (k === 'space') {
        if (buf && candidates().list.length) return pick(0);
        if (buf) { insert(buf); buf = ''; } else insert(' ');
      } else if (k === 'done') {
        if (buf) insert(buf);
        buf = '';
        close();
        return;
      } else if (k === 'prev' || k === 'next') {
        const pages = Math.ceil(candidates().list.length / PAGE);
        page = Math.max(0, Math.min(pages - 1, page + (k === 'next' ? 1 : -1)));
      } else if (zh && /^[a-z]$/.test(k)) {
        if (buf.length < 24) buf += k;
        page = 0;
      } else {
        if (buf) { insert(buf); buf = ''; }
        insert(zh && k === ',' ? '，' : zh && k === '.' ? '。' : zh && k === '?' ? '？' : k);
      }
      draw();
    }

    function key(k, label, extra) {
      return h('button', Object.assign({ type: 'button', class: 'okey', 'data-osk-key': k, onclick: () => press(k) }, extra || {}), label);
    }

    function draw() {
      const box = $('osk');
      if (!box) return;
      if (!target) { box.hidden = true; box.replaceChildren(); document.body.classList.remove('osk-open'); return; }
      const c = candidates();
      const shown = c.list.slice(page * PAGE, page * PAGE + PAGE);
      const cands = h('div', { class: 'osk-cands', 'aria-live': 'polite' },
        zh ? h('span', { class: 'osk-buf', id: 'osk-buf', text: buf }) : '',
        shown.map((ch, i) => h('button', { type: 'button', class: 'cand', 'data-cand': String(i), lang: 'zh-CN', onclick: () => pick(i) }, ch)),
        zh && buf && table && !c.list.length ? h('span', { class: 'osk-none', text: t('osk.none') }) : '',
        zh && buf && !table ? h('span', { class: 'osk-none', text: t('common.loading') }) : '',
        c.list.length > PAGE ? [key('prev', '‹', { 'aria-label': t('osk.prev'), disabled: page === 0 }),
          key('next', '›', { 'aria-label': t('osk.next'), disabled: (page + 1) * PAGE >= c.list.length })] : '');
      const rows = ROWS.map((r, i) => h('div', { class: 'osk-row' }, [...r].map((ch) => key(ch, ch)),
        i === 3 ? key('del', '⌫', { class: 'okey fn', 'aria-label': t('osk.del') }) : ''));
      rows.push(h('div', { class: 'osk-row' },
        key('mode', t(zh ? 'osk.zh' : 'osk.en'), { class: 'okey fn', 'aria-label': t('osk.mode'), 'aria-pressed': String(zh), 'data-mode': zh ? 'zh' : 'en' }),
        key(',', zh ? '，' : ','), key('space', t('osk.space'), { class: 'okey space' }), key('.', zh ? '。' : '.'), key('?', zh ? '？' : '?'),
        key('done', t('osk.done'), { class: 'okey fn primary', id: 'osk-done' })));
      box.replaceChildren(cands, ...rows);
      box.setAttribute('aria-label', t('osk.label'));
      box.hidden = false;
      document.body.classList.add('osk-open');
    }

    function open(el) {
      if (target === el && !$('osk').hidden) return;
      target = el;
      buf = '';
      page = 0;
      if (zh) loadTable();
      draw();
      el.scrollIntoView({ block: 'center' });
    }

    function close() {
      target = null;
      buf = '';
      draw();
    }

    function init() {
      const box = h('div', { id: 'osk', class: 'osk', role: 'group', hidden: true });
      // A key pressed must not take the focus (and the caret) from the field.
      box.addEventListener('mousedown', (e) => e.preventDefault());
      document.body.append(box);
      const onField = (e) => {
        const el = e.target;
        if (el && el.dataset && el.dataset.osk) open(el);
        else if (e.type === 'focusin' && !box.contains(el)) close();
      };
      document.addEventListener('focusin', onField);
      document.addEventListener('click', onField);
      // A key pressed on a real keyboard (or a card reader) means one is
      // attached: the on-screen one stands aside.
      document.addEventListener('keydown', () => { if (target) close(); }, true);
    }

    return { init, open, close, redraw: () => { if (target && !target.isConnected) close(); else draw(); } };
  })();

  // ---- start -------------------------------------------------------------------------------

  async function boot() {
    // The page came from this edge, so the catalogue will come too; retry
    // rather than show a page without words.
    while (!(await loadLang(DEFAULT_LANG))) await new Promise((r) => setTimeout(r, 2000));
    const k = await api('GET', 'api/v1/kiosk');
    if (k.status === 200 && k.data) S.kiosk = k.data;
    applyStatic();
    $('lang').addEventListener('click', () => setLang(OTHER_LANG[S.lang], true));
    $('idle-stay').addEventListener('click', touched);
    for (const ev of ['pointerdown', 'touchstart', 'input', 'wheel']) document.addEventListener(ev, touched, { passive: true, capture: true });
    document.addEventListener('keydown', onKey, true);
    osk.init();
    go('start');
    setInterval(idleTick, 250);
    setInterval(tickClock, 15000);
    pollSync();
    pollNotices();
    watchAlarms();
    document.body.dataset.ready = 'true';
  }

  boot();
})();
