// The dashboard's timings with the data the collector at GPUCOST_URL holds (scripts/bench-dashboard starts a
// 30-day demo for it): for each page at 1440 × 1000 px in Debian's Chromium, cold (a fresh browser context, so
// nothing cached), the load event (navigation start to loadEventEnd) and the time from navigation start until
// every panel is filled (no `.body.loading` left in <main>, at least one panel). Prints the median, min and max
// of GPUCOST_BENCH_RUNS runs (default 5) per page. No assertions: the figures go into BENCHMARKS.md.

import { base, launch } from '../tests/browser/harness.mjs';

const runs = Number(process.env.GPUCOST_BENCH_RUNS || 5);
const json = async (path) => (await fetch(`${base}${path}`)).json();
const DAY_MS = 86_400_000;
const to = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS).toISOString();
const teams = await json(`/api/v1/costs?${new URLSearchParams({ from: new Date(Date.parse(to) - 30 * DAY_MS).toISOString(), to, group_by: 'team' })}`);
const team = teams.rows.filter((x) => x.team).sort((a, b) => Number(b.total_usd) - Number(a.total_usd))[0].team;
const fleet = await json('/api/v1/fleet');
const gpu = (fleet.gpus.find((g) => (g.holders || []).length && !g.gpu.startsWith('MIG')) || fleet.gpus[0]).gpu;
const models = await json(`/api/v1/costs?${new URLSearchParams({ from: new Date(Date.parse(to) - 30 * DAY_MS).toISOString(), to, group_by: 'model' })}`);
const model = models.rows.filter((x) => x.model).sort((a, b) => Number(b.total_usd) - Number(a.total_usd))[0].model;
// the model page exists from the collector that serves GET /api/v1/models/<name> (older builds: left out)
const hasModelPage = (await fetch(`${base}/api/v1/models/${encodeURIComponent(model)}`)).ok;

const pages = [
  ['overview, 7 days (default)', '#/'],
  ['overview, 30 days', '#/?period=30d'],
  ['explorer, 30 days, by team', '#/explore/?period=30d'],
  ['explorer, 30 days, department → team', '#/explore/?period=30d&by=department,team'],
  [`team page (${team}), 30 days`, `#/team/${encodeURIComponent(team)}?period=30d`],
  ['GPU page with history, 7 days', `#/gpu/${encodeURIComponent(gpu)}`],
  ['GPU page with history, 30 days', `#/gpu/${encodeURIComponent(gpu)}?period=30d`],
  ['budgets', '#/budgets'],
  ['alerts', '#/alerts'],
  ...(hasModelPage ? [[`model page (${model}), 30 days`, `#/model/${encodeURIComponent(model)}?period=30d`]] : []),
];

const browser = await launch();
const median = (xs) => { const s = xs.slice().sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const rows = [];
try {
  for (const [what, hash] of pages) {
    const load = [];
    const filled = [];
    const counts = [];
    for (let i = 0; i < runs; i++) {
      const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, colorScheme: 'light', deviceScaleFactor: 1 });
      const page = await context.newPage();
      await page.goto(`${base}/${hash}`, { waitUntil: 'load' });
      const done = await page.waitForFunction(() => {
        const panels = document.querySelectorAll('main .panel');
        return panels.length > 0 && !document.querySelector('main .body.loading') ? [performance.now(), panels.length] : null;
      }, null, { polling: 'raf', timeout: 60_000 });
      const [t, n] = await done.jsonValue();
      const nav = await page.evaluate(() => performance.getEntriesByType('navigation')[0].loadEventEnd);
      load.push(nav);
      filled.push(t);
      counts.push(n);
      await context.close();
    }
    const r = { what, hash, panels: counts[0], load: median(load), loadMin: Math.min(...load), loadMax: Math.max(...load), filled: median(filled), filledMin: Math.min(...filled), filledMax: Math.max(...filled) };
    rows.push(r);
    console.log(`${what}: load ${r.load.toFixed(0)} ms (${r.loadMin.toFixed(0)}–${r.loadMax.toFixed(0)}), every panel filled ${r.filled.toFixed(0)} ms (${r.filledMin.toFixed(0)}–${r.filledMax.toFixed(0)}), ${r.panels} panels`);
  }
} finally {
  await browser.close();
}
console.log('\n| page | panels | load event | every panel filled |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.what} | ${r.panels} | ${r.load.toFixed(0)} ms (${r.loadMin.toFixed(0)}–${r.loadMax.toFixed(0)}) | ${r.filled.toFixed(0)} ms (${r.filledMin.toFixed(0)}–${r.filledMax.toFixed(0)}) |`);
