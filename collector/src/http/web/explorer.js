// The allocation explorer (#/explore/): GPU cost grouped by any one or two dimensions of the costs API
// (department → team, namespace → pod…), under any filters, split policy and period (the header's presets
// or a custom date range), charted per bucket or cumulatively, with idle shared to its holders, shown
// separately or hidden. Everything it shows is in the URL (by=, filter=, policy=, idle=, chart=, from=,
// to=), so a link opens the same view and back/forward step through the changes. The table is the costs
// API's rows for the period on screen: the CSV button downloads the same query with `format=csv`.

import { DAY, HOUR, costSeries, filterTerms, filterValue, getJSON, gpuHours, iso, kwh, link, num, termText, timeWindow, usd, when } from './api.js';
import { categorical, cssVar, lines, stackedBars, withOther } from './charts.js';
import { PAGE_SIZE, dataTable, show } from './table.js';
import { h, periodLabel } from './views.js';

/** The dimensions the costs API groups by (`day` is the chart's axis; `label:<key>` works from the URL). */
export const DIMENSIONS = [
  'team', 'department', 'owner', 'component', 'system', 'cluster', 'node', 'gpu', 'namespace', 'pod', 'controller',
  'container', 'workload', 'kind', 'ecs_task', 'slurm_job', 'user', 'model', 'model_version', 'run', 'experiment',
];
export const POLICIES = ['allocation', 'utilization', 'hybrid'];
export const IDLE = [['shared', 'shared to holders'], ['separate', 'separate'], ['hidden', 'hidden']];
const CHARTS = [['daily', 'per bucket'], ['cumulative', 'cumulative']];

/** The explorer's part of the route: grouping, filter terms, policy, idle and chart mode (defaults filled in). */
export function explorerState(state) {
  const by = String(state.by || 'team').split(',').map((s) => s.trim()).filter(Boolean).slice(0, 2);
  const terms = filterTerms(state.filter).map((s) => s.trim()).filter((s) => s.includes('='));
  return {
    by: by.length ? by : ['team'],
    terms,
    policy: POLICIES.includes(state.policy) ? state.policy : 'hybrid',
    idle: IDLE.some(([k]) => k === state.idle) ? state.idle : 'shared',
    chart: state.chart === 'cumulative' ? 'cumulative' : 'daily',
  };
}

/** A link to the explorer with `changes` (null drops a parameter; by/filter as arrays). */
function explore(state, changes) {
  const ex = explorerState(state);
  const next = { by: ex.by.join(','), filter: ex.terms.join(',') || null, policy: ex.policy, idle: ex.idle, chart: ex.chart, rows: state.rows ?? null };
  for (const [k, v] of Object.entries(changes)) next[k] = Array.isArray(v) ? (v.length ? v.join(',') : null) : v;
  if (next.policy === 'hybrid') next.policy = null;
  if (next.idle === 'shared') next.idle = null;
  if (next.chart === 'daily') next.chart = null;
  return link(state, 'explore', '', next);
}

/** The filter the API gets: the terms, and the header's cluster unless a term names a cluster. */
function apiFilter(state, ex) {
  const terms = [...ex.terms];
  if (state.cluster && !terms.some((t) => t.startsWith('cluster='))) terms.push(`cluster=${filterValue(state.cluster)}`);
  return terms.join(',');
}

const dayOf = (t) => new Date(t * 1000).toISOString().slice(0, 10);
const shown = (v) => (v === '' || v === null || v === undefined ? '(none)' : String(v));

function seg(name, options, current, href) {
  return h('div.seg', { role: 'group', 'aria-label': name, 'data-seg': name },
    options.map(([k, text]) => h('button', { type: 'button', 'data-value': k, 'aria-pressed': String(k === current), onclick: () => { location.hash = href(k); } }, text)));
}

function dimSelect(label, value, { none = false, id } = {}) {
  const options = [...(none ? [['', '—']] : []), ...DIMENSIONS.map((d) => [d, d])];
  if (value && !DIMENSIONS.includes(value)) options.push([value, value]);
  const s = h('select', { 'aria-label': label, id }, options.map(([v, t]) => h('option', { value: v }, t)));
  s.value = value || '';
  return s;
}

