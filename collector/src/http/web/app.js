// The dashboard's shell: header controls (period, cluster, theme, share), routing on the URL's hash
// (#/, #/team/<name>, #/workload/<id>, #/gpu/<uuid>) and the refresh of the period's figures every minute.

import { DAY, PERIODS, getJSON, iso, link, parseRoute, shortGpu, teamName, timeWindow, workloadLabel } from './api.js';
import { assignTop, destroy } from './charts.js';
import { onStatus, start } from './live.js';
import { gpu, h, overview, periodLabel, team, workload } from './views.js';
import { alerts } from './alerts.js';
import { budgets } from './budgets.js';
import { explorer } from './explorer.js';
import { node } from './history.js';
import { model } from './model.js';
import { recommendations } from './recommendations.js';

const VIEWS = { overview, team, workload, gpu, explore: explorer };
// the budgets and alerts pages (budgets.js, alerts.js), linked from the header
Object.assign(VIEWS, { budgets, alerts, node, model, recommendations });
const REFRESH_MS = 60_000;
const main = document.getElementById('main');
let current = null;

/** What a view registers: loaders (re-run to refresh) and live subscriptions (dropped on navigation). */
function context(state) {
  const abort = new AbortController();
  const loaders = [];
  const subs = [];
  return {
    state,
    signal: abort.signal,
    load(p, fn) {
      const run = async () => {
        try {
          await fn();
          p.body.classList.remove('loading');
        } catch (e) {
          if (e.name === 'AbortError' || abort.signal.aborted) return;
          p.body.classList.remove('loading');
          p.body.replaceChildren(h('div.error', e.message));
          console.warn(e);
        }
      };
      loaders.push(run);
      run();
    },
    sub(unsubscribe) { subs.push(unsubscribe); },
    refresh() { for (const run of loaders) run(); },
    dispose() {
      abort.abort();
      for (const u of subs) u();
      main.querySelectorAll('.chart, .spark').forEach(destroy);
    },
  };
}

function render() {
  const state = parseRoute();
  if (current) current.dispose();
  main.replaceChildren();
  const view = VIEWS[state.view] || overview;
  current = context(state);
  controls(state);
  crumbs(state);
  try {
    view(main, current);
  } catch (e) {
    main.replaceChildren(h('div.panel.span-12', h('div.body', h('div.error', `This view failed: ${e.message}`))));
    console.warn(e);
  }
  const win = timeWindow(state);
  document.getElementById('window').textContent = `${periodLabel(state, win)}: ${iso(win.from)} – ${iso(win.to)} · times in UTC`;
  // The period on screen, not the month it ends in: the chargeback API takes any window of up to 400 days.
  const span = `from=${encodeURIComponent(iso(win.from))}&to=${encodeURIComponent(iso(win.to))}`;
  const csv = document.getElementById('chargeback-csv');
  csv.href = `api/v1/chargeback?${span}&group_by=team&format=csv`;
  csv.textContent = `chargeback CSV (${periodLabel(state, win)})`;
  document.getElementById('chargeback-focus').href = `api/v1/chargeback?${span}&format=focus`;
  document.title = `${titleOf(state)} · gpucost`;
}

function titleOf(state) {
  switch (state.view) {
    case 'team': return `team ${teamName(state.id)}`;
    case 'workload': return workloadLabel(state.id).title;
    case 'gpu': return `GPU ${shortGpu(state.id)}`;
    case 'budgets': return 'budgets';
    case 'alerts': return 'alerts';
    case 'explore': return 'allocation explorer';
    case 'node': return `node ${state.id}`;
    case 'model': return `model ${state.id}`;
    case 'recommendations': return 'recommendations';
    default: return 'GPU fleet';
  }
}

