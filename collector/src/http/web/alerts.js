// The alerts page (#/alerts?state=firing|resolved&kind=budget|idle-gpu|anomaly): every alert that fired (GET
// /api/v1/alerts) — budget thresholds, GPUs held idle, spend anomalies — with its state, when it fired and
// resolved, why, what it is about (the GPU, node, workload, team, model or namespace linked to its page; an
// anomaly's workloads that moved most), and where each notification went (the notifier; delivered, pending, or
// retrying with its attempts and last error).

import { filterValue, getJSON, link, shortGpu, workloadLabel } from './api.js';
import { PAGE_SIZE, dataTable, show } from './table.js';
import { h } from './views.js';

const STATES = [['', 'All'], ['firing', 'Firing'], ['resolved', 'Resolved']];
const KINDS = [['', 'Every kind'], ['budget', 'Budget'], ['idle-gpu', 'Idle GPU'], ['anomaly', 'Spend anomaly']];

/** `state=` and `kind=` of the page's URL (`#/alerts?state=firing&kind=idle-gpu`). */
function pageFilter() {
  const q = location.hash.indexOf('?');
  const params = new URLSearchParams(q < 0 ? '' : location.hash.slice(q + 1));
  const pick = (name, list) => { const v = params.get(name); return list.some(([k]) => k && k === v) ? v : ''; };
  return { state: pick('state', STATES), kind: pick('kind', KINDS) };
}

// Labels that only repeat the kind, the rule or the subject are left out of the row.
const QUIET = new Set(['alertname', 'severity', 'rule', 'budget', 'pod', 'granularity']);

/** An alert's labels as text, with the things that have a page linked to it. */
function labelsCell(state, a) {
  const l = a.labels || {};
  const parts = [];
  const to = (view, id, text, extra = {}) => h('a', { href: link(state, view, id, extra), title: id }, text);
  for (const [k, v] of Object.entries(l)) {
    if (QUIET.has(k) || v === '') continue;
    if (k === 'gpu') parts.push(['GPU ', to('gpu', v, shortGpu(v))]);
    else if (k === 'node' && l.cluster) parts.push(['node ', to('node', `${l.cluster}/${v}`, v.split('.')[0])]);
    else if (k === 'workload') parts.push([to('workload', v, workloadLabel(v).title, l.team ? { team: l.team } : {})]);
    else if (k === 'workloads') parts.push(['moved most: ', v.split(',').flatMap((w, i) => [i ? ', ' : '', to('workload', w, workloadLabel(w).title)])]);
    else if (k === 'team') parts.push(['team ', to('team', v, v)]);
    else if (k === 'model') parts.push(['model ', to('model', v, v)]);
    else if (k === 'namespace') parts.push(['namespace ', to('explore', '', v, { by: 'workload', filter: `namespace=${filterValue(v)}` })]);
    else parts.push([`${k} ${v}`]);
  }
  return parts.flatMap((p, i) => (i ? [' · ', ...p] : p));
}

const time = (t) => (t ? h('time', { datetime: t }, t.replace('T', ' ').replace('Z', ' UTC')) : h('span.faint', '—'));