export function explorer(main, ctx) {
  const { state } = ctx;
  const ex = explorerState(state);
  const win = timeWindow(state);
  const label = periodLabel(state, win);
  const filter = apiFilter(state, ex);
  const go = (changes) => { location.hash = explore(state, changes); };

  main.append(h('div.title-row', h('h1', 'Allocation explorer'),
    h('span.sub', `${label} · by ${ex.by.join(' → ')} · ${ex.policy} policy${filter ? ` · ${filter.replaceAll(',', ', ')}` : ''}`)));

  // ---- the controls: grouping, filters, dates, policy, idle, chart ----
  const by1 = dimSelect('Group by', ex.by[0], { id: 'ex-by1' });
  const by2 = dimSelect('Then by', ex.by[1] || '', { none: true, id: 'ex-by2' });
  const regroup = () => go({ by: [by1.value, by2.value].filter((v, i, a) => v && a.indexOf(v) === i) });
  by1.addEventListener('change', regroup);
  by2.addEventListener('change', regroup);

  const fDim = dimSelect('Filter dimension', 'team', { id: 'ex-fdim' });
  const values = h('datalist', { id: 'ex-values' });
  const fValue = h('input', { id: 'ex-fvalue', type: 'text', list: 'ex-values', placeholder: 'value', 'aria-label': 'Filter value', autocomplete: 'off' });
  const loadValues = () => {
    getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: fDim.value, filter }, { signal: ctx.signal })
      .then((r) => values.replaceChildren(...r.rows.map((x) => h('option', { value: x[fDim.value] })))).catch(() => {});
  };
  fDim.addEventListener('change', loadValues);
  loadValues();
  const addFilter = (e) => {
    e.preventDefault();
    const term = `${fDim.value}=${filterValue(fValue.value.trim())}`;
    if (!ex.terms.includes(term)) go({ filter: [...ex.terms, term] });
  };
  const chips = ex.terms.map((t) => h('span.chip.filter', { 'data-filter': t }, termText(t),
    h('a.x', { href: explore(state, { filter: ex.terms.filter((x) => x !== t) }), title: `Remove ${termText(t)}`, 'aria-label': `Remove filter ${termText(t)}` }, '×')));

  const fromIn = h('input', { id: 'ex-from', type: 'date', 'aria-label': 'From (UTC day)', value: dayOf(win.from) });
  const toIn = h('input', { id: 'ex-to', type: 'date', 'aria-label': 'To (UTC day, inclusive)', value: dayOf(win.to - 1) });
  const applyDates = (e) => {
    e.preventDefault();
    const f = Date.parse(`${fromIn.value}T00:00:00Z`);
    const t = Date.parse(`${toIn.value}T00:00:00Z`);
    if (Number.isNaN(f) || Number.isNaN(t) || t < f) { toIn.setCustomValidity('the last day is before the first'); toIn.reportValidity(); return; }
    go({ from: fromIn.value, to: dayOf(t / 1000 + DAY), period: null });
  };

  const controls = h('section.panel.span-12.explorer-controls', { 'data-panel': 'explorer-controls' }, h('div.body',
    h('div.ex-row',
      h('label.ex-field', h('span', 'Group by'), by1),
      h('label.ex-field', h('span', 'then by'), by2),
      h('form.ex-field', { id: 'ex-dates', onsubmit: applyDates }, h('span', 'Dates (UTC)'), fromIn, h('span.faint', '–'), toIn, h('button', { type: 'submit' }, 'Apply'))),
    h('div.ex-row',
      h('form.ex-field', { id: 'ex-filter', onsubmit: addFilter }, h('span', 'Filter'), fDim, h('span.faint', '='), fValue, values, h('button', { type: 'submit' }, 'Add')),
      h('div.chips.ex-chips', chips.length ? chips : h('span.faint', 'no filter'))),
    h('div.ex-row',
      h('div.ex-field', h('span', 'Split policy'), seg('policy', POLICIES.map((p) => [p, p]), ex.policy, (p) => explore(state, { policy: p }))),
      h('div.ex-field', h('span', 'Idle'), seg('idle', IDLE, ex.idle, (k) => explore(state, { idle: k }))),
      h('div.ex-field', h('span', 'Chart'), seg('chart', CHARTS, ex.chart, (k) => explore(state, { chart: k }))))));
  main.append(controls);

  // ---- headline figures ----
  const kpis = h('section.kpis', { 'data-panel': 'explorer-kpis' });
  main.append(kpis);

  // ---- the chart: by the first dimension ----
  const pChart = panel('explorer-chart', `Cost by ${ex.by[0]} over time`);
  const chartEl = h('div.chart');
  const legend = h('div.chart-legend');
  const notes = h('div.chart-notes');
  pChart.body.replaceChildren(chartEl, legend, notes);
  main.append(pChart.el);

  // ---- the table: the costs API's rows, as the CSV has them ----
  const pTable = panel('explorer-table', `By ${ex.by.join(' → ')}`);
  const q = { from: iso(win.from), to: iso(win.to), group_by: ex.by.join(','), filter, policy: ex.policy === 'hybrid' ? undefined : ex.policy };
  const qs = new URLSearchParams(Object.entries({ ...q, format: 'csv' }).filter(([, v]) => v));
  const focus = new URLSearchParams({ from: q.from, to: q.to, format: 'focus', ...(q.policy ? { policy: q.policy } : {}) });
  pTable.tools.replaceChildren(
    h('a.btn', { id: 'explorer-csv', href: `api/v1/costs?${qs}`, download: `gpucost-${ex.by.join('-')}-${dayOf(win.from)}-${dayOf(win.to - 1)}.csv`, title: 'This table as CSV (GET /api/v1/costs?format=csv)' }, 'CSV'),
    h('a.btn', { id: 'explorer-focus', href: `api/v1/chargeback?${focus}`, download: '', title: 'The same period as a FinOps FOCUS file (GET /api/v1/chargeback?format=focus)' }, 'FOCUS'));
  main.append(pTable.el);

  const drill = (dim, v) => explore(state, { filter: [...ex.terms.filter((t) => !t.startsWith(`${dim}=`)), `${dim}=${filterValue(v)}`] });
  const columns = [
    ...ex.by.map((d, i) => ({
      key: `g:${d}`, title: d, value: (x) => shown(x[d]),
      cell: (x) => h('span.group',
        i === 0 && ex.by.length > 1 ? h('a', { href: drill(d, x[d] ?? ''), title: `Filter to ${d}=${x[d]}`, 'data-group': x[d] }, shown(x[d])) : h('span', { 'data-group': x[d] }, shown(x[d])),
        pageOf(state, d, x[d])),
    })),
    moneyCol('used', 'used', 'used_usd'),
    moneyCol('idle', 'idle', 'idle_usd'),
    moneyCol('total', 'total', 'total_usd', true),
    { key: 'held', title: 'GPU-h held', num: true, value: (x) => num(x.held_gpu_seconds), cell: (x) => gpuHours(x.held_gpu_seconds), total: (rs) => gpuHours(sum(rs, 'held_gpu_seconds')) },
    { key: 'usedh', title: 'GPU-h used', num: true, secondary: true, value: (x) => num(x.used_gpu_seconds), cell: (x) => gpuHours(x.used_gpu_seconds), total: (rs) => gpuHours(sum(rs, 'used_gpu_seconds')) },
    { key: 'kwh', title: 'kWh', num: true, secondary: true, value: (x) => num(x.energy_kwh), cell: (x) => kwh(x.energy_kwh), total: (rs) => kwh(sum(rs, 'energy_kwh')) },
    { key: 'co2e', title: 'CO₂e kg', num: true, secondary: true, value: (x) => (x.co2e_kg === null ? null : num(x.co2e_kg)), cell: (x) => (x.co2e_kg === null ? '—' : kwh(x.co2e_kg)), total: (rs) => kwh(sum(rs, 'co2e_kg')) },
  ];
  const tbl = dataTable({
    name: `explorer:${ex.by.join(',')}`, columns, sort: 'total', pageSize: state.rows ?? PAGE_SIZE,
    label: (rows) => `Total · ${rows.length} ${rows.length === 1 ? 'row' : 'rows'}`,
    onPageSize: (n) => go({ rows: n === PAGE_SIZE ? null : n }),
  });
  ctx.load(pTable, async () => {
    const r = await getJSON('costs', q, { signal: ctx.signal });
    pTable.el.dataset.query = new URLSearchParams(Object.entries(q).filter(([, v]) => v)).toString();
    headline(kpis, r, ex);
    pTable.sub.textContent = `${label} · ${ex.policy} · ${r.rows.length} rows · the CSV has these rows`;
    if (!r.rows.length) { pTable.body.replaceChildren(h('div.empty', 'No GPU cost for this grouping, filter and period.')); return; }
    pTable.body.classList.add('flush');
    show(pTable.body, tbl.set(r.rows));
  });

  ctx.load(pChart, async () => {
    const dim = ex.by[0];
    const buckets = await costSeries(win, [dim], filter, { policy: ex.policy === 'hybrid' ? undefined : ex.policy, signal: ctx.signal });
    const xs = buckets.map((b) => b.t);
    const now = Date.now() / 1000;
    const partial = buckets.findIndex((b) => b.t <= now && now < b.t + win.step);
    const missing = new Set(buckets.map((b, i) => (!b.data && i !== partial ? i : -1)).filter((i) => i >= 0));
    const field = ex.idle === 'shared' ? 'total_usd' : 'used_usd';
    const value = (b, v) => (b.data || b.rows.length ? num(v) : null);
    const tot = new Map();
    for (const b of buckets) for (const r of b.rows) tot.set(r[dim], (tot.get(r[dim]) || 0) + num(r[field]));
    const keys = [...tot].sort((a, b) => b[1] - a[1]).map(([k]) => k);
    const colors = categorical(keys);
    let series = withOther(keys.map((k) => ({
      key: k, total: tot.get(k), label: shown(k), color: colors.get(k),
      values: buckets.map((b) => value(b, b.rows.filter((r) => r[dim] === k).reduce((a, r) => a + num(r[field]), 0))),
    })));
    if (ex.idle === 'separate') {
      const values = buckets.map((b) => value(b, b.rows.reduce((a, r) => a + num(r.idle_usd), 0)));
      series = [...series, { key: null, idle: true, label: 'idle (held, not used)', color: cssVar('--warn'), values, total: values.reduce((a, v) => a + (v ?? 0), 0) }];
    }
    if (!series.length || series.every((s) => !s.total)) {
      chartEl.replaceChildren(h('div.empty', missing.size === buckets.length ? 'No data recorded for this period.' : 'No GPU cost in this period.'));
      legend.replaceChildren();
      notes.replaceChildren();
      return;
    }
    chartEl.replaceChildren();
    const stepText = win.step === DAY ? 'day' : win.step === HOUR ? 'hour' : `${win.step / HOUR} hours`;
    if (ex.chart === 'cumulative') {
      let acc = series.map(() => 0);
      const cum = series.map(() => []);
      buckets.forEach((b, i) => {
        acc = acc.map((a, j) => a + (series[j].values[i] ?? 0));
        series.forEach((s, j) => cum[j].push(missing.has(i) ? null : acc[j]));
      });
      const u = lines(chartEl, {
        name: 'explorer', xs: xs.map((t) => t + win.step), range: [win.from, win.to], height: 280,
        series: series.map((s, j) => ({ label: s.label, color: s.color, values: cum[j], width: 2 })),
      });
      u.gpucost = { mode: 'cumulative', labels: series.map((s) => s.label), starts: xs, step: win.step };
      pChart.sub.textContent = `cumulative, at the end of each ${stepText}, UTC`;
    } else {
      const u = stackedBars(chartEl, { name: 'explorer', xs, step: win.step, range: [win.from, win.to], series, partial, missing, height: 280 });
      u.gpucost.mode = 'daily';
      pChart.sub.textContent = `per ${stepText}, UTC`;
    }
    legend.replaceChildren(...series.map((s) => h('span.item', { 'data-key': s.key ?? '', 'data-total': String(s.total), title: s.other ? s.other.map(shown).join(', ') : '' },
      h('i.swatch', { style: { background: s.color } }), s.label, h('b', usd(s.total)))));
    const first = buckets.findIndex((b) => b.data);
    notes.replaceChildren(...[
      h('span.note', `${ex.idle === 'shared' ? 'each group with the idle time it held' : ex.idle === 'separate' ? 'groups at what they used; idle on its own' : 'groups at what they used; idle not shown'}`),
      partial >= 0 ? h('span.note', { 'data-note': 'partial' }, h('i.swatch.hatched'), `this ${stepText} so far, not finished`) : null,
      missing.size ? h('span.note', { 'data-note': 'missing' }, h('i.swatch.nodata'), first > 0 && [...missing].every((i) => i < first)
        ? `no data before ${when(xs[first], { time: win.step < DAY })} UTC (not zero cost)` : `no data recorded in ${missing.size} of ${buckets.length} buckets (not zero cost)`) : null,
    ].filter(Boolean));
  });
}

