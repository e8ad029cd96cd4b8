// Browser test of the dashboard's budgets and alerts pages (#/budgets, #/alerts), in Debian's Chromium
// driven by npm playwright-core. Run by tests/tests/browser_alerts.rs against a `gpucost-collector demo`
// whose budgets have fired (and one resolved); by hand:
//
//   GPUCOST_URL=http://127.0.0.1:8080 node tests/browser/alerts.test.mjs
//
// Environment as tests/browser/dashboard.test.mjs. Every figure checked is compared with the API's JSON.

import { join } from 'node:path';

import { artifacts, base, check, checks, deadline, launch, t0, watchedPage, headerReady } from './harness.mjs';

deadline('the browser test', 110_000);
const api = async (path) => (await fetch(`${base}/api/v1/${path}`)).json();

const browser = await launch();
const problems = [];
let failed = null;
try {
  const { context, page } = await watchedPage(browser, problems);

  // ---- the header links to both pages ----
  await page.goto(`${base}/`);
  await headerReady(page);
  await page.click('#nav-alerts');
  await page.waitForFunction(() => location.hash.startsWith('#/alerts'));
  check(true, 'the header links to the alerts page');

  // ---- alerts: every alert the API lists, with its state, times and notifications ----
  await page.goto(`${base}/#/alerts/?rows=100`);
  await page.waitForSelector('[data-panel="alerts"] tbody [data-alert]');
  const want = (await api('alerts?limit=1000')).alerts;
  const shown = await page.$$eval('[data-panel="alerts"] tbody tr', (trs) => trs.map((tr) => {
    const chip = tr.querySelector('[data-alert]');
    return {
      id: Number(chip.dataset.alert),
      state: chip.dataset.state,
      text: tr.textContent,
      fired: tr.querySelector('td[data-col="fired"] time')?.getAttribute('datetime') ?? null,
      resolved: tr.querySelector('td[data-col="resolved"] time')?.getAttribute('datetime') ?? null,
      sent: [...tr.querySelectorAll('li[data-notifier]')].map((li) => `${li.dataset.notifier}/${li.dataset.event}/${li.dataset.status}`),
    };
  }));
  check(shown.length === want.length && want.length >= 2, `alerts page: ${shown.length} rows, the API lists ${want.length}`);
  for (const a of want) {
    const row = shown.find((r) => r.id === a.id);
    check(row && row.state === a.state && row.fired === a.fired_at && row.resolved === a.resolved_at && row.text.includes(a.subject),
      `alert ${a.id} (${a.subject} ${a.labels.threshold}): ${a.state}, fired ${a.fired_at}, resolved ${a.resolved_at} as in the API`);
    const sent = a.notifications.map((n) => `${n.notifier}/${n.event}/${n.status}`);
    check(JSON.stringify(row.sent) === JSON.stringify(sent), `alert ${a.id} sent to ${sent.join(', ') || 'nobody'}: page ${row.sent.join(', ')}`);
  }
  const firing = want.find((a) => a.subject === 'page-firing');
  const resolved = want.find((a) => a.subject === 'page-resolved');
  check(firing?.state === 'firing' && resolved?.state === 'resolved', 'the budget made to fire fires; the one raised after is resolved');
  const fRow = shown.find((r) => r.id === firing.id);
  check(fRow.sent.includes('webhook/firing/delivered') && fRow.sent.includes('slack/firing/retrying'),
    `the firing alert: delivered to the webhook, retrying to Slack (${fRow.sent.join(', ')})`);
  const rRow = shown.find((r) => r.id === resolved.id);
  check(rRow.sent.filter((s) => s.startsWith('webhook/') && s.endsWith('/delivered')).length === 2 && rRow.sent.includes('webhook/resolved/delivered'),
    `the resolved alert: its firing and its resolution delivered to the webhook (${rRow.sent.join(', ')})`);
  await page.screenshot({ path: join(artifacts, 'alerts.png'), fullPage: true });

  // the state filter: only firing ones
  await page.click('[data-panel="alerts"] button[data-state="firing"]');
  await page.waitForFunction(() => location.hash.includes('state=firing'));
  await page.waitForFunction(() => [...document.querySelectorAll('[data-panel="alerts"] tbody [data-alert]')].every((c) => c.dataset.state === 'firing'));
  const firingIds = await page.$$eval('[data-panel="alerts"] tbody [data-alert]', (cs) => cs.map((c) => Number(c.dataset.alert)).sort((x, y) => x - y));
  const apiFiring = (await api('alerts?state=firing&limit=1000')).alerts.map((a) => a.id).sort((x, y) => x - y);
  check(JSON.stringify(firingIds) === JSON.stringify(apiFiring) && !firingIds.includes(resolved.id),
    `"Firing" shows the ${apiFiring.length} firing alerts of GET /api/v1/alerts?state=firing, not the resolved one`);
  await page.screenshot({ path: join(artifacts, 'alerts-firing.png'), fullPage: true });
  // the kind filter, beside the state filter: each kind's rows are the API's for that kind and state
  for (const kind of ['budget', 'idle-gpu', 'anomaly']) {
    await page.click(`[data-panel="alerts"] button[data-kind="${kind}"]`);
    await page.waitForFunction((k) => location.hash.includes(`kind=${k}`) && location.hash.includes('state=firing'), kind);
    const apiIds = (await api(`alerts?state=firing&kind=${kind}&limit=1000`)).alerts.map((a) => a.id).sort((x, y) => x - y);
    await page.waitForFunction((n) => {
      const b = document.querySelector('[data-panel="alerts"] .body');
      return b && !b.classList.contains('loading') && (n === 0 ? !!b.querySelector('.empty') : b.querySelectorAll('tbody [data-alert]').length === n);
    }, apiIds.length);
    const ids = await page.$$eval('[data-panel="alerts"] tbody [data-alert]', (cs) => cs.map((c) => Number(c.dataset.alert)).sort((x, y) => x - y));
    check(JSON.stringify(ids) === JSON.stringify(apiIds), `kind ${kind}: the page shows the ${apiIds.length} firing ${kind} alerts of the API`);
  }
  await page.click('[data-panel="alerts"] button[data-kind="all"]');
  await page.waitForFunction(() => !location.hash.includes('kind='));

  // ---- budgets: every budget, its figures, and a burn-down with the forecast ----
  await headerReady(page);
  await page.click('#nav-budgets');
  await page.waitForFunction(() => location.hash.startsWith('#/budgets'));
  await page.waitForSelector('[data-panel="budgets-table"] tbody [data-budget]');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-panel="burn-downs"] .budget .chart')].every((c) => c.dataset.spent !== undefined && c.querySelector('canvas')));
  const status = (await api('budgets/status')).budgets;
  const rows = await page.$$eval('[data-panel="budgets-table"] tbody tr', (trs) => trs.map((tr) => ({
    name: tr.querySelector('[data-budget]').dataset.budget,
    alarms: [...tr.querySelectorAll('[data-threshold]')].map((c) => `${c.dataset.threshold}:${c.dataset.state}`),
  })));
  const names = (xs) => xs.slice().sort().join(', ');
  check(names(rows.map((r) => r.name)) === names(status.map((b) => b.budget)) && status.length >= 7,
    `budgets table: ${rows.length} budgets, as the status API (${names(status.map((b) => b.budget))})`);
  for (const b of status) {
    const row = rows.find((r) => r.name === b.budget);
    const th = b.thresholds.map((t) => `${t.id}:${t.state}`);
    check(JSON.stringify(row.alarms) === JSON.stringify(th), `budget ${b.budget}: thresholds ${th.join(' ')}`);
  }
  const charts = await page.$$eval('[data-panel="burn-downs"] .budget', (cards) => cards.map((c) => ({
    name: c.dataset.budget, ...c.querySelector('.chart').dataset, series: c.querySelector('.chart')._chart?.u.series.map((s) => s.label),
  })));
  check(names(charts.map((c) => c.name)) === names(status.map((b) => b.budget)), `a burn-down for each of the ${charts.length} budgets`);
  for (const b of status) {
    const c = charts.find((x) => x.name === b.budget);
    const near = (x, y) => Math.abs(Number(x) - Number(y)) <= Math.max(0.02, 0.02 * Math.abs(Number(y)));
    check(near(c.limit, b.limit_usd) && near(c.spent, b.spend_usd) && near(c.forecast, b.forecast_usd),
      `burn-down ${b.budget}: spent ${c.spent} of ${c.limit}, forecast ${c.forecast} to ${b.period_end} (API: ${b.spend_usd}, ${b.limit_usd}, ${b.forecast_usd})`);
  }
  await page.screenshot({ path: join(artifacts, 'budgets.png'), fullPage: true });

  // ---- a phone: the alerts page still lists them ----
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/#/alerts/?rows=100`);
  await page.waitForSelector('[data-panel="alerts"] tbody [data-alert]');
  const phoneRows = await page.$$eval('[data-panel="alerts"] tbody [data-alert]', (cs) => cs.length);
  check(phoneRows === want.length, `at 390 px the alerts page lists the ${want.length} alerts`);
  await page.screenshot({ path: join(artifacts, 'alerts-phone.png'), fullPage: true });

  check(problems.length === 0, `no console errors, page errors or failed requests${problems.length ? `:\n  ${problems.join('\n  ')}` : ''}`);
  await context.close();
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
console.log(checks.join('\n'));
console.log(`screenshots in ${artifacts}; total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
if (failed) {
  if (problems.length) console.error(`browser problems:\n  ${problems.join('\n  ')}`);
  console.error(`FAIL: ${failed.stack || failed}`);
  process.exit(1);
}
console.log('PASS');