function duration(a) {
  const s = Math.max(0, ((a.resolved_at ? Date.parse(a.resolved_at) : Date.now()) - Date.parse(a.fired_at)) / 1000);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 2 * 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function notificationsCell(a) {
  if (!a.notifications.length) return h('span.faint', 'no notifier configured');
  return h('ul.sent', a.notifications.map((n) => {
    const tries = `${n.attempts} attempt${n.attempts === 1 ? '' : 's'}`;
    const detail = n.status === 'delivered' ? `delivered ${n.delivered_at}` : n.status === 'pending' ? 'not attempted yet' : `${tries}; last error: ${n.last_error}; next attempt ${n.next_attempt_at}`;
    return h('li', { 'data-notifier': n.notifier, 'data-event': n.event, 'data-status': n.status, title: detail },
      h('b', n.notifier), ` ${n.event}: `, h(`span.sent-${n.status}`, n.status), n.status === 'delivered' ? '' : ` (${tries})`);
  }));
}

export function alerts(main, ctx) {
  const { state } = ctx;
  const { state: filter, kind } = pageFilter();
  const go = (changes) => { location.hash = link(state, 'alerts', '', { state: filter || null, kind: kind || null, ...changes }); };
  const body = h('div.body.loading');
  const sub = h('span.sub', '');
  const seg = h('div.seg', { role: 'group', 'aria-label': 'Alert state' }, STATES.map(([v, text]) => h('button', {
    type: 'button', 'data-state': v || 'all', 'aria-pressed': String(filter === v),
    onclick: () => go({ state: v || null }),
  }, text)));
  const kinds = h('div.seg', { role: 'group', 'aria-label': 'Alert kind' }, KINDS.map(([v, text]) => h('button', {
    type: 'button', 'data-kind': v || 'all', 'aria-pressed': String(kind === v),
    onclick: () => go({ kind: v || null }),
  }, text)));
  const p = { el: h('section.panel.span-12', { 'data-panel': 'alerts' }, h('header', h('h2', 'Alerts'), sub, h('div.tools', kinds, seg)), body), body };
  main.append(p.el);
  const table = dataTable({
    name: 'alerts', sort: 'fired', totals: false, pageSize: state.rows ?? PAGE_SIZE,
    onPageSize: (n) => go({ rows: n === PAGE_SIZE ? null : n }),
    columns: [
      { key: 'state', title: 'state', value: (a) => a.state, cell: (a) => h(`span.chip${a.state === 'firing' ? '.alarm' : ''}`, { 'data-alert': a.id, 'data-state': a.state }, a.state === 'firing' ? '● firing' : 'resolved') },
      { key: 'alert', title: 'alert', value: (a) => `${a.kind} ${a.subject}`, cell: (a) => h('div.stack', h('span', h('span.kind', a.kind), ' ', h('b', a.subject)),
        h('span.s', labelsCell(state, a))) },
      { key: 'why', title: 'why', value: (a) => a.resolution || a.summary, cell: (a) => h('div.stack', h('span', a.summary), a.resolution ? h('span.s', `resolved: ${a.resolution}`) : null), secondary: true },
      { key: 'fired', title: 'fired', value: (a) => Date.parse(a.fired_at), cell: (a) => time(a.fired_at) },
      { key: 'resolved', title: 'resolved', value: (a) => (a.resolved_at ? Date.parse(a.resolved_at) : Number.MAX_SAFE_INTEGER), cell: (a) => time(a.resolved_at) },
      { key: 'duration', title: 'for', num: true, value: (a) => (a.resolved_at ? Date.parse(a.resolved_at) : Date.now()) - Date.parse(a.fired_at), cell: duration, secondary: true },
      { key: 'sent', title: 'sent to', value: (a) => a.notifications.length, cell: notificationsCell },
    ],
  });
  ctx.load(p, async () => {
    const r = await getJSON('alerts', { state: filter, kind, limit: 1000 }, { signal: ctx.signal });
    const kindText = kind ? `${KINDS.find(([k]) => k === kind)[1].toLowerCase()} ` : '';
    sub.textContent = `${r.alerts.length} ${kindText}${filter || 'fired'} · ${r.firing} firing now`;
    if (!r.alerts.length) {
      p.body.replaceChildren(h('div.empty', filter || kind ? `No ${filter} ${kindText}alerts.`.replace('  ', ' ')
        : 'No alert has fired. Budget thresholds, GPUs held idle past an [[idle_gpu]] rule and spend outside an [[anomaly]] rule\'s band appear here (docs/budgets.md).'));
      return;
    }
    show(p.body, table.el);
    table.set(r.alerts);
  });
}
