// The views: the fleet overview, and the drill-down team → workload → GPU. Each view builds its panels
// and registers loaders (re-run every minute) and live subscriptions with `ctx`.

import {
  DAY, HOUR, bytes, clock, costSeries, count, efficiency, filterOf, getJSON, gpuHours, iso, kwh, link, modelName,
  num, pct, shortGpu, shortNode, teamKey, teamName, timeWindow, usd, when, workloadLabel,
} from './api.js';
import { assignColors, categorical, colorFor, cssVar, lines, stackedBars, update, withOther } from './charts.js';
import { live, onStatus, subscribe, totals } from './live.js';
import { PAGE_SIZE, dataTable, show } from './table.js';
import { historyPanel, nodeLink, workloadHistoryPanel } from './history.js';

// ---- DOM helpers ----

/** h('div.a.b', {attr: v, onclick: fn, style: {'--x': 1}}, ...children) */
export function h(spec, attrs, ...kids) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (attrs !== undefined && (attrs === null || typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    kids.unshift(attrs);
    attrs = {};
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'style') {
      for (const [sk, sv] of Object.entries(v)) {
        if (sk.startsWith('--')) el.style.setProperty(sk, sv); else el.style[sk] = sv;
      }
    } else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat(Infinity)) {
    if (k !== null && k !== undefined && k !== false) el.append(k instanceof Node ? k : String(k));
  }
  return el;
}

export function panel(span, id, title, sub = '') {
  const subEl = h('span.sub', sub);
  const tools = h('div.tools');
  const body = h('div.body.loading');
  const el = h(`section.panel.span-${span}`, { 'data-panel': id }, h('header', h('h2', title), subEl, tools), body);
  return { el, body, sub: subEl, tools };
}

function kpi(label, { id, cls = '' } = {}) {
  const value = h('div.value', '—');
  const note = h('div.note', '\u00a0');
  const el = h(`div.kpi${cls ? `.${cls}` : ''}`, { 'data-kpi': id }, h('div.label', label), value, note);
  let change = null;
  return {
    el, value, note,
    set(v, n, extra) { value.replaceChildren(v, ...(extra ? [h('small', extra)] : [])); if (n !== undefined) note.textContent = n || '\u00a0'; },
    /** This period's `cur` against the one before's `prev` as a percentage with an arrow; `title` says what. */
    change(cur, prev, title) {
      const c = changeOf(cur, prev);
      const next = h(`div.change.${c.dir}`, { 'data-change': c.pct === null ? '' : String(c.pct), 'data-cur': String(cur), 'data-prev': String(prev), title },
        c.text, h('span.faint', ' vs the period before'));
      if (change) change.replaceWith(next); else note.after(next);
      change = next;
    },
  };
}

/** The change from `prev` to `cur`: percent (null when `prev` is 0), its direction and its text ("▲ 12.3%"). */
export function changeOf(cur, prev) {
  if (!(prev > 0)) return { pct: null, dir: cur > 0 ? 'up' : 'flat', text: cur > 0 ? '▲ new' : '— no change' };
  const p = (100 * (cur - prev)) / prev;
  const text = `${Math.abs(p).toFixed(1)}%`;
  if (text === '0.0%') return { pct: p, dir: 'flat', text: '→ 0.0%' };
  return { pct: p, dir: p > 0 ? 'up' : 'down', text: `${p > 0 ? '▲' : '▼'} ${text}` };
}

function meter(percent, { warnBelow = null } = {}) {
  const p = Math.max(0, Math.min(100, percent ?? 0));
  const cls = warnBelow !== null && percent !== null && percent < warnBelow ? '.warn' : '';
  return h(`div.meter${cls}`, { title: percent === null ? '' : pct(percent, 1) }, h('i', { style: { width: `${p}%` } }));
}

export const swatch = (color) => h('i.swatch', { style: { background: color } });

function teamCell(state, team) {
  return h('div.name', swatch(colorFor(team)), h('a', { href: link(state, 'team', team) }, teamName(team)));
}

function workloadCell(state, id, extra = {}) {
  const w = workloadLabel(id);
  return h('div.name', h('span.kind', w.kind),
    h('div.stack', h('a.t', { href: link(state, 'workload', id, extra), title: id }, w.title), w.sub ? h('span.s', w.sub) : null));
}

/** A sortable, paged table for panel `name` (see table.js), its page size from the URL (`rows=`). */
export function table(ctx, name, columns, opts = {}) {
  const { state } = ctx;
  return dataTable({
    name, columns, pageSize: state.rows ?? PAGE_SIZE, ...opts,
    onPageSize: (n) => { location.hash = link(state, state.view, state.id, { rows: n === PAGE_SIZE ? null : n, team: state.team, workload: state.workload }); },
  });
}

const total = (rows, f) => rows.reduce((a, x) => a + num(f(x)), 0);
/** A dollar column of `field` (`…_usd`): sorts by amount, adds up in the totals row, never hidden. */
export const money = (key, title, field, { bold = false } = {}) => ({
  key, title, num: true, money: true, value: (x) => num(x[field]),
  cell: (x) => (bold ? h('b', usd(x[field])) : usd(x[field])),
  total: (rows) => (bold ? h('b', usd(total(rows, (x) => x[field]))) : usd(total(rows, (x) => x[field]))),
});
/** A GPU-hours column of `field` (`…_gpu_seconds`). */
export const hours = (key, title, field, extra = {}) => ({
  key, title, num: true, value: (x) => num(x[field]), cell: (x) => gpuHours(x[field]), total: (rows) => gpuHours(total(rows, (x) => x[field])), ...extra,
});
/** Used ÷ held GPU time; the totals row has the whole table's. */
const effColumn = (extra = {}) => ({
  key: 'efficiency', title: 'efficiency', value: efficiency,
  cell: (x) => h('div.name', meter(efficiency(x), { warnBelow: 50 }), h('span', efficiency(x) === null ? '—' : pct(efficiency(x)))),
  total: (rows) => { const e = sum(rows).eff; return e === null ? '—' : pct(e); },
  ...extra,
});
const str = (v) => String(v ?? '');

