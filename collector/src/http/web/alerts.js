// The alerts page (#/alerts?state=firing|resolved): every alert that fired (GET /api/v1/alerts) — budget
// alerts now, idle-GPU and anomaly alerts in the same list as they arrive — with its state, when it fired
// and resolved, why, and where each notification went (the notifier; delivered, pending, or retrying with
// its attempts and last error).

import { getJSON, link } from './api.js';
import { PAGE_SIZE, dataTable, show } from './table.js';
import { h } from './views.js';

const STATES = [['', 'All'], ['firing', 'Firing'], ['resolved', 'Resolved']];

/** `state=` of the page's URL (`#/alerts?state=firing`). */
function stateFilter() {
  const q = location.hash.indexOf('?');
  const s = new URLSearchParams(q < 0 ? '' : location.hash.slice(q + 1)).get('state');
  return STATES.some(([v]) => v && v === s) ? s : '';
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
  const filter = stateFilter();
  const body = h('div.body.loading');
  const sub = h('span.sub', '');
  const seg = h('div.seg', { role: 'group', 'aria-label': 'Alert state' }, STATES.map(([v, text]) => h('button', {
    type: 'button', 'data-state': v || 'all', 'aria-pressed': String(filter === v),
    onclick: () => { location.hash = link(state, 'alerts', '', { state: v || null }); },
  }, text)));
  const p = { el: h('section.panel.span-12', { 'data-panel': 'alerts' }, h('header', h('h2', 'Alerts'), sub, h('div.tools', seg)), body), body };
  main.append(p.el);
  const table = dataTable({
    name: 'alerts', sort: 'fired', totals: false, pageSize: state.rows ?? PAGE_SIZE,
    onPageSize: (n) => { location.hash = link(state, 'alerts', '', { rows: n === PAGE_SIZE ? null : n, state: filter || null }); },
    columns: [
      { key: 'state', title: 'state', value: (a) => a.state, cell: (a) => h(`span.chip${a.state === 'firing' ? '.alarm' : ''}`, { 'data-alert': a.id, 'data-state': a.state }, a.state === 'firing' ? '● firing' : 'resolved') },
      { key: 'alert', title: 'alert', value: (a) => `${a.kind} ${a.subject}`, cell: (a) => h('div.stack', h('span', h('span.kind', a.kind), ' ', h('b', a.subject)),
        h('span.s', Object.entries(a.labels).filter(([k]) => k !== 'budget').map(([k, v]) => `${k} ${v}`).join(' · '))) },
      { key: 'why', title: 'why', value: (a) => a.resolution || a.summary, cell: (a) => h('div.stack', h('span', a.summary), a.resolution ? h('span.s', `resolved: ${a.resolution}`) : null), secondary: true },
      { key: 'fired', title: 'fired', value: (a) => Date.parse(a.fired_at), cell: (a) => time(a.fired_at) },
      { key: 'resolved', title: 'resolved', value: (a) => (a.resolved_at ? Date.parse(a.resolved_at) : Number.MAX_SAFE_INTEGER), cell: (a) => time(a.resolved_at) },
      { key: 'duration', title: 'for', num: true, value: (a) => (a.resolved_at ? Date.parse(a.resolved_at) : Date.now()) - Date.parse(a.fired_at), cell: duration, secondary: true },
      { key: 'sent', title: 'sent to', value: (a) => a.notifications.length, cell: notificationsCell },
    ],
  });
  ctx.load(p, async () => {
    const r = await getJSON('alerts', { state: filter, limit: 1000 }, { signal: ctx.signal });
    sub.textContent = `${r.alerts.length} ${filter || 'fired'} · ${r.firing} firing now`;
    if (!r.alerts.length) {
      p.body.replaceChildren(h('div.empty', filter ? `No ${filter} alerts.` : 'No alert has fired. Budget alerts appear here when a threshold is crossed (docs/budgets.md).'));
      return;
    }
    show(p.body, table.el);
    table.set(r.alerts);
  });
}
