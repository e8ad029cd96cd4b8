// A GPU's and a node's history from the ledger (GET /api/v1/history): utilisation (mean and max), memory,
// power and cost per hour over the period on screen, not only since the page opened. Past the raw retention a
// bucket's utilisation and power come from the hourly rollup (used ÷ observed time, energy ÷ time) and its
// memory and maxima are blank; the panel says so. The node page (#/node/<cluster>/<name>) is the same charts
// for the node's GPUs together (means per GPU) and its GPUs' costs.

import { bytes, filterOf, getJSON, iso, link, num, shortGpu, timeWindow, usd, usdShort } from './api.js';
import { categorical, cssVar, lines, withOther } from './charts.js';
import { h } from './views.js';

function panel(span, id, title, sub = '') {
  const subEl = h('span.sub', sub);
  const body = h('div.body.loading');
  const el = h(`section.panel.span-${span}`, { 'data-panel': id }, h('header', h('h2', title), subEl, h('div.tools')), body);
  return { el, body, sub: subEl };
}

/** The history panel of `query` (`{gpu}` or `{node}`), its charts named `<name>-util`, `-memory`, `-power`, `-cost`. */
export function historyPanel(ctx, query, name) {
  const win = timeWindow(ctx.state);
  const p = panel(12, name, 'History', 'from the ledger, per hour');
  ctx.load(p, async () => {
    const r = await getJSON('history', { ...query, from: iso(win.from), to: iso(win.to) }, { signal: ctx.signal });
    const pts = r.points;
    p.el.dataset.points = String(pts.length);
    if (!pts.length) { p.body.replaceChildren(h('div.empty', 'No GPU time in this period.')); return; }
    const rollup = pts.filter((x) => x.source === 'rollup').length;
    p.sub.textContent = `from the ledger, per hour · ${usd(r.cost.usd)} in this period` +
      (rollup ? ` · ${rollup} of ${pts.length} hours past the raw retention: utilisation and power from the hourly rollup, no memory or maxima` : '');
    const xs = pts.map((x) => x.t);
    const range = [win.from, win.to];
    const v = (k, f = (a) => a) => pts.map((x) => (x[k] === null || x[k] === undefined ? null : f(x[k])));
    const charts = [
      ['util', 'Utilisation', { yRange: () => [0, 100], fmt: (a) => (a === null ? '—' : `${Math.round(a)}%`),
        series: [{ label: 'mean', color: cssVar('--accent'), values: v('utilization_mean_pct'), fill: cssVar('--accent-soft') },
          { label: 'max', color: cssVar('--muted'), values: v('utilization_max_pct'), dash: [4, 3], width: 1 }] }],
      ['memory', 'Memory used per GPU', { fmt: (a) => (a === null ? '—' : bytes(a)),
        series: [{ label: 'mean', color: cssVar('--accent'), values: v('memory_used_mean_bytes') },
          { label: 'max', color: cssVar('--muted'), values: v('memory_used_max_bytes'), dash: [4, 3], width: 1 }] }],
      ['power', 'Power per GPU', { fmt: (a) => (a === null ? '—' : `${Math.round(a)} W`),
        series: [{ label: 'mean', color: cssVar('--accent'), values: v('power_mean_watts') },
          { label: 'max', color: cssVar('--muted'), values: v('power_max_watts'), dash: [4, 3], width: 1 }] }],
      ['cost', 'Cost per hour', { fmt: usdShort,
        series: [{ label: 'cost', color: cssVar('--accent'), values: v('cost_micros', (m) => m / 1e6), fill: cssVar('--accent-soft') },
          { label: 'idle', color: cssVar('--muted'), values: v('idle_micros', (m) => m / 1e6), width: 1 }] }],
    ];
    const grid = h('div.history-grid');
    p.body.replaceChildren(grid);
    for (const [key, title, opts] of charts) {
      const el = h('div.chart');
      grid.append(h('div', h('h3', title), el));
      lines(el, { name: `${name}-${key}`, xs, range, height: 160, ...opts });
    }
  });
  return p;
}

/** #/node/<cluster>/<name>: the node's history and what each of its GPUs cost in the period. */
export function node(main, ctx) {
  const { state } = ctx;
  const id = state.id ?? '';
  const slash = id.indexOf('/');
  const [cluster, name] = slash < 0 ? ['', id] : [id.slice(0, slash), id.slice(slash + 1)];
  const win = timeWindow(state);
  main.append(h('div.title-row', h('h1.mono', name), h('span.sub', `node · ${cluster}`)));
  main.append(historyPanel(ctx, { node: `${cluster}/${name}` }, 'node-history').el);
  const p = panel(12, 'node-gpus', 'Its GPUs');
  main.append(p.el);
  ctx.load(p, async () => {
    const r = await getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: 'gpu', filter: filterOf({ cluster, node: name }) }, { signal: ctx.signal });
    if (!r.rows.length) { p.body.replaceChildren(h('div.empty', 'No GPU time in this period.')); return; }
    const rows = r.rows.slice().sort((a, b) => num(b.total_usd) - num(a.total_usd));
    p.body.replaceChildren(h('ul.plain', rows.map((x) => h('li', h('a.mono', { href: link(state, 'gpu', x.gpu) }, shortGpu(x.gpu)), ' · ', usd(x.total_usd)))));
  });
}