export const empty = (text) => h('div.empty', text);

export const periodLabel = (state, win) => {
  if (state.from) return `${new Date(win.from * 1000).toISOString().slice(0, 16).replace('T', ' ')} – ${new Date(win.to * 1000).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  return { '24h': 'last 24 hours', '7d': 'last 7 days', '30d': 'last 30 days', mtd: 'this month', lm: 'last month' }[state.period];
};

/** The cost rows' sums. */
function sum(rows) {
  const s = { total: 0, used: 0, idle: 0, held: 0, usedGpu: 0, kwh: 0 };
  for (const r of rows) {
    s.total += num(r.total_usd); s.used += num(r.used_usd); s.idle += num(r.idle_usd);
    s.held += num(r.held_gpu_seconds); s.usedGpu += num(r.used_gpu_seconds); s.kwh += num(r.energy_kwh);
  }
  s.eff = s.held > 0 ? (100 * s.usedGpu) / s.held : null;
  return s;
}

// ---- shared panels ----

/** Cost over time, stacked by `dim` (teams…) or used vs idle when `dim` is null. */
export function costOverTime(ctx, p, { win, dim, filter, name, labelOf }) {
  const chartEl = h('div.chart');
  const legend = h('div.chart-legend');
  const notes = h('div.chart-notes');
  p.body.replaceChildren(chartEl, legend, notes);
  ctx.load(p, async () => {
    const buckets = await costSeries(win, dim ? [dim] : [], filter, { signal: ctx.signal });
    const xs = buckets.map((b) => b.t);
    // the bucket now falls in is unfinished: drawn hatched; buckets the ledger has nothing for: "no data"
    const now = Date.now() / 1000;
    const partial = buckets.findIndex((b) => b.t <= now && now < b.t + win.step);
    const missing = new Set(buckets.map((b, i) => (!b.data && i !== partial ? i : -1)).filter((i) => i >= 0));
    const value = (b, v) => (b.data || b.rows.length ? num(v) : null);
    let series;
    if (dim) {
      const tot = new Map();
      for (const b of buckets) for (const r of b.rows) tot.set(r[dim], (tot.get(r[dim]) || 0) + num(r.total_usd));
      if (dim === 'team') assignColors(tot.keys());
      const keys = [...tot].sort((a, b) => b[1] - a[1]).map(([k]) => k);
      // teams keep their colour everywhere; other dimensions get the palette by size, the rest "other"
      const colors = dim === 'team' ? null : categorical(keys);
      series = withOther(keys.map((k) => ({
        key: k, total: tot.get(k),
        label: dim === 'team' ? teamName(k) : labelOf ? labelOf(k) : k || '(none)',
        color: dim === 'team' ? colorFor(k) : colors.get(k),
        values: buckets.map((b) => value(b, b.rows.find((r) => r[dim] === k)?.total_usd)),
      })));
    } else {
      series = [
        { label: 'used', color: cssVar('--accent'), values: buckets.map((b) => value(b, b.rows[0]?.used_usd)) },
        { label: 'idle (held, not used)', color: cssVar('--warn'), values: buckets.map((b) => value(b, b.rows[0]?.idle_usd)) },
      ];
      series.forEach((s) => { s.total = s.values.reduce((a, v) => a + (v ?? 0), 0); });
    }
    if (!series.length || series.every((s) => !s.total)) {
      chartEl.replaceChildren(empty(missing.size === buckets.length ? 'No data recorded for this period.' : 'No GPU cost in this period.'));
      legend.replaceChildren();
      notes.replaceChildren();
      return;
    }
    chartEl.replaceChildren();
    stackedBars(chartEl, { name, xs, step: win.step, range: [win.from, win.to], series, partial, missing });
    const unit = win.step === DAY ? 'day' : win.step === HOUR ? 'hour' : `${win.step / HOUR} hours`;
    const stepText = win.step === DAY ? 'per day' : win.step === HOUR ? 'per hour' : `per ${win.step / HOUR} h`;
    p.sub.textContent = `${stepText}, UTC`;
    legend.replaceChildren(...series.map((s) => (dim === 'team' && s.key !== null
      ? h('a', { href: link(ctx.state, 'team', s.key), 'data-key': s.key }, swatch(s.color), s.label, h('b', usd(s.total)))
      : h('span.item', { title: s.other ? s.other.map((k) => teamName(k)).join(', ') : '', 'data-key': s.other ? null : s.key ?? null, 'data-total': String(s.total) }, swatch(s.color), s.label, h('b', usd(s.total))))));
    const first = buckets.findIndex((b) => b.data);
    notes.replaceChildren(...[
      partial >= 0 ? h('span.note', { 'data-note': 'partial' }, h('i.swatch.hatched'), `hatched: this ${unit} so far, not finished`) : null,
      missing.size ? h('span.note', { 'data-note': 'missing' }, h('i.swatch.nodata'),
        first > 0 && [...missing].every((i) => i < first) ? `grey: no data before ${when(xs[first], { time: win.step < DAY })} UTC (not zero cost)`
          : `grey: no data recorded (${missing.size} of ${buckets.length} ${win.step === DAY ? 'days' : 'buckets'}; not zero cost)`) : null,
    ].filter(Boolean));
  });
}

/** Horizontal bars of `rows` (label, value, split into used and idle). */
export function barList(items, { max } = {}) {
  const top = max ?? Math.max(...items.map((i) => i.value), 0);
  return h('div.bars', items.map((i) => h('div.bar-row', { 'data-row': i.key ?? '' },
    h('div.label', i.label),
    h('div.amount', i.amount, i.note ? h('small', i.note) : null),
    h('div.track', { title: i.title || '' }, (i.parts || [{ value: i.value, color: i.color }]).map((part) => h('i', {
      style: { width: `${top > 0 ? (100 * part.value) / top : 0}%`, background: part.color },
    }))))));
}

function topModels(ctx, p, { win, filter, limit = 8 }) {
  const { state } = ctx;
  ctx.load(p, async () => {
    const r = await getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: 'model', filter }, { signal: ctx.signal });
    const rows = r.rows.slice().sort((a, b) => num(b.total_usd) - num(a.total_usd));
    const total = rows.reduce((a, x) => a + num(x.total_usd), 0);
    if (!rows.length || total <= 0) { p.body.replaceChildren(empty('No model ran on a GPU in this period.')); return; }
    const shown = rows.filter((x) => x.model !== '').slice(0, limit);
    const none = rows.find((x) => x.model === '');
    const accent = cssVar('--accent');
    const warn = cssVar('--warn');
    const items = shown.map((x) => ({
      key: x.model,
      label: [h('a', { href: link(state, 'model', x.model), title: `${x.model}: its versions, runs and costs`, 'data-model': x.model }, modelName(x.model))],
      value: num(x.total_usd),
      amount: usd(x.total_usd),
      note: `${pct((100 * num(x.total_usd)) / total)}`,
      title: `used ${usd(x.used_usd)} · idle ${usd(x.idle_usd)} · ${gpuHours(x.held_gpu_seconds)} GPU-h held`,
      parts: [{ value: num(x.used_usd), color: accent }, { value: num(x.idle_usd), color: warn }],
    }));
    p.body.replaceChildren(barList(items, { max: Math.max(...items.map((i) => i.value)) }),
      h('div.legend-inline', { style: { marginTop: '12px' } }, h('span', swatch(accent), 'used'), h('span', swatch(warn), 'idle'),
        none ? h('span.faint', `${usd(none.total_usd)} ran without a model name`) : null));
  });
}

/** The live fleet as node cards of GPU tiles (overview) for the GPUs `keep` selects. */
function fleetGrid(ctx, p, keep) {
  const root = h('div.fleet');
  const scroll = h('div.fleet-scroll', root);
  // Every cluster named above the scroll box, with its GPUs, each a button to its section: none is hidden
  // below the fold without a cue.
  const index = h('div.fleet-index');
  p.body.replaceChildren(index, scroll);
  let shape = null;
  const tiles = new Map();
  const state = ctx.state;
  const render = (fleet) => {
    p.body.classList.remove('loading');
    const gpus = fleet.gpus.filter(keep);
    p.el.dataset.at = fleet.at;
    p.sub.textContent = `live · ${clock(fleet.at)} UTC`;
    const teams = new Set();
    for (const g of gpus) for (const x of g.holders || []) teams.add(teamKey(x.team));
    assignColors(teams);
    p.tools.replaceChildren(h('div.legend-inline', [...teams].sort().map((t) => h('span', swatch(colorFor(t)), teamName(t)))));
    const key = gpus.map((g) => g.gpu).join('|');
    if (key !== shape) {
      shape = key;
      tiles.clear();
      if (!gpus.length) { root.replaceChildren(empty(live.fleet ? 'No GPU reports right now.' : 'Waiting for the fleet…')); return; }
      const byCluster = new Map();
      for (const g of gpus) {
        if (!byCluster.has(g.cluster)) byCluster.set(g.cluster, new Map());
        const nodes = byCluster.get(g.cluster);
        if (!nodes.has(g.node)) nodes.set(g.node, []);
        nodes.get(g.node).push(g);
      }
      const clusters = [...byCluster].sort(([a], [b]) => a.localeCompare(b));
      const gpusOf = (nodes) => [...nodes.values()].reduce((a, n) => a + n.length, 0);
      index.replaceChildren(...(clusters.length > 1 ? [h('span.faint', `${clusters.length} clusters:`), ...clusters.map(([cluster, nodes]) =>
        h('button.chip', { type: 'button', 'data-cluster': cluster, onclick: () => {
          const section = root.querySelector(`section[data-cluster="${CSS.escape(cluster)}"]`);
          if (section) scroll.scrollTo({ top: section.offsetTop, behavior: 'auto' });
        } }, `${cluster} · ${gpusOf(nodes)} GPUs`))] : []));
      root.replaceChildren(...clusters.map(([cluster, nodes]) => h('section', { 'data-cluster': cluster },
        h('h3.cluster-name', cluster, h('span', `${gpusOf(nodes)} GPUs · ${nodes.size} nodes`)),
        h('div.nodes', [...nodes].sort(([a], [b]) => a.localeCompare(b)).map(([node, list]) => h('div.node',
          h('div.hd', h('b', { title: node }, shortNode(node)), h('span', `${list[0].instance_type || ''} · ${list.length}× ${(list[0].model || '').replace('NVIDIA ', '')}`)),
          h('div.tiles', list.sort((a, b) => (a.index ?? 0) - (b.index ?? 0)).map((g) => {
            const t = h('a.tile', { 'data-gpu': g.gpu }, h('span.u'), h('span.who'));
            tiles.set(g.gpu, t);
            return t;
          }))))))));
    }
    for (const g of gpus) {
      const t = tiles.get(g.gpu);
      if (!t) continue;
      const holders = g.holders || [];
      const u = Number(g.utilization_pct ?? 0);
      const first = holders[0];
      t.href = link(state, 'gpu', g.gpu, holders.length === 1 ? { team: teamKey(first.team), workload: first.workload } : {});
      t.classList.toggle('free', holders.length === 0);
      t.classList.toggle('low', holders.length > 0 && u < 15);
      t.style.setProperty('--u', `${Math.max(0, Math.min(100, u))}%`);
      const text = `${Math.round(u)}%`;
      const uEl = t.firstChild;
      if (uEl.textContent !== text) uEl.textContent = text;
      const who = t.lastChild;
      const whoText = holders.length === 0 ? 'free' : `${teamName(first.team)}${holders.length > 1 ? ` +${holders.length - 1}` : ''}`;
      if (who.dataset.v !== whoText) {
        who.dataset.v = whoText;
        who.replaceChildren(...(holders.length ? [h('i', { style: { background: colorFor(teamKey(first.team)) } })] : []), whoText);
      }
      t.title = [
        `GPU ${g.index} · ${g.model} · ${shortNode(g.node)}`,
        `utilisation ${pct(u, 1)} · memory ${bytes(g.memory_used_bytes)} / ${bytes(g.memory_total_bytes)} · ${Math.round(num(g.power_watts))} W`,
        ...(holders.length ? holders.map((x) => `${teamName(x.team)} · ${x.model || workloadLabel(x.workload).title} · SM ${pct(x.sm_pct, 0)}`) : ['nobody holds it']),
      ].join('\n');
    }
  };
  ctx.sub(subscribe(render));
  ctx.sub(onStatus(() => { if (!live.fleet) { p.body.classList.remove('loading'); root.replaceChildren(empty(liveText())); } }));
}

function liveText() {
  return live.status === 'unavailable' ? 'The live fleet view is not available on this collector.' : 'Waiting for the fleet…';
}

/** The live fleet as a table (drill-down views) for the GPUs `keep` selects. */
function fleetTable(ctx, p, keep, { showHolders = true, extra = () => ({}) } = {}) {
  const state = ctx.state;
  const holderText = (g) => (g.holders || []).map((x) => `${teamName(x.team)} ${x.model || workloadLabel(x.workload).title}`).join(', ');
  const cols = [
    {
      key: 'gpu', title: 'GPU', value: (g) => `${shortNode(g.node)} ${String(g.index ?? 0).padStart(3, '0')}`,
      cell: (g) => h('div.stack', h('a', { href: link(state, 'gpu', g.gpu, extra(g)), 'data-gpu': g.gpu }, `${shortNode(g.node)} · GPU ${g.index}`), h('span.s.faint.mono', shortGpu(g.gpu))),
    },
    { key: 'model', title: 'model', secondary: true, value: (g) => str(g.model), cell: (g) => h('div.stack', g.model, h('span.s.faint', g.instance_type || '')) },
    {
      key: 'util', title: 'utilisation', value: (g) => num(g.utilization_pct),
      cell: (g) => h('div.name', meter(num(g.utilization_pct), { warnBelow: 15 }), h('span', pct(g.utilization_pct))),
      total: (gs) => `mean ${pct(gs.length ? total(gs, (g) => g.utilization_pct) / gs.length : 0)}`,
    },
    {
      key: 'memory', title: 'memory', num: true, secondary: true, value: (g) => num(g.memory_used_bytes),
      cell: (g) => `${bytes(g.memory_used_bytes)} / ${bytes(g.memory_total_bytes)}`,
      total: (gs) => `${bytes(total(gs, (g) => g.memory_used_bytes))} / ${bytes(total(gs, (g) => g.memory_total_bytes))}`,
    },
    { key: 'power', title: 'power', num: true, value: (g) => num(g.power_watts), cell: (g) => `${Math.round(num(g.power_watts))} W`, total: (gs) => `${Math.round(total(gs, (g) => g.power_watts))} W` },
  ];
  if (showHolders) {
    cols.push({
      key: 'holders', title: 'on it', value: holderText,
      cell: (g) => ((g.holders || []).length ? h('div.stack', g.holders.map((x) => h('div.name', swatch(colorFor(teamKey(x.team))),
        h('a', { href: link(state, 'workload', x.workload, { team: teamKey(x.team) }), title: x.workload }, `${teamName(x.team)} · ${x.model || workloadLabel(x.workload).title}`),
        h('span.faint', `SM ${pct(x.sm_pct)}`)))) : h('span.faint', 'free')),
    });
  }
  const t = table(ctx, p.el.dataset.panel, cols, { sort: 'gpu', dir: 'asc', label: (gs) => `${gs.length} GPUs now` });
  const render = (fleet) => {
    p.body.classList.remove('loading');
    const gpus = fleet.gpus.filter(keep);
    p.el.dataset.at = fleet.at;
    p.sub.textContent = `live · ${clock(fleet.at)} UTC`;
    if (!gpus.length) { p.body.replaceChildren(empty('Not on any GPU right now.')); return; }
    show(p.body, t.set(gpus));
  };
  ctx.sub(subscribe(render));
  ctx.sub(onStatus(() => { if (!live.fleet) { p.body.classList.remove('loading'); p.body.replaceChildren(empty(liveText())); } }));
}

/** A KPI's live sparkline of fleet (or one GPU's) utilisation since the page opened. */
function sparkline(ctx, card, name, points) {
  const el = h('div.spark');
  card.el.append(el);
  let made = false;
  return () => {
    const pts = points();
    if (pts.length < 2) return;
    const xs = pts.map((x) => x.t);
    const ys = pts.map((x) => x.util);
    if (!made || !update(el, xs, [ys])) {
      lines(el, {
        name, xs, axes: false, height: 34, yRange: () => [0, 100],
        series: [{ label: 'utilisation', color: cssVar('--accent'), values: ys, width: 1.5, fill: cssVar('--accent-soft') }],
      });
      made = true;
    }
  };
}

// ---- views ----

export function overview(main, ctx) {
  const { state } = ctx;
  const win = timeWindow(state);
  const filter = state.cluster ? filterOf({ cluster: state.cluster }) : undefined;
  const label = periodLabel(state, win);
  const scope = state.cluster ? ` · ${state.cluster}` : '';

  const kCost = kpi(`GPU cost · ${label}`, { id: 'cost' });
  const kWaste = kpi('Idle waste', { id: 'waste', cls: 'warn' });
  const kBusy = kpi('GPUs in use now', { id: 'busy' });
  const kUtil = kpi('Utilisation now', { id: 'util' });
  const kRate = kpi('Burn rate now', { id: 'rate' });
  const kBudgets = kpi('Budgets', { id: 'budgets' });
  main.append(h('section.kpis', [kCost, kWaste, kBusy, kUtil, kRate, kBudgets].map((k) => k.el)));

  const pFleet = panel(12, 'fleet', 'Fleet now');
  const pTeams = panel(8, 'cost-by-team', 'Cost by team');
  const pModels = panel(4, 'top-models', 'Top models', label);
  const pWaste = panel(4, 'idle-waste', 'Idle waste per team', `held but not used · ${label}`);
  const pBudgets = panel(8, 'budgets', 'Budget burn-down', state.cluster ? 'whole fleet (budgets are not per cluster)' : 'remaining budget, pace and forecast');
  const pTable = panel(12, 'teams', 'Teams', `${label}${scope} · select a team to drill down`);
  main.append(pFleet.el, pTeams.el, pModels.el, pWaste.el, pBudgets.el, pTable.el);

  // live
  const keep = (g) => !state.cluster || g.cluster === state.cluster;
  fleetGrid(ctx, pFleet, keep);
  const spark = sparkline(ctx, kUtil, 'live:fleet-util', () => (state.cluster ? [] : live.history));
  ctx.sub(subscribe((fleet) => {
    const t = totals(fleet, keep);
    kBusy.set(count(t.busy), `of ${count(t.gpus)} GPUs held by a workload`);
    kUtil.set(pct(t.util, 1), `mean SM, ${state.cluster || 'all clusters'}`);
    if (t.usdPerHour !== null && t.usdPerHour !== undefined) kRate.set(usd(t.usdPerHour), `≈ ${usd(num(t.usdPerHour) * 24)} a day`, '/h');
    else kRate.set('—', 'fleet-wide only');
    spark();
  }));

  // the period
  costOverTime(ctx, pTeams, { win, dim: 'team', filter, name: 'cost-by-team' });
  topModels(ctx, pModels, { win, filter });
  // the period before, of the same length, for the cards' change
  const prevWin = { from: win.from - (win.to - win.from), to: win.from };
  const span = (w) => `${new Date(w.from * 1000).toISOString().slice(0, 16).replace('T', ' ')} – ${new Date(w.to * 1000).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  ctx.load(pTable, async () => {
    const [r, prev] = await Promise.all([
      getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: 'team', filter }, { signal: ctx.signal }),
      getJSON('costs', { from: iso(prevWin.from), to: iso(prevWin.to), group_by: 'team', filter }, { signal: ctx.signal }).catch(() => null),
    ]);
    const rows = r.rows.slice().sort((a, b) => num(b.total_usd) - num(a.total_usd));
    assignColors(rows.map((x) => x.team));
    const s = sum(rows);
    // The API's four kinds of money (docs/chargeback.md): idle is held but unused GPU time, whoever
    // carries it; unattributed is held by workloads no rule names a payer for; unallocated nobody held.
    const unalloc = num(r.unallocated?.usd);
    const idle = num(r.idle?.usd);
    const fleetUsd = num(r.fleet?.usd) || s.total;
    kCost.set(usd(r.fleet?.usd ?? s.total), `used ${usd(r.used?.usd)} · idle ${usd(idle)} · unallocated ${usd(unalloc)} · unattributed ${usd(r.unattributed?.usd)}`);
    kWaste.set(usd(idle), `${pct(fleetUsd ? (100 * idle) / fleetUsd : 0)} of the cost: GPUs held, not used`);
    if (prev) {
      const prevCost = num(prev.fleet?.usd);
      const prevIdle = num(prev.idle?.usd);
      const cost = num(r.fleet?.usd ?? s.total);
      const vs = `${span(win)} against the ${((win.to - win.from) / 3600).toLocaleString('en-US')} hours just before, ${span(prevWin)}`;
      kCost.change(cost, prevCost, `GPU cost ${usd(cost)}, ${vs}: ${usd(prevCost)}${scope}`);
      kWaste.change(idle, prevIdle, `Idle waste ${usd(idle)}, ${vs}: ${usd(prevIdle)}${scope}`);
    }

    // idle waste per team, then the idle no holder pays (utilization), then GPUs nobody held (not idle)
    const warn = cssVar('--warn');
    const items = rows.filter((x) => num(x.idle_usd) > 0).sort((a, b) => num(b.idle_usd) - num(a.idle_usd)).map((x) => ({
      key: x.team,
      label: [swatch(colorFor(x.team)), h('a', { href: link(state, 'team', x.team) }, teamName(x.team))],
      value: num(x.idle_usd),
      amount: usd(x.idle_usd),
      note: `${pct((100 * num(x.idle_usd)) / Math.max(num(x.total_usd), 1e-9))} of its cost`,
      color: warn,
      title: `${gpuHours(num(x.held_gpu_seconds) - num(x.used_gpu_seconds))} GPU-h held idle`,
    }));
    const uncharged = num(r.idle_uncharged?.usd);
    if (uncharged > 0) {
      items.push({ key: 'idle', label: [swatch(warn), h('span.muted', 'idle, no holder pays (utilization)')], value: uncharged, amount: usd(uncharged), color: warn });
    }
    if (unalloc > 0) {
      items.push({ key: 'unallocated', label: [swatch(cssVar('--faint')), h('span.muted', 'unallocated: nobody held the GPU (not idle)')], value: unalloc, amount: usd(unalloc), color: cssVar('--faint') });
    }
    pWaste.body.classList.remove('loading');
    pWaste.body.replaceChildren(items.length ? barList(items) : empty('No idle GPU time in this period.'));

    if (!rows.length) { pTable.body.replaceChildren(empty('No GPU cost in this period.')); return; }
    pTable.body.classList.add('flush');
    shareOf = s.total;
    show(pTable.body, teamsTable.set(rows));
  });
  let shareOf = 0;
  const teamsTable = table(ctx, 'teams', [
    { key: 'team', title: 'team', value: (x) => teamName(x.team), cell: (x) => teamCell(state, x.team) },
    hours('held', 'GPU-h held', 'held_gpu_seconds'),
    hours('used-h', 'GPU-h used', 'used_gpu_seconds', { secondary: true }),
    effColumn({ secondary: true }),
    money('used', 'used', 'used_usd'),
    money('idle', 'idle', 'idle_usd'),
    money('total', 'total', 'total_usd', { bold: true }),
    {
      key: 'share', title: 'share', num: true, secondary: true, value: (x) => num(x.total_usd),
      cell: (x) => pct(shareOf ? (100 * num(x.total_usd)) / shareOf : 0, 1), total: (rows) => pct(shareOf ? (100 * total(rows, (x) => x.total_usd)) / shareOf : 0, 1),
    },
  ], { sort: 'total', label: (rows) => `Total · ${rows.length} ${rows.length === 1 ? 'team' : 'teams'}` });
  budgets(ctx, pBudgets, kBudgets);
}

