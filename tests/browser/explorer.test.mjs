// Browser test of the allocation explorer (#/explore/), in Debian's Chromium driven by npm playwright-core.
// Run by tests/tests/browser_explorer.rs against a running `gpucost-collector demo`; by hand:
//
//   GPUCOST_URL=http://127.0.0.1:8080 node tests/browser/explorer.test.mjs
//
// Environment as tests/browser/dashboard.test.mjs (GPUCOST_URL, GPUCOST_PLAYWRIGHT_DIR, GPUCOST_CHROMIUM,
// GPUCOST_BROWSER_ARTIFACTS, GPUCOST_BROWSER_TIMEOUT_MS). It works on yesterday (UTC), a finished day of the
// demo's backfill, so the figures hold still while it compares the view with the API and the CSV.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { artifacts, base, check, checks, deadline, launch, step, steps, t0, headerReady } from './harness.mjs';

deadline('the explorer test', 150_000);

const DAY_MS = 86_400_000;
const yesterday = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS - DAY_MS).toISOString().slice(0, 10);
const today = new Date(Date.parse(`${yesterday}T00:00:00Z`) + DAY_MS).toISOString().slice(0, 10);

/** "$12,345" / "$1.23" / "$0.0012" / "1,234.5" → [value, the half-unit of its last shown digit]. */
function parseShown(text) {
  const t = text.replace(/[$,\s]/g, '');
  const dec = t.includes('.') ? t.split('.')[1].length : 0;
  return [Number(t), 0.5 * 10 ** -dec + 1e-9];
}
/** RFC 4180 rows (no line breaks inside fields, as the collector writes them). */
function csvRows(text) {
  return text.split(/\r?\n/).filter((l) => l.length).map((line) => {
    const out = []; let cur = ''; let q = false;
    for (let i = 0; i < line.length; i += 1) {
      const c = line[i];
      if (c === '"' && q && line[i + 1] === '"') { cur += '"'; i += 1; } else if (c === '"') q = !q;
      else if (c === ',' && !q) { out.push(cur); cur = ''; } else cur += c;
    }
    out.push(cur);
    return out;
  });
}

