// The budgets page (#/budgets): every budget in a sortable table (scope, period, spent, limit, forecast and
// each threshold's state, from GET /api/v1/budgets/status and /api/v1/budgets), and a burn-down per budget:
// the spend accumulated day by day over its period, the forecast from now to the period's end (the status
// API's figure, drawn as a straight line) and the limit.

import { DAY, HOUR, filterOf, getJSON, iso, link, num, pct, usd } from './api.js';
import { cssVar, lines } from './charts.js';
import { PAGE_SIZE, dataTable, show } from './table.js';
import { h } from './views.js';

function panel(span, id, title, sub = '') {
  const body = h('div.body.loading');
  const el = h(`section.panel.span-${span}`, { 'data-panel': id }, h('header', h('h2', title), h('span.sub', sub)), body);
  return { el, body };
}

export const scopeFilter = (scope) => (!scope ? '' : scope.filter || filterOf(scope));
export const scopeText = (scope) => Object.entries(scope || {}).map(([k, v]) => `${k} ${v}`).join(', ');

const thresholdChips = (b) => h('div.chips', (b.thresholds || []).map((t) => h(`span.chip${t.state === 'ALARM' ? '.alarm' : ''}`,
  { 'data-threshold': t.id, 'data-state': t.state, title: `${t.type} ${t.percent}%: ${t.state}` }, `${t.id} ${t.state === 'ALARM' ? '● ALARM' : 'ok'}`)));

export function budgets(main, ctx) {
  const { state } = ctx;
  const pTable = panel(12, 'budgets-table', 'Budgets', 'spend in the current period, the forecast to its end, and each threshold');
  const pCharts = panel(12, 'burn-downs', 'Burn-down', 'spend accumulated over the period · forecast to its end · limit');
  main.append(pTable.el, pCharts.el);
  const money = (key, title, field) => ({ key, title, num: true, money: true, value: (x) => num(x[field]), cell: (x) => usd(x[field]) });
  const table = dataTable({
    name: 'budgets', sort: 'forecast_pct', totals: false, pageSize: state.rows ?? PAGE_SIZE,
    onPageSize: (n) => { location.hash = link(state, 'budgets', '', { rows: n === PAGE_SIZE ? null : n }); },
    columns: [
      { key: 'budget', title: 'budget', value: (x) => x.budget, cell: (x) => h('div.stack', { 'data-budget': x.budget }, h('b', x.budget), h('span.s', scopeText(x.scope))) },
      { key: 'period', title: 'period', value: (x) => x.period, cell: (x) => h('span', { title: `${x.period_start} – ${x.period_end}` }, x.period), secondary: true },
      money('spend', 'spent', 'spend_usd'),
      money('limit', 'limit', 'limit_usd'),
      money('forecast', 'forecast', 'forecast_usd'),
      { key: 'spend_pct', title: 'spent %', num: true, value: (x) => num(x.spend_pct), cell: (x) => pct(x.spend_pct, 1) },
      { key: 'forecast_pct', title: 'forecast %', num: true, value: (x) => num(x.forecast_pct), cell: (x) => h(num(x.forecast_pct) > 100 ? 'b.bad' : 'span', pct(x.forecast_pct, 1)) },
      { key: 'thresholds', title: 'thresholds', value: (x) => (x.thresholds || []).filter((t) => t.state === 'ALARM').length, cell: thresholdChips },
      { key: 'source', title: 'source', value: (x) => x.source, cell: (x) => x.source, secondary: true },
    ],
  });
  ctx.load(pTable, async () => {
    const [status, list] = await Promise.all([
      getJSON('budgets/status', {}, { signal: ctx.signal }),
      getJSON('budgets', {}, { signal: ctx.signal }),
    ]);
    const spec = new Map((list.budgets || []).map((b) => [b.name, b]));
    const rows = (status.budgets || []).map((b) => ({ ...b, source: spec.get(b.budget)?.source ?? '', policy: spec.get(b.budget)?.policy }));
    if (!rows.length) {
      const none = h('div.empty', 'No budgets: PUT /api/v1/budgets/<name> or --budgets (docs/budgets.md).');
      pTable.body.replaceChildren(none);
      pCharts.body.replaceChildren(none.cloneNode(true));
      pCharts.body.classList.remove('loading');
      return;
    }
    show(pTable.body, table.set(rows));
    pTable.body.append(h('p.chart-notes', `Forecast: ${status.forecast_method}.`));
    const cards = rows.slice().sort((a, b) => num(b.forecast_pct) - num(a.forecast_pct) || a.budget.localeCompare(b.budget)).map((b) => {
      const chartEl = h('div.chart');
      const card = h('div.budget.burn', { 'data-budget': b.budget },
        h('div.hd', h('b', b.budget), h('span.faint', `${b.period} · ${scopeText(b.scope)}`)),
        h('div.figs',
          h('span', h('b', usd(b.spend_usd)), ` of ${usd(b.limit_usd)}`),
          h('span', h('b', pct(b.spend_pct, 1)), ' spent'),
          h('span', { class: num(b.forecast_pct) > 100 ? 'bad' : '' }, 'forecast ', h('b', usd(b.forecast_usd)), ` (${pct(b.forecast_pct)})`)),
        chartEl, thresholdChips(b));
      return { b, chartEl, card };
    });
    pCharts.body.replaceChildren(h('div.budgets.wide', cards.map((c) => c.card)));
    pCharts.body.classList.remove('loading');
    await Promise.all(cards.map(({ b, chartEl }) => burnDown(ctx, chartEl, b)));
  });
}