/** A link to the node page of `cluster`/`name`. */
export const nodeLink = (state, cluster, name) => link(state, 'node', `${cluster}/${name}`);

/**
 * A workload's history from the ledger (`GET /api/v1/history?workload=`): per hour and per GPU it held, its
 * GPU time (GPU-hours held in the hour, so 1 = the whole GPU all hour) and its cost (the hybrid-policy charge),
 * one line per GPU; and per GPU its utilisation (used ÷ held), busiest interval's SM share, peak memory and power
 * (charts `<name>-util`, `-sm-max`, `-memory`, `-power`; at most nine GPUs drawn). Charts `<name>-time` and `<name>-cost`; each series' label is its GPU (the test reads them).
 * Beyond the palette's nine GPUs the rest are summed as one grey "other" line.
 */
export function workloadHistoryPanel(ctx, id, name) {
  const win = timeWindow(ctx.state);
  const p = panel(12, name, 'History', 'from the ledger, per hour and GPU');
  ctx.load(p, async () => {
    const r = await getJSON('history', { workload: id, from: iso(win.from), to: iso(win.to) }, { signal: ctx.signal });
    const pts = r.points;
    p.el.dataset.points = String(pts.length);
    if (!pts.length) { p.body.replaceChildren(h('div.empty', 'No GPU time in this period.')); return; }
    const xs = [...new Set(pts.map((x) => x.t))].sort((a, b) => a - b);
    const at = new Map(xs.map((t, i) => [t, i]));
    const byGpu = new Map();
    for (const x of pts) {
      const g = x.gpu ?? '';
      if (!byGpu.has(g)) byGpu.set(g, { key: g, total: 0, ...Object.fromEntries(['time', 'cost', 'util', 'smMax', 'peak', 'power'].map((k) => [k, xs.map(() => null)])) });
      const s = byGpu.get(g);
      const i = at.get(x.t);
      s.time[i] = (s.time[i] ?? 0) + x.held_gpu_seconds / 3600;
      s.cost[i] = (s.cost[i] ?? 0) + x.cost_micros / 1e6;
      s.util[i] = x.utilization_mean_pct ?? null;
      s.smMax[i] = x.utilization_max_pct ?? null;
      s.peak[i] = x.memory_used_max_bytes ?? null;
      s.power[i] = x.power_mean_watts ?? null;
      s.total += x.cost_micros;
    }
    const gpus = [...byGpu.values()].sort((a, b) => b.total - a.total || a.key.localeCompare(b.key));
    const colors = categorical(gpus.map((g) => g.key));
    p.sub.textContent = `from the ledger, per hour and GPU · ${gpus.length} ${gpus.length === 1 ? 'GPU' : 'GPUs'} · ${usd(r.cost.usd)} in this period`;
    const seriesOf = (field) => withOther(gpus.map((g) => ({
      key: g.key, label: g.key, color: colors.get(g.key), values: g[field], total: g.total, width: 1.5,
    })));
    // per-GPU figures that do not add up (a percentage, a peak, watts): one line per GPU, the palette's nine at most
    const linesOf = (field) => gpus.slice(0, 9).map((g) => ({ key: g.key, label: g.key, color: colors.get(g.key), values: g[field], width: 1.5 }));
    const range = [win.from, win.to];
    const charts = [
      ['time', 'GPU-hours held per hour (1 = the whole GPU)', { fmt: (a) => (a === null ? '—' : a.toFixed(2)), yRange: (u, min, max) => [0, Math.max(1, max) * 1.1], series: seriesOf('time') }],
      ['cost', 'Cost per hour', { fmt: usdShort, series: seriesOf('cost') }],
      ['util', 'Utilisation (GPU time used ÷ held)', { yRange: () => [0, 100], fmt: (a) => (a === null ? '—' : `${Math.round(a)}%`), series: linesOf('util') }],
      ['sm-max', 'Busiest interval (SM)', { yRange: () => [0, 100], fmt: (a) => (a === null ? '—' : `${Math.round(a)}%`), series: linesOf('smMax') }],
      ['memory', 'Peak memory', { fmt: (a) => (a === null ? '—' : bytes(a)), yRange: (u, min, max) => [0, Math.max(1, max) * 1.1], series: linesOf('peak') }],
      ['power', 'Power (its share of the GPU)', { fmt: (a) => (a === null ? '—' : `${Math.round(a)} W`), series: linesOf('power') }],
    ];
    const grid = h('div.history-grid');
    const legend = h('div.chart-legend', seriesOf('cost').map((s) => h('span.item', { 'data-gpu': s.key ?? '', title: s.other ? s.other.join(', ') : s.label },
      h('i.swatch', { style: { background: s.color } }), s.other ? s.label : shortGpu(s.label), h('b', usd(s.values.reduce((a, v) => a + (v ?? 0), 0))))));
    p.body.replaceChildren(grid, legend);
    for (const [key, title, opts] of charts) {
      const el = h('div.chart');
      grid.append(h('div', h('h3', title), el));
      lines(el, { name: `${name}-${key}`, xs, range, height: 180, ...opts });
    }
  });
  return p;
}