function scopeFilter(scope) {
  if (!scope) return '';
  if (scope.filter) return scope.filter;
  return filterOf(scope);
}
function scopeText(scope) {
  return Object.entries(scope || {}).map(([k, v]) => `${k} ${v}`).join(', ');
}

function budgets(ctx, p, k) {
  ctx.load(p, async () => {
    const [status, list] = await Promise.all([
      getJSON('budgets/status', {}, { signal: ctx.signal }),
      getJSON('budgets', {}, { signal: ctx.signal }).catch(() => ({ budgets: [] })),
    ]);
    const policy = new Map((list.budgets || []).map((b) => [b.name, b.policy]));
    const all = status.budgets || [];
    const alarms = all.filter((b) => (b.thresholds || []).some((t) => t.state === 'ALARM'));
    const over = all.filter((b) => num(b.forecast_pct) > 100);
    k.set(`${alarms.length}`, `${all.length} budgets · ${over.length} forecast over`, 'alarming');
    k.el.classList.toggle('bad', alarms.length > 0);
    if (!all.length) { p.body.replaceChildren(empty('No budgets: PUT /api/v1/budgets/<name> or --budgets (docs/budgets.md).')); return; }
    const cards = [];
    const sorted = all.slice().sort((a, b) => num(b.forecast_pct) - num(a.forecast_pct) || num(b.spend_pct) - num(a.spend_pct));
    for (const b of sorted) {
      const chartEl = h('div.chart');
      const card = h('div.budget', { 'data-budget': b.budget },
        h('div.hd', h('b', b.budget), h('span.faint', b.period)),
        h('div.scope', scopeText(b.scope)),
        h('div.figs',
          h('span', h('b', usd(b.spend_usd)), ` of ${usd(b.limit_usd)}`),
          h('span', h('b', pct(b.spend_pct, 1)), ' spent'),
          h('span', { class: num(b.forecast_pct) > 100 ? 'bad' : '' }, 'forecast ', h('b', pct(b.forecast_pct)))),
        chartEl,
        h('div.chips', (b.thresholds || []).map((t) => h(`span.chip${t.state === 'ALARM' ? '.alarm' : ''}`, { title: `${t.type} ${t.percent}%: ${t.state}` }, `${t.id} ${t.state === 'ALARM' ? '● ALARM' : 'ok'}`))));
      cards.push({ b, chartEl, card });
    }
    p.body.replaceChildren(h('div.budgets', cards.map((c) => c.card)));
    await Promise.all(cards.map(({ b, chartEl }) => burnDown(ctx, chartEl, b, policy.get(b.budget))));
  });
}