function crumbs(state) {
  const nav = document.getElementById('crumbs');
  const parts = [h('a', { href: link(state, 'overview') }, 'Fleet')];
  const teamId = state.view === 'team' ? state.id : state.team;
  const workloadId = state.view === 'workload' ? state.id : state.workload;
  if (teamId !== null && teamId !== undefined && state.view !== 'overview') {
    parts.push(h('a', { href: link(state, 'team', teamId, { team: null, workload: null }) }, `team ${teamName(teamId)}`));
  }
  if (workloadId && (state.view === 'workload' || state.view === 'gpu')) {
    parts.push(h('a', { href: link(state, 'workload', workloadId, { team: teamId ?? null, workload: null }), title: workloadId }, workloadLabel(workloadId).title));
  }
  if (state.view === 'gpu') parts.push(h('span', { title: state.id }, `GPU ${shortGpu(state.id)}`));
  if (state.view === 'model') parts.push(h('span', `model ${state.id}`));
  if (state.view === 'budgets' || state.view === 'alerts') parts.push(h('span', state.view === 'budgets' ? 'Budgets' : 'Alerts'));
  for (const page of ['budgets', 'alerts', 'recommendations']) {
    const a = document.getElementById(`nav-${page}`);
    if (!a) continue;
    a.href = link(state, page, '');
    if (state.view === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (state.view === 'explore') parts.push(h('span', 'Explorer'));
  const toExplorer = document.getElementById('nav-explore');
  if (toExplorer) {
    toExplorer.href = link(state, 'explore', '');
    if (state.view === 'explore') toExplorer.setAttribute('aria-current', 'page'); else toExplorer.removeAttribute('aria-current');
  }
  parts[parts.length - 1].classList.add('here');
  if (parts.length > 1) parts[parts.length - 1].setAttribute('aria-current', 'page');
  nav.replaceChildren(...parts.flatMap((p, i) => (i ? [h('span.sep', '›'), p] : [p])));
}

// ---- header controls ----

let clustersFor = '';
function controls(state) {
  const seg = document.getElementById('periods');
  seg.replaceChildren(...PERIODS.map(([p, text]) => h('button', {
    type: 'button', 'data-period': p, 'aria-pressed': String(!state.from && state.period === p),
    onclick: () => { location.hash = link({ ...state, from: '', to: '' }, state.view, state.id, { period: p, team: state.team, workload: state.workload }); },
  }, text)));
  const select = document.getElementById('cluster');
  const win = timeWindow(state);
  const key = `${win.from}-${win.to}`;
  const options = (names) => {
    const all = [...new Set([...names, ...(state.cluster ? [state.cluster] : [])])].sort();
    select.replaceChildren(h('option', { value: '' }, 'All clusters'), ...all.map((c) => h('option', { value: c }, c)));
    select.value = state.cluster;
  };
  if (clustersFor !== key) {
    clustersFor = key;
    options([]);
    getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: 'cluster' })
      .then((r) => options(r.rows.map((x) => x.cluster)))
      .catch((e) => console.warn('clusters', e));
  } else {
    options([...select.options].map((o) => o.value).filter(Boolean));
  }
}

document.getElementById('cluster').addEventListener('change', (e) => {
  const state = parseRoute();
  location.hash = link({ ...state, cluster: e.target.value }, state.view, state.id, { team: state.team, workload: state.workload });
});

document.getElementById('share').addEventListener('click', async () => {
  const url = location.href;
  try {
    await navigator.clipboard.writeText(url);
    toast('Link copied: it opens this view, period and cluster');
  } catch {
    toast(url);
  }
});

function toast(text) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.classList.add('on');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('on'), 2600);
}

const THEMES = ['auto', 'light', 'dark'];
function applyTheme(theme) {
  if (theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const b = document.getElementById('theme');
  b.title = `Theme: ${theme}`;
  b.dataset.theme = theme;
}
let theme = (() => { try { return localStorage.getItem('gpucost.theme') || 'auto'; } catch { return 'auto'; } })();
applyTheme(theme);
document.getElementById('theme').addEventListener('click', () => {
  theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
  try { localStorage.setItem('gpucost.theme', theme); } catch { /* private mode */ }
  applyTheme(theme);
  render(); // charts take their colours from the theme
});
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => { if (theme === 'auto') render(); });

onStatus((status, detail) => {
  const pill = document.getElementById('live-status');
  pill.className = `pill ${status === 'live' ? 'live' : status === 'connecting' || status === 'reconnecting' ? '' : 'down'}`;
  pill.textContent = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', unavailable: 'no live view', down: 'live: down' }[status] || status;
  pill.title = detail || 'Live fleet stream (server-sent events, every 2 s)';
});

window.addEventListener('hashchange', () => { render(); window.scrollTo(0, 0); });
setInterval(() => { if (!document.hidden && current) current.refresh(); }, REFRESH_MS);
document.addEventListener('visibilitychange', () => { if (!document.hidden && current) current.refresh(); });
window.gpucost = Object.assign(window.gpucost || {}, { refresh: () => current && current.refresh() });

// The teams with the most cost over the last 90 days get their colours up front (one hue each,
// alphabetically among them), so a team has the same colour in every view and after every reload; teams
// beyond the palette are drawn as "other".
async function teamColors() {
  try {
    const r = await getJSON('costs', { from: iso(Math.floor(Date.now() / 1000 / DAY) * DAY - 90 * DAY), group_by: 'team' });
    assignTop(r.rows.map((x) => [x.team, Number(x.total_usd)]));
  } catch (e) {
    console.warn('teams', e);
  }
}
// The header first (period buttons, cluster, links), so it does not shift under a reader's pointer while the
// team colours load.
controls(parseRoute());
crumbs(parseRoute());
await Promise.race([teamColors(), new Promise((resolve) => { setTimeout(resolve, 2000); })]);
render();
start();