const browser = await launch();
const problems = [];
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, colorScheme: 'light', deviceScaleFactor: 1, acceptDownloads: true });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  const api = async (params) => (await page.request.get(`${base}/api/v1/costs?${new URLSearchParams(params)}`)).json();

  /** Waits until the table shows the answer to `want` (group_by, filter, policy), and returns its rows. */
  async function table(want) {
    await page.waitForFunction((w) => {
      const p = document.querySelector('[data-panel="explorer-table"]');
      if (!p || !p.dataset.query || !p.querySelector('tbody tr')) return false;
      const q = new URLSearchParams(p.dataset.query);
      return Object.entries(w).every(([k, v]) => (q.get(k) || '') === v);
    }, want);
    return page.$$eval('[data-panel="explorer-table"] tbody tr', (trs) => trs.map((tr) => {
      const group = [...tr.querySelectorAll('td[data-col^="g:"]')].map((td) => [td.dataset.col.slice(2), td.querySelector('[data-group]').getAttribute('data-group')]);
      const cell = (k) => tr.querySelector(`td[data-col="${k}"]`)?.textContent ?? '';
      return { group: Object.fromEntries(group), key: group.map(([, v]) => v).join('\u0001'), used: cell('used'), idle: cell('idle'), total: cell('total'), held: cell('held') };
    }));
  }
  const byKey = (rows, dims) => new Map(rows.map((r) => [dims.map((d) => r[d]).join('\u0001'), r]));
  const near = (shown, value) => { const [v, tol] = parseShown(shown); return Math.abs(v - Number(value)) <= tol; };
  /** Every row of the table is the API's row for the same group, and the other way round. */
  function sameAsApi(rows, json, what) {
    const api = byKey(json.rows, json.group_by);
    check(rows.length === json.rows.length, `${what}: ${rows.length} table rows, ${json.rows.length} in the costs API's JSON`);
    const off = rows.filter((r) => !api.has(r.key) || !near(r.total, api.get(r.key).total_usd) || !near(r.idle, api.get(r.key).idle_usd));
    check(off.length === 0, `${what}: every row's total and idle are the API's (${off.length} differ${off.length ? `: ${JSON.stringify(off[0])}` : ''})`);
  }
  const window = { from: `${yesterday}T00:00:00Z`, to: `${today}T00:00:00Z` };

  // ---- reachable from the nav; by team by default ----
  await page.goto(`${base}/#/?period=7d&rows=1000`);
  await headerReady(page);
  await page.click('#nav-explore');
  await page.waitForFunction(() => location.hash.startsWith('#/explore/'));
  const byTeam7d = await table({ group_by: 'team' });
  check(byTeam7d.length > 1, `the nav's Explorer link opens the explorer by team: ${byTeam7d.length} teams`);
  step('explorer opened');

  // ---- custom date range into the URL ----
  await page.fill('#ex-from', yesterday);
  await page.fill('#ex-to', yesterday);
  await page.click('#ex-dates button[type=submit]');
  await page.waitForFunction((d) => location.hash.includes(`from=${d[0]}`) && location.hash.includes(`to=${d[1]}`), [yesterday, today]);
  const byTeam = await table({ group_by: 'team', ...window });
  check(true, `custom range ${yesterday} (inclusive) is in the URL: ${await page.evaluate(() => location.hash)}`);
  sameAsApi(byTeam, await api({ ...window, group_by: 'team' }), 'by team, yesterday');

  // ---- department → team ----
  await page.selectOption('#ex-by1', 'department');
  const byDept = await table({ group_by: 'department', ...window });
  check(byDept.every((r) => Object.keys(r.group).join() === 'department') && byDept.map((r) => r.key).sort().join() !== byTeam.map((r) => r.key).sort().join(),
    `grouping by department changes the rows: ${byTeam.length} teams → ${byDept.length} departments (${byDept.map((r) => r.key).join(', ')})`);
  await page.selectOption('#ex-by2', 'team');
  const deptTeam = await table({ group_by: 'department,team', ...window });
  check(await page.evaluate(() => location.hash.includes('by=department%2Cteam') || location.hash.includes('by=department,team')), 'by=department,team is in the URL');
  check(deptTeam.every((r) => 'department' in r.group && 'team' in r.group), 'every row names its department and team');
  sameAsApi(deptTeam, await api({ ...window, group_by: 'department,team' }), 'department → team');
  const depts = await api({ ...window, group_by: 'department' });
  // the chart loads beside the table: wait for its legend
  await page.waitForSelector('[data-panel="explorer-chart"] .chart-legend [data-key]');
  const legend = await page.$$eval('[data-panel="explorer-chart"] .chart-legend [data-key]', (es) => es.map((e) => [e.dataset.key, Number(e.dataset.total)]));
  for (const d of depts.rows) {
    const rows = deptTeam.filter((r) => r.group.department === d.department);
    const sum = rows.reduce((a, r) => a + parseShown(r.total)[0], 0);
    const tol = rows.reduce((a, r) => a + parseShown(r.total)[1], 0.001);
    check(rows.length > 0 && Math.abs(sum - Number(d.total_usd)) <= tol, `department ${d.department}: its ${rows.length} team rows add up to ${sum.toFixed(2)}, its total ${d.total_usd}`);
    const lg = legend.find(([k]) => k === d.department);
    if (lg) check(Math.abs(lg[1] - Number(d.total_usd)) < 0.01, `department ${d.department}: the chart's legend says ${lg[1].toFixed(2)}`);
  }
  check(legend.length > 0, `the chart's legend lists ${legend.length} departments`);
  step('grouped');

  // ---- daily vs cumulative ----
  const chartData = () => page.evaluate(() => { const u = window.gpucost.charts.get('explorer'); return { mode: u.gpucost?.mode, data: u.data.map((s) => Array.from(s)) }; });
  await page.waitForFunction(() => window.gpucost?.charts?.get('explorer')?.gpucost?.mode === 'daily');
  const daily = await chartData();
  await page.click('[data-seg="chart"] button[data-value="cumulative"]');
  await page.waitForFunction(() => window.gpucost?.charts?.get('explorer')?.gpucost?.mode === 'cumulative');
  const cumul = await chartData();
  // daily: stacked bars, the first series is the top of the stack (every group); cumulative: one line per group
  const perBucket = daily.data[1].map((v) => v ?? 0);
  const cumTotals = cumul.data[0].map((_, k) => cumul.data.slice(1).reduce((a, s) => a + (s[k] ?? 0), 0));
  let running = 0; let worst = 0;
  perBucket.forEach((v, k) => { running += v; worst = Math.max(worst, Math.abs(running - cumTotals[k])); });
  check(perBucket.length > 2 && perBucket.length === cumTotals.length, `charts over ${perBucket.length} buckets, both modes`);
  check(worst < 0.01, `the cumulative chart is the running sum of the per-bucket chart (largest gap $${worst.toFixed(4)})`);
  check(cumTotals.every((v, k) => k === 0 || v >= cumTotals[k - 1] - 1e-9) && cumTotals[cumTotals.length - 1] > Math.max(...perBucket), 'cumulative never falls and ends above any single bucket');
  const notesText = await page.$eval('[data-panel="explorer-chart"] .chart-notes', (e) => e.textContent);
  check(notesText.length > 0 && !notesText.includes('null'), `the chart's notes: ${notesText}`);
  await page.click('[data-seg="chart"] button[data-value="daily"]');
  await page.waitForFunction(() => window.gpucost?.charts?.get('explorer')?.gpucost?.mode === 'daily');
  step('charts');

  // ---- a filter narrows the rows ----
  const dept = depts.rows.slice().sort((a, b) => Number(b.total_usd) - Number(a.total_usd))[0].department;
  await page.selectOption('#ex-fdim', 'department');
  await page.fill('#ex-fvalue', dept);
  await page.click('#ex-filter button[type=submit]');
  const filtered = await table({ group_by: 'department,team', filter: `department=${dept}`, ...window });
  check(filtered.length < deptTeam.length && filtered.every((r) => r.group.department === dept), `filter department=${dept}: ${deptTeam.length} → ${filtered.length} rows, all of ${dept}`);
  sameAsApi(filtered, await api({ ...window, group_by: 'department,team', filter: `department=${dept}` }), `filtered to ${dept}`);
  step('filtered');

  // ---- the policy switch ----
  const hybrid = await api({ ...window, group_by: 'department,team', filter: `department=${dept}` });
  await page.click('[data-seg="policy"] button[data-value="utilization"]');
  const util = await table({ group_by: 'department,team', filter: `department=${dept}`, policy: 'utilization', ...window });
  const utilApi = await api({ ...window, group_by: 'department,team', filter: `department=${dept}`, policy: 'utilization' });
  sameAsApi(util, utilApi, 'under utilization');
  const hy = byKey(hybrid.rows, hybrid.group_by);
  const changed = utilApi.rows.filter((r) => hy.get(utilApi.group_by.map((d) => r[d]).join('\u0001'))?.total_usd !== r.total_usd).length;
  const filteredMap = new Map(filtered.map((r) => [r.key, r.total]));
  const shownChanged = util.filter((r) => filteredMap.get(r.key) !== r.total).length;
  check(changed > 0 && shownChanged > 0, `policy hybrid → utilization: the API changes ${changed} rows' totals, the table ${shownChanged}`);
  step('policy');

  // ---- the CSV is the table ----
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#explorer-csv')]);
  const csv = csvRows(readFileSync(await download.path(), 'utf8'));
  const head = csv[0];
  const csvMap = new Map(csv.slice(1).map((f) => [['department', 'team'].map((d) => f[head.indexOf(d)]).join('\u0001'), Object.fromEntries(head.map((h, i) => [h, f[i]]))]));
  check(head.slice(0, 2).join(',') === 'department,team' && csv.length - 1 === util.length, `CSV ${download.suggestedFilename()}: ${csv.length - 1} rows, the table ${util.length}; columns ${head.join(', ')}`);
  const bad = util.filter((r) => {
    const c = csvMap.get(r.key);
    return !c || !near(r.used, c.used_usd) || !near(r.idle, c.idle_usd) || !near(r.total, c.total_usd) || !near(r.held, Number(c.held_gpu_seconds) / 3600);
  });
  check(bad.length === 0, `every table row is a CSV row with the same used, idle, total and GPU-hours (${bad.length} differ${bad.length ? `: ${JSON.stringify(bad[0])}` : ''})`);
  const focus = await page.$eval('#explorer-focus', (a) => a.href);
  const focusResp = await page.request.get(focus);
  check(focusResp.ok() && (await focusResp.text()).split('\n').length > 1 && focus.includes(`from=${encodeURIComponent(window.from)}`), `FOCUS beside it, for the same period: ${focus.replace(base, '')}`);
  step('csv');

  // ---- the URL holds the view: reload, back and forward ----
  const url = page.url();
  await page.screenshot({ path: join(artifacts, 'explorer.png'), fullPage: true });
  await page.reload();
  const again = await table({ group_by: 'department,team', filter: `department=${dept}`, policy: 'utilization', ...window });
  const controls = await page.evaluate(() => ({
    by1: document.querySelector('#ex-by1').value, by2: document.querySelector('#ex-by2').value,
    from: document.querySelector('#ex-from').value, to: document.querySelector('#ex-to').value,
    policy: document.querySelector('[data-seg="policy"] [aria-pressed="true"]').dataset.value,
    chips: [...document.querySelectorAll('[data-filter]')].map((c) => c.dataset.filter),
  }));
  check(page.url() === url && JSON.stringify(again) === JSON.stringify(util), `reloading ${url.replace(base, '')} shows the same ${again.length} rows`);
  check(controls.by1 === 'department' && controls.by2 === 'team' && controls.from === yesterday && controls.to === yesterday
    && controls.policy === 'utilization' && controls.chips.join() === `department=${dept}`, `and the same controls: ${JSON.stringify(controls)}`);
  await page.goBack();
  const back = await table({ group_by: 'department,team', filter: `department=${dept}`, policy: '', ...window });
  check(JSON.stringify(back.map((r) => [r.key, r.total]).sort()) === JSON.stringify(filtered.map((r) => [r.key, r.total]).sort()), 'back: the hybrid view again');
  await page.goForward();
  await table({ group_by: 'department,team', filter: `department=${dept}`, policy: 'utilization', ...window });
  check(true, 'forward: utilization again');
  // a shared link in a fresh page opens the same view
  const other = await context.newPage();
  await other.goto(url);
  await other.waitForSelector('[data-panel="explorer-table"] tbody tr');
  const otherKeys = await other.$$eval('[data-panel="explorer-table"] tbody tr td[data-col="total"]', (tds) => tds.map((t) => t.textContent));
  check(JSON.stringify(otherKeys) === JSON.stringify(util.map((r) => r.total)), 'the link in a new tab shows the same table');
  await other.close();
  // a filter value with a comma travels escaped (`\,`) to the API and shows as written on its chip
  const comma = await context.newPage();
  await comma.goto(`${base}/#/explore/?by=team&filter=${encodeURIComponent('label:app.kubernetes.io/name=a\\,b')}`);
  await comma.waitForSelector('[data-panel="explorer-controls"] .chip.filter');
  const chip = await comma.$eval('[data-panel="explorer-controls"] .chip.filter', (e) => e.firstChild.textContent);
  await comma.waitForFunction(() => document.querySelector('[data-panel="explorer-table"]')?.dataset.query);
  const sent = new URLSearchParams(await comma.$eval('[data-panel="explorer-table"]', (e) => e.dataset.query)).get('filter');
  check(chip === 'label:app.kubernetes.io/name=a,b' && sent === 'label:app.kubernetes.io/name=a\\,b', `a comma in a filter value: chip ${chip}, sent to the API as ${sent}`);
  const direct = await (await comma.request.get(`${base}/api/v1/costs?${new URLSearchParams({ group_by: 'team', filter: 'label:app.kubernetes.io/name=a\\,b' })}`)).json();
  check(Array.isArray(direct.rows) && direct.rows.length === 0, 'the API takes the escaped value as one term (no workload has that label)');
  await comma.close();
  // idle modes: separate adds an idle series, hidden shows what groups used
  await page.click('[data-seg="idle"] button[data-value="separate"]');
  await page.waitForFunction(() => location.hash.includes('idle=separate') && document.querySelector('[data-panel="explorer-chart"] .chart-legend [data-key=""]'));
  await page.waitForSelector('[data-kpi="idle"]');
  check(true, 'idle separate: an idle series and an Idle figure of its own');
  // a phone: the dollar columns stay on screen
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const right = await page.$$eval('[data-panel="explorer-table"] tbody td[data-col="total"]', (tds) => Math.max(...tds.map((t) => t.getBoundingClientRect().right)));
  check(right <= 390, `at 390 px every total cell is on screen (rightmost edge ${Math.round(right)} px)`);
  await page.screenshot({ path: join(artifacts, 'explorer-phone.png'), fullPage: true });
  step('url');
  check(problems.length === 0, `no browser errors${problems.length ? `: ${problems.join('; ')}` : ''}`);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
console.log(checks.join('\n'));
console.log(steps.join('\n'));
console.log(`total ${Date.now() - t0} ms`);
if (failed) {
  console.error(`FAIL: ${failed.message}`);
  if (problems.length) console.error(problems.join('\n'));
  process.exit(1);
}