/** A link to the page of a team, workload, GPU or model (`↗`), for the dimensions that have one. */
function pageOf(state, dim, value) {
  const view = { team: 'team', workload: 'workload', gpu: 'gpu', model: 'model' }[dim];
  if (!view || !value) return null;
  return h('a.go', { href: link(state, view, value), title: `Open the ${dim} page of ${value}`, 'data-page': view, 'aria-label': `${dim} page` }, '↗');
}

function panel(id, title) {
  const sub = h('span.sub');
  const tools = h('div.tools');
  const body = h('div.body.loading');
  const el = h('section.panel.span-12', { 'data-panel': id }, h('header', h('h2', title), sub, tools), body);
  return { el, body, sub, tools };
}

const sum = (rows, f) => rows.reduce((a, x) => a + num(x[f]), 0);

function moneyCol(key, title, field, bold = false) {
  const fmt = (v) => (bold ? h('b', usd(v)) : usd(v));
  return { key, title, num: true, money: true, value: (x) => num(x[field]), cell: (x) => fmt(x[field]), total: (rs) => fmt(sum(rs, field)) };
}

/** The period's figures under the idle mode: idle inside the groups' cost, beside it, or left out. */
function headline(el, r, ex) {
  const card = (id, labelText, value, note) => h('div.kpi', { 'data-kpi': id }, h('div.label', labelText), h('div.value', value), h('div.note', note || '\u00a0'));
  const idle = r.idle ? num(r.idle.usd) : null;
  const cards = [];
  if (ex.idle === 'shared') cards.push(card('cost', 'GPU cost', usd(r.charged.usd), r.policy === 'utilization' ? 'what the groups used (utilization: holders pay no idle)' : 'what the groups carry, idle included'));
  else cards.push(card('cost', 'Used', usd(r.used.usd), 'what the groups used'));
  if (ex.idle === 'separate') cards.push(card('idle', 'Idle (held, not used)', idle === null ? '—' : usd(idle), r.idle_uncharged && num(r.idle_uncharged.usd) > 0 ? `${usd(r.idle_uncharged.usd)} of it no holder pays` : 'its own line'));
  if (ex.idle === 'shared' && num(r.idle_uncharged?.usd) > 0) cards.push(card('idle', 'Idle nobody pays', usd(r.idle_uncharged.usd), `under ${r.policy}`));
  cards.push(card('unallocated', 'Unallocated', r.unallocated ? usd(r.unallocated.usd) : '—', 'GPUs nobody held'));
  cards.push(card('fleet', 'Fleet', usd(r.fleet.usd), r.reconciled === false ? 'does not reconcile' : 'what the GPUs cost'));
  el.replaceChildren(...cards);
}
