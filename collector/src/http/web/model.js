// A model's page (#/model/<name>): what serving it cost over the period, per version; the MLflow runs that
// trained it and what each cost; the idle share of both; its workloads; links into MLflow's UI when the
// collector knows it (--mlflow-ui-url). From GET /api/v1/models/<name> (the versions and runs) and the costs API
// (the charts and workloads). Training is GPU time of workloads with an MLflow run id; serving is the rest.

import { DAY, costSeries, filterOf, getJSON, gpuHours, iso, link, num, pct, timeWindow, usd, workloadLabel } from './api.js';
import { cssVar, lines } from './charts.js';
import { show } from './table.js';
import { barList, costOverTime, empty, h, hours, money, panel, periodLabel, summaryKpis, swatch, table } from './views.js';

/** A link into MLflow (a new tab), or `text` alone when the collector has no MLflow URL. */
const mlflowLink = (url, text, title) => (url ? h('a.ext', { href: url, target: '_blank', rel: 'noopener noreferrer', title: title || 'open in MLflow', 'data-mlflow': '' }, text) : text);

const versionName = (v) => (v === '' ? '(no version)' : `v${v}`);
const idleShare = (s) => (s.idle_pct === null || s.idle_pct === undefined ? '—' : pct(s.idle_pct, 1));
const days = (x) => (x.first_day ? (x.first_day === x.last_day ? x.first_day : `${x.first_day} – ${x.last_day}`) : '—');

