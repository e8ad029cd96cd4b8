// Browser test of the dashboard's recommendations page (#/recommendations), in Debian's Chromium driven by npm
// playwright-core. Run by tests/tests/browser_recommendations.rs against a `gpucost-collector demo` with two
// days of backfill; by hand:
//
//   GPUCOST_URL=http://127.0.0.1:8080 node tests/browser/recommendations.test.mjs
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

  await page.goto(`${base}/`);
  await headerReady(page);
  await page.click('#nav-recommendations');
  await page.waitForFunction(() => location.hash.startsWith('#/recommendations'));
  check(true, 'the header links to the recommendations page');

  // ---- every recommendation the API gives, with its saving ----
  await page.goto(`${base}/#/recommendations/?rows=1000`);
  await page.waitForSelector('[data-panel="recommendations"] tbody [data-saving]');
  const want = (await api('recommendations')).recommendations;
  const shown = await page.$$eval('[data-panel="recommendations"] tbody tr', (trs) => trs.map((tr) => ({
    group: tr.querySelector('[data-open]').dataset.open,
    kind: tr.querySelector('[data-kind]').dataset.kind,
    saving: Number(tr.querySelector('[data-saving]').dataset.saving),
  })));
  check(shown.length === want.length && want.length > 0, `${shown.length} rows, the API gives ${want.length}`);
  for (const r of want) {
    const row = shown.find((s) => s.group === r.group && s.kind === r.kind);
    check(row && row.saving === Number(r.saving_usd_monthly), `${r.kind} ${r.group}: saving ${row?.saving} (API ${r.saving_usd_monthly})`);
  }
  const savings = shown.map((s) => s.saving);
  check(savings.every((v, i) => i === 0 || savings[i - 1] >= v), 'sorted by saving, largest first');

  // ---- sortable: by confidence, then back ----
  await page.click('[data-panel="recommendations"] th[data-col="confidence"] button');
  const sorted = await page.$$eval('[data-panel="recommendations"] th[data-col="confidence"]', (ths) => ths[0].getAttribute('aria-sort'));
  check(sorted === 'descending' || sorted === 'ascending', `the confidence column sorts (${sorted})`);

  // ---- drill-down: a row's evidence ----
  const first = want[0];
  await page.click(`[data-panel="recommendations"] [data-open="${first.group}"] >> nth=0`);
  await page.waitForSelector(`[data-panel="evidence"] [data-evidence="${first.group}"]`);
  const text = await page.textContent('[data-panel="evidence"]');
  check(text.includes(`${first.hours_seen} h seen`) && text.includes(first.proposal), `the evidence of ${first.group}: hours seen and the proposal`);
  const bars = await page.$$eval('[data-panel="evidence"] [data-bar]', (bs) => bs.map((b) => b.dataset.bar));
  check(bars.includes('peak memory') && bars.includes('p95 SM'), `evidence bars: ${bars.join(', ')}`);
  await page.screenshot({ path: join(artifacts, 'recommendations.png'), fullPage: true });

  // ---- a kind filter ----
  await page.goto(`${base}/#/recommendations/?rows=1000&kind=release`);
  const releases = want.filter((r) => r.kind === 'release').length;
  if (releases) {
    await page.waitForSelector('[data-panel="recommendations"] tbody [data-saving]');
    const n = await page.$$eval('[data-panel="recommendations"] tbody tr', (trs) => trs.length);
    check(n === releases, `kind=release: ${n} rows, the API gives ${releases}`);
  }

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