/** Spend accumulated day by day up to now, the forecast from now to the period's end, and the limit. */
async function burnDown(ctx, el, b) {
  const start = Date.parse(b.period_start) / 1000;
  const end = Date.parse(b.period_end) / 1000;
  const now = Math.min(Date.parse(b.at) / 1000, end);
  const limit = num(b.limit_usd);
  const to = Math.min(Math.ceil(now / HOUR) * HOUR, end);
  if (!(to > start)) return;
  const r = await getJSON('costs', { from: b.period_start, to: iso(to), group_by: 'day', filter: scopeFilter(b.scope), policy: b.policy }, { signal: ctx.signal });
  const perDay = new Map(r.rows.map((x) => [Date.parse(`${x.day}T00:00:00Z`) / 1000, num(x.total_usd)]));
  const xs = [start];
  const spent = [0];
  let cum = 0;
  for (let d = Math.floor(start / DAY) * DAY; d < now; d += DAY) {
    cum += perDay.get(d) || 0;
    const t = Math.min(d + DAY, now);
    if (t > xs[xs.length - 1]) { xs.push(t); spent.push(cum); }
  }
  // the last point is the status API's own figure for now
  spent[spent.length - 1] = num(b.spend_usd);
  const forecast = xs.map(() => null);
  forecast[forecast.length - 1] = num(b.spend_usd);
  for (let d = Math.floor(now / DAY) * DAY + DAY; d <= end; d += DAY) {
    xs.push(d);
    spent.push(null);
    forecast.push(num(b.spend_usd) + ((num(b.forecast_usd) - num(b.spend_usd)) * (d - now)) / (end - now));
  }
  const top = Math.max(limit, num(b.forecast_usd), cum);
  const chart = lines(el, {
    name: `budget-page:${b.budget}`, xs, range: [start, end], height: 170,
    yRange: () => [0, top * 1.08 || 1],
    timeFmt: (t) => `${new Date(t * 1000).toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    series: [
      { label: 'limit', color: cssVar('--bad'), values: xs.map(() => limit), width: 1, dash: [3, 4] },
      { label: 'forecast', color: cssVar('--warn'), values: forecast, width: 1.5, dash: [6, 4] },
      { label: 'spent', color: cssVar('--accent'), values: spent, width: 2, fill: cssVar('--accent-soft') },
    ],
  });
  // for the browser test: what was drawn
  el.dataset.spent = String(num(b.spend_usd));
  el.dataset.forecast = String(forecast[forecast.length - 1]);
  el.dataset.limit = String(limit);
  return chart;
}