export function model(main, ctx) {
  const { state } = ctx;
  const name = state.id ?? '';
  const win = timeWindow(state);
  const label = periodLabel(state, win);
  const scope = state.cluster ? { cluster: state.cluster } : {};
  const mlflowHead = h('span');
  main.append(h('div.title-row', h('h1', name), h('span.sub', `model · ${label}${state.cluster ? ` · ${state.cluster}` : ''}`), mlflowHead));
  const k = summaryKpis(main, [['cost', 'GPU cost'], ['serving', 'Serving'], ['training', 'Training'], ['idle', 'Idle share', 'warn'], ['held', 'GPU time held'], ['versions', 'Versions']]);
  const pServing = panel(8, 'model-serving', 'Serving cost over time', 'per version');
  const pSplit = panel(4, 'model-split', 'Serving and training', label);
  const pEff = panel(12, 'model-efficiency', 'Utilisation and power over time');
  const pVersions = panel(12, 'model-versions', 'Versions', `${label} · serving and the runs labelled with each`);
  const pRuns = panel(12, 'model-runs', 'Training runs', `${label} · workloads with an MLflow run id`);
  const pWork = panel(12, 'model-workloads', 'Workloads', label);
  main.append(pServing.el, pSplit.el, pEff.el, pVersions.el, pRuns.el, pWork.el);

  // serving: the model's GPU time without a run, stacked by version
  costOverTime(ctx, pServing, { win, dim: 'model_version', filter: filterOf({ model: name, run: '', ...scope }), name: 'model-serving', labelOf: versionName });
  efficiencyOverTime(ctx, pEff, { win, filter: filterOf({ model: name, ...scope }) });

  const versionsTable = table(ctx, 'model-versions', [
    { key: 'version', title: 'version', value: (v) => (v.version === '' ? -1 : Number(v.version) || v.version), cell: (v) => mlflowLink(v.mlflow_url, versionName(v.version), `version ${v.version} in MLflow`) },
    { key: 'serving-h', title: 'serving GPU-h', num: true, secondary: true, value: (v) => num(v.serving.held_gpu_seconds), cell: (v) => gpuHours(v.serving.held_gpu_seconds) },
    { key: 'serving-idle', title: 'idle share', num: true, secondary: true, value: (v) => num(v.serving.idle_pct), cell: (v) => idleShare(v.serving) },
    { key: 'serving', title: 'serving', num: true, money: true, value: (v) => num(v.serving.total_usd), cell: (v) => usd(v.serving.total_usd), total: (vs) => usd(vs.reduce((a, v) => a + num(v.serving.total_usd), 0)) },
    { key: 'training', title: 'training', num: true, money: true, value: (v) => num(v.training.total_usd), cell: (v) => usd(v.training.total_usd), total: (vs) => usd(vs.reduce((a, v) => a + num(v.training.total_usd), 0)) },
    { key: 'runs', title: 'runs', num: true, secondary: true, value: (v) => v.runs.length, cell: (v) => String(v.runs.length) },
    { key: 'days', title: 'seen', secondary: true, value: (v) => v.first_day, cell: days },
  ], { sort: 'version', label: (vs) => `Total · ${vs.length} ${vs.length === 1 ? 'version' : 'versions'}` });

  const runsTable = table(ctx, 'model-runs', [
    { key: 'run', title: 'run', value: (r) => r.run, cell: (r) => h('div.stack', mlflowLink(r.mlflow_url, h('span.mono', r.run.length > 16 ? `${r.run.slice(0, 12)}…` : r.run), `run ${r.run} in MLflow`), h('span.s.faint', r.experiment ? `experiment ${r.experiment}` : 'no experiment id')) },
    { key: 'versions', title: 'versions', secondary: true, value: (r) => r.versions.join(','), cell: (r) => r.versions.map(versionName).join(', ') },
    { key: 'held', title: 'GPU-h held', num: true, value: (r) => num(r.cost.held_gpu_seconds), cell: (r) => gpuHours(r.cost.held_gpu_seconds), total: (rs) => gpuHours(rs.reduce((a, r) => a + num(r.cost.held_gpu_seconds), 0)) },
    { key: 'idle', title: 'idle', num: true, money: true, value: (r) => num(r.cost.idle_usd), cell: (r) => usd(r.cost.idle_usd), total: (rs) => usd(rs.reduce((a, r) => a + num(r.cost.idle_usd), 0)) },
    { key: 'total', title: 'training cost', num: true, money: true, value: (r) => num(r.cost.total_usd), cell: (r) => h('b', usd(r.cost.total_usd)), total: (rs) => h('b', usd(rs.reduce((a, r) => a + num(r.cost.total_usd), 0))) },
    { key: 'days', title: 'ran', secondary: true, value: (r) => r.first_day, cell: days },
  ], { sort: 'total', label: (rs) => `Total · ${rs.length} ${rs.length === 1 ? 'run' : 'runs'}` });

  ctx.load(pVersions, async () => {
    const m = await getJSON(`models/${encodeURIComponent(name)}`, { from: iso(win.from), to: iso(win.to), ...scope }, { signal: ctx.signal });
    mlflowHead.replaceChildren(m.mlflow_url ? mlflowLink(m.mlflow_url, 'open in MLflow ↗') : h('span.faint', { title: 'start the collector with --mlflow-ui-url (or --mlflow-url) to link models, versions and runs' }, 'no MLflow link'));
    k.cost.set(usd(m.total.total_usd), `${usd(m.total.idle_usd)} of it idle`);
    k.serving.set(usd(m.serving.total_usd), `idle ${idleShare(m.serving)} · ${gpuHours(m.serving.held_gpu_seconds)} GPU-h`);
    k.training.set(usd(m.training.total_usd), `${m.runs.length} ${m.runs.length === 1 ? 'run' : 'runs'} · idle ${idleShare(m.training)}`);
    k.idle.set(idleShare(m.total), 'of the cost: GPUs held, not used');
    k.held.set(gpuHours(m.total.held_gpu_seconds), `${gpuHours(m.total.used_gpu_seconds)} used`, 'GPU-h');
    k.versions.set(String(m.versions.filter((v) => v.version !== '').length), m.versions.length ? `newest ${versionName(m.versions[0].version)}` : 'none in this period');
    const accent = cssVar('--accent');
    const warn = cssVar('--warn');
    const item = (key, text, s) => ({
      key, label: [h('span', text)], value: num(s.total_usd), amount: usd(s.total_usd), note: `idle ${idleShare(s)}`,
      title: `used ${usd(s.used_usd)} · idle ${usd(s.idle_usd)} · ${gpuHours(s.held_gpu_seconds)} GPU-h held`,
      parts: [{ value: num(s.used_usd), color: accent }, { value: num(s.idle_usd), color: warn }],
    });
    pSplit.body.classList.remove('loading');
    pSplit.body.replaceChildren(num(m.total.total_usd) > 0
      ? h('div', barList([item('serving', 'serving', m.serving), item('training', 'training', m.training)]),
        h('div.legend-inline', { style: { marginTop: '12px' } }, h('span', swatch(accent), 'used'), h('span', swatch(warn), 'idle')))
      : empty('No GPU time for this model in this period.'));
    pRuns.body.classList.remove('loading');
    if (m.runs.length) { pRuns.body.classList.add('flush'); show(pRuns.body, runsTable.set(m.runs)); } else pRuns.body.replaceChildren(empty('No training run of this model in this period.'));
    if (!m.versions.length) { pVersions.body.replaceChildren(empty('This model used no GPU in this period.')); return; }
    pVersions.body.classList.add('flush');
    show(pVersions.body, versionsTable.set(m.versions));
  });

  const workTable = table(ctx, 'model-workloads', [
    { key: 'workload', title: 'workload', value: (x) => workloadLabel(x.workload).title, cell: (x) => h('div.stack', h('a', { href: link(state, 'workload', x.workload, { team: x.team }), title: x.workload }, workloadLabel(x.workload).title), h('span.s.faint', `${x.team} · ${x.run ? 'training' : 'serving'} · ${versionName(x.model_version)}`)) },
    hours('held', 'GPU-h held', 'held_gpu_seconds', { secondary: true }),
    money('idle', 'idle', 'idle_usd'),
    money('total', 'total', 'total_usd', { bold: true }),
  ], { sort: 'total', label: (xs) => `Total · ${xs.length} ${xs.length === 1 ? 'workload' : 'workloads'}` });
  ctx.load(pWork, async () => {
    const r = await getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: 'workload,team,model_version,run', filter: filterOf({ model: name, ...scope }) }, { signal: ctx.signal });
    if (!r.rows.length) { pWork.body.replaceChildren(empty('No workload ran this model in this period.')); return; }
    pWork.body.classList.add('flush');
    show(pWork.body, workTable.set(r.rows));
  });
}

