// Browser test of the GPU's and the node's history (issue 22 item 3): the history charts on #/gpu/<uuid> and
// #/node/<cluster>/<name> hold exactly the points GET /api/v1/history gives for the same thing and period (a
// finished day of the demo's backfill: yesterday, UTC), not the live stream. Run by tests/tests/browser_history.rs;
// by hand: GPUCOST_URL=http://127.0.0.1:8080 node tests/browser/history.test.mjs (environment as
// tests/browser/dashboard.test.mjs).

import { join } from 'node:path';

import { artifacts, base, check, checks, deadline, launch } from './harness.mjs';

deadline('the history test', 120_000);
const DAY_MS = 86_400_000;
const from = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS - DAY_MS).toISOString().replace('.000', '');
const to = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS).toISOString().replace('.000', '');

const browser = await launch();
const problems = [];
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, colorScheme: 'light', deviceScaleFactor: 1 });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  const history = async (params) => (await page.request.get(`${base}/api/v1/history?${new URLSearchParams({ ...params, from, to })}`)).json();
  const chart = (name) => page.evaluate((n) => { const u = window.gpucost.charts.get(n); return u ? u.data.map((s) => Array.from(s)) : null; }, name);
  const same = (a, b) => a.length === b.length && a.every((x, i) => (x === null && b[i] === null) || (x !== null && b[i] !== null && Math.abs(x - b[i]) < 1e-9));

  /** The page's history charts `<name>-util` and `-cost` against the API's points for `params`. */
  async function compare(name, params, what) {
    const api = await history(params);
    check(api.points.length >= 20, `${what}: the API has ${api.points.length} hourly points for ${from} – ${to}`);
    await page.waitForFunction((n) => window.gpucost.charts.get(`${n}-util`) && window.gpucost.charts.get(`${n}-cost`), name);
    const util = await chart(`${name}-util`);
    const cost = await chart(`${name}-cost`);
    const power = await chart(`${name}-power`);
    check(same(util[0], api.points.map((p) => p.t)), `${what}: the chart's hours are the API's (${util[0].length})`);
    check(same(util[1], api.points.map((p) => p.utilization_mean_pct)), `${what}: mean utilisation per hour = the API's`);
    check(same(util[2], api.points.map((p) => p.utilization_max_pct)), `${what}: max utilisation per hour = the API's`);
    check(same(power[1], api.points.map((p) => p.power_mean_watts)), `${what}: mean power per hour = the API's`);
    check(same(cost[1], api.points.map((p) => p.cost_micros / 1e6)), `${what}: cost per hour = the API's`);
    check(util[0][0] < Date.parse(to) / 1000 - 6 * 3600, `${what}: the chart spans the day, not only since the page opened`);
    check(api.points.every((p) => p.source === 'raw'), `${what}: within the raw retention every hour is from the raw intervals`);
    return api;
  }

  const fleet = await (await page.request.get(`${base}/api/v1/fleet`)).json();
  const g = fleet.gpus.find((x) => !x.mig_parent_uuid && !x.gpu.startsWith('MIG')) || fleet.gpus[0];
  check(!!g, `a GPU to look at: ${g && g.gpu} on ${g && g.cluster}/${g && g.node}`);
  const range = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
  await page.goto(`${base}/#/gpu/${encodeURIComponent(g.gpu)}?${range}`);
  await compare('gpu-history', { gpu: g.gpu }, `GPU ${g.gpu}`);
  await page.locator('[data-panel="gpu-history"]').screenshot({ path: join(artifacts, 'gpu-history.png') });
  // The GPU's page links to its node's page.
  await page.locator('a[data-node-link]').click();
  await page.waitForFunction(() => location.hash.startsWith('#/node/'));
  await compare('node-history', { node: `${g.cluster}/${g.node}` }, `node ${g.cluster}/${g.node}`);
  const gpus = await page.$$eval('[data-panel="node-gpus"] a', (as) => as.length);
  check(gpus >= 1, `the node page lists its GPUs (${gpus})`);
  await page.screenshot({ path: join(artifacts, 'node.png'), fullPage: true });
  check(problems.length === 0, `no browser errors${problems.length ? `: ${problems.join('; ')}` : ''}`);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
console.log(checks.join('\n'));
if (failed) {
  console.error(`FAIL: ${failed.message}`);
  process.exit(1);
}
console.log('history test passed');