async function burnDown(ctx, el, b, policy) {
  const start = Date.parse(b.period_start) / 1000;
  const end = Date.parse(b.period_end) / 1000;
  const now = Math.min(Date.now() / 1000, end);
  const limit = num(b.limit_usd);
  const to = Math.min(Math.ceil(now / HOUR) * HOUR, end);
  if (!(to > start)) return;
  const r = await getJSON('costs', { from: b.period_start, to: iso(to), group_by: 'day', filter: scopeFilter(b.scope), policy }, { signal: ctx.signal });
  const perDay = new Map(r.rows.map((x) => [Date.parse(`${x.day}T00:00:00Z`) / 1000, num(x.total_usd)]));
  const xs = [start];
  const remaining = [limit];
  let cum = 0;
  for (let d = Math.floor(start / DAY) * DAY; d < now; d += DAY) {
    cum += perDay.get(d) || 0;
    const t = Math.min(d + DAY, now);
    if (t > xs[xs.length - 1]) { xs.push(t); remaining.push(limit - cum); }
  }
  const forecast = xs.map(() => null);
  forecast[forecast.length - 1] = remaining[remaining.length - 1];
  if (end > xs[xs.length - 1]) {
    xs.push(end);
    remaining.push(null);
    forecast.push(limit - num(b.forecast_usd));
  }
  const pace = xs.map((t) => limit * (1 - (t - start) / (end - start)));
  const lo = Math.min(0, ...remaining.filter((v) => v !== null), ...forecast.filter((v) => v !== null));
  lines(el, {
    name: `budget:${b.budget}`, xs, range: [start, end], height: 110,
    yRange: () => [lo < 0 ? lo * 1.15 : 0, limit * 1.05],
    timeFmt: (t) => `${new Date(t * 1000).toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    series: [
      { label: 'pace', color: cssVar('--faint'), values: pace, width: 1, dash: [3, 4] },
      { label: 'forecast', color: cssVar('--warn'), values: forecast, width: 1.5, dash: [6, 4] },
      { label: 'remaining', color: cssVar('--accent'), values: remaining, width: 2, fill: cssVar('--accent-soft') },
    ],
  });
}

/** Headline figures of a drill-down view. */
export function summaryKpis(main, ids) {
  const cards = Object.fromEntries(ids.map(([id, label, cls]) => [id, kpi(label, { id, cls })]));
  main.append(h('section.kpis', Object.values(cards).map((k) => k.el)));
  return cards;
}

function fillSummary(k, s, label) {
  k.cost.set(usd(s.total), label);
  k.waste.set(usd(s.idle), `${pct(s.total ? (100 * s.idle) / s.total : 0)} of the cost was idle`);
  k.eff.set(s.eff === null ? '—' : pct(s.eff), 'GPU time used ÷ held');
  k.held.set(gpuHours(s.held), `${gpuHours(s.usedGpu)} used`, 'GPU-h');
  k.kwh.set(kwh(s.kwh), 'energy', 'kWh');
}

export function team(main, ctx) {
  const { state } = ctx;
  const name = teamKey(state.id);
  const win = timeWindow(state);
  const label = periodLabel(state, win);
  const filter = filterOf({ team: name, ...(state.cluster ? { cluster: state.cluster } : {}) });
  assignColors([name]);
  main.append(h('div.title-row', swatch(colorFor(name)), h('h1', teamName(name)), h('span.sub', `team · ${label}${state.cluster ? ` · ${state.cluster}` : ''}`)));
  const k = summaryKpis(main, [['cost', 'GPU cost'], ['waste', 'Idle waste', 'warn'], ['eff', 'Efficiency'], ['held', 'GPU time held'], ['kwh', 'Energy'], ['now', 'GPUs now']]);
  const pTime = panel(8, 'team-cost', 'Cost over time', '');
  const pModels = panel(4, 'team-models', 'Models', label);
  const pWork = panel(12, 'workloads', 'Workloads', `${label} · select a workload to see its GPUs`);
  const pLive = panel(12, 'team-live', 'On the GPUs now');
  main.append(pTime.el, pModels.el, pWork.el, pLive.el);
  costOverTime(ctx, pTime, { win, dim: null, filter, name: 'team-cost' });
  topModels(ctx, pModels, { win, filter });
  ctx.load(pWork, async () => {
    const r = await getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: 'workload,model', filter }, { signal: ctx.signal });
    const rows = r.rows.slice().sort((a, b) => num(b.total_usd) - num(a.total_usd));
    fillSummary(k, sum(rows), label);
    if (!rows.length) { pWork.body.replaceChildren(empty('This team used no GPU in this period.')); return; }
    pWork.body.classList.add('flush');
    show(pWork.body, workTable.set(rows));
  });
  const workTable = table(ctx, 'workloads', [
    { key: 'workload', title: 'workload', value: (x) => workloadLabel(x.workload).title, cell: (x) => workloadCell(state, x.workload, { team: name }) },
    { key: 'model', title: 'model', secondary: true, value: (x) => modelName(x.model), cell: (x) => (x.model ? h('a', { href: link(state, 'model', x.model), 'data-model': x.model }, x.model) : modelName(x.model)) },
    hours('held', 'GPU-h held', 'held_gpu_seconds'),
    effColumn({ secondary: true }),
    money('idle', 'idle', 'idle_usd'),
    money('total', 'total', 'total_usd', { bold: true }),
  ], { sort: 'total', label: (rows) => `Total · ${rows.length} ${rows.length === 1 ? 'workload' : 'workloads'}` });
  const keep = (g) => (!state.cluster || g.cluster === state.cluster) && (g.holders || []).some((x) => teamKey(x.team) === name);
  fleetTable(ctx, pLive, keep, { extra: (g) => { const x = g.holders.find((y) => teamKey(y.team) === name); return { team: name, workload: x?.workload }; } });
  ctx.sub(subscribe((fleet) => {
    const gpus = fleet.gpus.filter(keep);
    const util = gpus.length ? gpus.reduce((a, g) => a + num(g.utilization_pct), 0) / gpus.length : 0;
    k.now.set(count(gpus.length), gpus.length ? `at ${pct(util)} utilisation` : 'none right now');
  }));
}

export function workload(main, ctx) {
  const { state } = ctx;
  const id = state.id ?? '';
  const w = workloadLabel(id);
  const win = timeWindow(state);
  const label = periodLabel(state, win);
  const filter = filterOf({ workload: id, ...(state.cluster ? { cluster: state.cluster } : {}) });
  main.append(h('div.title-row', h('span.kind', w.kind), h('h1', w.title), h('span.sub.mono', { title: id }, id)));
  const k = summaryKpis(main, [['cost', 'GPU cost'], ['waste', 'Idle waste', 'warn'], ['eff', 'Efficiency'], ['held', 'GPU time held'], ['kwh', 'Energy'], ['now', 'GPUs now']]);
  const pTime = panel(7, 'workload-cost', 'Cost over time');
  const pGpus = panel(5, 'gpus', 'GPUs', `${label} · select a GPU`);
  const pLive = panel(12, 'workload-live', 'On the GPUs now');
  main.append(pTime.el, pGpus.el, workloadHistoryPanel(ctx, id, 'workload-history').el, pLive.el);
  costOverTime(ctx, pTime, { win, dim: null, filter, name: 'workload-cost' });
  const team = state.team ?? undefined;
  ctx.load(pGpus, async () => {
    const r = await getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: 'cluster,node,gpu', filter }, { signal: ctx.signal });
    const rows = r.rows.slice().sort((a, b) => num(b.total_usd) - num(a.total_usd));
    fillSummary(k, sum(rows), label);
    if (!rows.length) { pGpus.body.replaceChildren(empty('No GPU time in this period.')); return; }
    pGpus.body.classList.add('flush');
    show(pGpus.body, gpuTable.set(rows));
  });
  const gpuTable = table(ctx, 'gpus', [
    {
      key: 'gpu', title: 'GPU', value: (x) => `${x.cluster}/${x.node}/${x.gpu}`,
      cell: (x) => h('div.stack', h('a', { href: link(state, 'gpu', x.gpu, { team, workload: id }), 'data-gpu': x.gpu }, shortGpu(x.gpu)), h('span.s.faint', `${x.cluster} / ${shortNode(x.node)}`)),
    },
    hours('held', 'GPU-h held', 'held_gpu_seconds'),
    { key: 'efficiency', title: 'efficiency', num: true, secondary: true, value: efficiency, cell: (x) => (efficiency(x) === null ? '—' : pct(efficiency(x))), total: (rows) => { const e = sum(rows).eff; return e === null ? '—' : pct(e); } },
    money('total', 'total', 'total_usd', { bold: true }),
  ], { sort: 'total', label: (rows) => `Total · ${rows.length} GPUs` });
  const keep = (g) => (g.holders || []).some((x) => x.workload === id);
  fleetTable(ctx, pLive, keep, { extra: () => ({ team, workload: id }) });
  ctx.sub(subscribe((fleet) => {
    const gpus = fleet.gpus.filter(keep);
    k.now.set(count(gpus.length), gpus.length ? 'running' : 'not running now');
  }));
}

export function gpu(main, ctx) {
  const { state } = ctx;
  const uuid = state.id ?? '';
  const win = timeWindow(state);
  const label = periodLabel(state, win);
  const filter = filterOf({ gpu: uuid });
  const title = h('span.sub');
  main.append(h('div.title-row', h('h1.mono', uuid), title));
  const pNow = panel(5, 'gpu-now', 'Now');
  const pUtil = panel(7, 'gpu-util', 'Utilisation, live', 'since this page opened');
  const pTime = panel(7, 'gpu-cost', 'Cost over time');
  const pWork = panel(5, 'gpu-workloads', 'Who used it', label);
  main.append(pNow.el, pUtil.el, pTime.el, pWork.el, historyPanel(ctx, { gpu: uuid }, 'gpu-history').el);
  costOverTime(ctx, pTime, { win, dim: null, filter, name: 'gpu-cost' });

  ctx.load(pWork, async () => {
    const r = await getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: 'workload,team', filter }, { signal: ctx.signal });
    const rows = r.rows.slice().sort((a, b) => num(b.total_usd) - num(a.total_usd));
    if (!rows.length) { pWork.body.replaceChildren(empty('Nobody held this GPU in this period.')); return; }
    assignColors(rows.map((x) => x.team));
    pWork.body.classList.add('flush');
    show(pWork.body, whoTable.set(rows));
  });
  const whoTable = table(ctx, 'gpu-workloads', [
    { key: 'workload', title: 'workload', value: (x) => `${teamName(x.team)} ${workloadLabel(x.workload).title}`, cell: (x) => h('div.stack', workloadCell(state, x.workload, { team: x.team }), h('span.s', teamName(x.team))) },
    hours('held', 'GPU-h', 'held_gpu_seconds'),
    money('total', 'total', 'total_usd', { bold: true }),
  ], { sort: 'total', label: (rows) => `Total · ${rows.length} ${rows.length === 1 ? 'workload' : 'workloads'}` });

  const chartEl = h('div.chart');
  pUtil.body.replaceChildren(chartEl);
  let made = false;
  const facts = h('dl.facts');
  const holdersBox = h('div', { style: { marginTop: '14px' } });
  const holdersTable = table(ctx, 'gpu-holders', [
    { key: 'workload', title: 'on it now', value: (x) => `${teamName(x.team)} ${workloadLabel(x.workload).title}`, cell: (x) => h('div.stack', workloadCell(state, x.workload, { team: teamKey(x.team) }), h('span.s', `${teamName(x.team)} · ${modelName(x.model)}`)) },
    { key: 'sm', title: 'SM', num: true, value: (x) => num(x.sm_pct), cell: (x) => pct(x.sm_pct) },
    { key: 'memory', title: 'memory', num: true, value: (x) => num(x.memory_bytes), cell: (x) => bytes(x.memory_bytes), total: (xs) => bytes(total(xs, (x) => x.memory_bytes)) },
  ], { sort: 'sm', totals: false });
  ctx.sub(subscribe((fleet) => {
    pNow.el.dataset.at = fleet.at;
    pUtil.body.classList.remove('loading');
    pNow.body.classList.remove('loading');
    const g = fleet.gpus.find((x) => x.gpu === uuid);
    pNow.sub.textContent = `live · ${clock(fleet.at)} UTC`;
    if (!g) {
      pNow.body.replaceChildren(empty('This GPU is not reporting right now.'));
      return;
    }
    title.replaceChildren(`GPU ${g.index} · ${g.model} · ${g.instance_type || ''} · `, h('a', { href: nodeLink(state, g.cluster, g.node), 'data-node-link': '' }, shortNode(g.node)), ` · ${g.cluster}`);
    const holders = g.holders || [];
    if (!pNow.body.contains(holdersBox)) pNow.body.replaceChildren(facts, holdersBox);
    facts.replaceChildren(
      h('div', h('dt', 'utilisation'), h('dd', { 'data-live': 'util' }, pct(g.utilization_pct, 1))),
      h('div', h('dt', 'memory'), h('dd', `${bytes(g.memory_used_bytes)} / ${bytes(g.memory_total_bytes)}`)),
      h('div', h('dt', 'power'), h('dd', `${Math.round(num(g.power_watts))} W`)),
      h('div', h('dt', 'interval ended'), h('dd', `${clock(g.interval_end)} UTC`)));
    if (holders.length) show(holdersBox, holdersTable.set(holders));
    else holdersBox.replaceChildren(empty('Nobody holds it right now.'));
    const pts = live.gpuHistory.get(uuid) || [];
    if (pts.length >= 1) {
      const xs = pts.map((x) => x.t);
      const ys = pts.map((x) => x.util);
      if (!made || !update(chartEl, xs, [ys])) {
        lines(chartEl, {
          name: 'live:gpu', xs, height: 200, yRange: () => [0, 100], fmt: (v) => (v === null ? '—' : `${Math.round(v)}%`),
          timeFmt: (t) => `${new Date(t * 1000).toISOString().slice(11, 19)} UTC`,
          series: [{ label: 'utilisation', color: cssVar('--accent'), values: ys, fill: cssVar('--accent-soft'), points: pts.length < 3 }],
        });
        made = true;
      }
    }
  }));
  ctx.sub(onStatus(() => { if (!live.fleet) { pNow.body.classList.remove('loading'); pNow.body.replaceChildren(empty(liveText())); } }));
}