/** Used ÷ held GPU time and power per GPU held, per bucket, serving and training apart (a bucket without GPU time has
 * no point). Memory and per-GPU detail are on each workload's page. */
function efficiencyOverTime(ctx, p, { win, filter }) {
  ctx.load(p, async () => {
    const buckets = await costSeries(win, ['run'], filter, { signal: ctx.signal });
    const ratio = (rows) => {
      const held = rows.reduce((a, r) => a + num(r.held_gpu_seconds), 0);
      return held > 0 ? (100 * rows.reduce((a, r) => a + num(r.used_gpu_seconds), 0)) / held : null;
    };
    // mean power per GPU held: its share of the GPUs' energy over the GPU time it held
    const watts = (rows) => {
      const held = rows.reduce((a, r) => a + num(r.held_gpu_seconds), 0);
      return held > 0 ? (rows.reduce((a, r) => a + num(r.energy_kwh), 0) * 3.6e6) / held : null;
    };
    const of = (f, served) => buckets.map((b) => f(b.rows.filter((r) => (r.run === '') === served)));
    const [serving, training] = [of(ratio, true), of(ratio, false)];
    if (serving.every((v) => v === null) && training.every((v) => v === null)) { p.body.replaceChildren(empty('No GPU time for this model in this period.')); return; }
    const util = h('div.chart');
    const power = h('div.chart');
    p.body.replaceChildren(h('div.history-grid', h('div', h('h3', 'GPU time used ÷ held'), util), h('div', h('h3', 'Power per GPU held'), power)));
    p.sub.textContent = `${win.step === DAY ? 'per day' : `per ${win.step / 3600} h`}, UTC`;
    const xs = buckets.map((b) => b.t);
    const two = (s, t) => [
      { label: 'serving', color: cssVar('--accent'), values: s, points: true },
      { label: 'training', color: cssVar('--warn'), values: t, dash: [5, 3], points: true },
    ];
    lines(util, { name: 'model-efficiency', xs, range: [win.from, win.to], height: 180, yRange: () => [0, 100], fmt: (v) => (v === null ? '—' : `${Math.round(v)}%`), series: two(serving, training) });
    lines(power, { name: 'model-power', xs, range: [win.from, win.to], height: 180, fmt: (v) => (v === null ? '—' : `${v < 10 ? v.toFixed(1) : Math.round(v)} W`), series: two(of(watts, true), of(watts, false)) });
  });
}
