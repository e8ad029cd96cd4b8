// Browser test of the GPU's, the node's, the workload's and the model's history (issue 22 item 3): the history charts on
// #/gpu/<uuid>, #/node/<cluster>/<name> and #/workload/<key> (reached from its team's page; GPU time and cost
// per hour and GPU held) hold exactly the points GET /api/v1/history gives for the same thing and period (a
// finished day of the demo's backfill: yesterday, UTC), not the live stream. Run by tests/tests/browser_history.rs;
// by hand: GPUCOST_URL=http://127.0.0.1:8080 node tests/browser/history.test.mjs (environment as
// tests/browser/dashboard.test.mjs). Also the overview's period-over-period change on its cost and idle-waste
// cards for that day against the day before, as the costs API gives them.

import { join } from 'node:path';

import { artifacts, base, check, checks, deadline, launch, watchedPage } from './harness.mjs';

deadline('the history test', 120_000);
const DAY_MS = 86_400_000;
const from = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS - DAY_MS).toISOString().replace('.000', '');
const to = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS).toISOString().replace('.000', '');

const browser = await launch();
const problems = [];
let failed = null;
try {
  const { page } = await watchedPage(browser, problems);
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

  // A workload's history, on its page reached from its team's page: GPU time and cost per hour and GPU held.
  const teams = await (await page.request.get(`${base}/api/v1/costs?${new URLSearchParams({ from, to, group_by: 'team' })}`)).json();
  const top = teams.rows.filter((x) => x.team !== '').sort((a, b) => Number(b.total_usd) - Number(a.total_usd))[0];
  check(!!top, `a team with cost on ${from}: ${top && top.team}`);
  await page.goto(`${base}/#/team/${encodeURIComponent(top.team)}?${range}`);
  const first = page.locator('[data-panel="workloads"] tbody a').first();
  await first.waitFor();
  await first.click();
  await page.waitForFunction(() => location.hash.startsWith('#/workload/'));
  const wid = await page.evaluate(() => decodeURIComponent(location.hash.slice('#/workload/'.length).split('?')[0]));
  check(await page.evaluate(() => location.hash.includes('from=') && location.hash.includes('to=')), `the workload page keeps the period: ${await page.evaluate(() => location.hash)}`);
  const api = await history({ workload: wid });
  check(api.points.length >= 1, `workload ${wid}: the API has ${api.points.length} points (hour × GPU) for ${from} – ${to}`);
  await page.waitForFunction(() => window.gpucost.charts.get('workload-history-time') && window.gpucost.charts.get('workload-history-cost'));
  const series = (n) => page.evaluate((c) => { const u = window.gpucost.charts.get(c); return { data: u.data.map((s) => Array.from(s)), labels: u.series.map((s) => s.label) }; }, n);
  const hoursOf = [...new Set(api.points.map((x) => x.t))].sort((a, b) => a - b);
  for (const [chartName, f, what] of [['workload-history-time', (x) => x.held_gpu_seconds / 3600, 'GPU-hours held'], ['workload-history-cost', (x) => x.cost_micros / 1e6, 'cost']]) {
    const c = await series(chartName);
    check(same(c.data[0], hoursOf), `workload: the ${what} chart's hours are the API's (${hoursOf.length})`);
    const gpusInApi = [...new Set(api.points.map((x) => x.gpu))];
    const named = c.labels.slice(1).filter((l) => !l.startsWith('other ('));
    const expect = (keep) => hoursOf.map((t) => {
      const at = api.points.filter((x) => x.t === t && keep(x.gpu));
      return at.length ? at.reduce((a, x) => a + f(x), 0) : null;
    });
    let points = 0;
    for (let i = 1; i < c.labels.length; i++) {
      const label = c.labels[i];
      const want = label.startsWith('other (') ? expect((g) => !named.includes(g)) : expect((g) => g === label);
      check(same(c.data[i], want), `workload: ${what} per hour on ${label} = the API's`);
      points += c.data[i].filter((v) => v !== null).length;
    }
    check(named.every((l) => gpusInApi.includes(l)) && (c.labels.length - 1 === gpusInApi.length || c.labels.some((l) => l.startsWith('other ('))),
      `workload: one ${what} line per GPU it held (${gpusInApi.length}: ${c.labels.slice(1).join(', ')})`);
    check(points >= hoursOf.length, `workload: ${points} ${what} points drawn`);
  }
  // per GPU, its utilisation, busiest interval, peak memory and power: the API's, hour by hour
  for (const [chartName, field, what] of [['workload-history-util', 'utilization_mean_pct', 'utilisation'], ['workload-history-sm-max', 'utilization_max_pct', 'busiest interval'],
    ['workload-history-memory', 'memory_used_max_bytes', 'peak memory'], ['workload-history-power', 'power_mean_watts', 'power']]) {
    await page.waitForFunction((n) => window.gpucost.charts.get(n), chartName);
    const c = await series(chartName);
    let drawn = 0;
    for (let i = 1; i < c.labels.length; i++) {
      const want = hoursOf.map((t) => api.points.find((x) => x.t === t && x.gpu === c.labels[i])?.[field] ?? null);
      check(same(c.data[i], want), `workload: ${what} per hour on ${c.labels[i]} = the API's`);
      drawn += c.data[i].filter((v) => v !== null).length;
    }
    check(drawn > 0, `workload: ${drawn} ${what} points drawn`);
  }
  check(api.points.every((x) => x.utilization_mean_pct !== null && x.power_mean_watts > 0 && x.memory_used_max_bytes > 0),
    'workload: every hour has its utilisation, power and (the simulated agents report peaks) peak memory');
  const costSum = api.points.reduce((a, x) => a + x.cost_micros, 0) / 1e6;
  check(Math.abs(costSum - Number(api.cost.usd)) < 1e-6, `workload: the points add up to the API's cost (${api.cost.usd})`);
  await page.locator('[data-panel="workload-history"]').screenshot({ path: join(artifacts, 'workload-history.png') });

  // Period-over-period change on the overview's cards, for a finished window (yesterday, UTC): the change shown
  // is the costs API's figure for the window against the same length just before it.
  const prevFrom = new Date(Date.parse(from) - DAY_MS).toISOString().replace('.000', '');
  const costsOf = async (f, t) => (await page.request.get(`${base}/api/v1/costs?${new URLSearchParams({ from: f, to: t, group_by: 'team' })}`)).json();
  const [now, before] = [await costsOf(from, to), await costsOf(prevFrom, from)];
  await page.goto(`${base}/#/?${range}`);
  await page.waitForSelector('[data-kpi="cost"] .change');
  await page.waitForSelector('[data-kpi="waste"] .change');
  for (const [id, field] of [['cost', 'fleet'], ['waste', 'idle']]) {
    const shown = await page.$eval(`[data-kpi="${id}"] .change`, (e) => ({ text: e.textContent, title: e.title, pct: e.dataset.change, cur: e.dataset.cur, prev: e.dataset.prev }));
    const cur = Number(now[field].usd);
    const prev = Number(before[field].usd);
    check(prev > 0 && cur > 0, `${id}: the API has ${cur} for ${from} – ${to} and ${prev} for the day before`);
    const p = (100 * (cur - prev)) / prev;
    const want = `${p > 0 ? '▲' : '▼'} ${Math.abs(p).toFixed(1)}%`;
    check(Math.abs(Number(shown.cur) - cur) < 1e-9 && Math.abs(Number(shown.prev) - prev) < 1e-9, `${id}: the card compares the API's ${cur} with its ${prev}`);
    check(Math.abs(Number(shown.pct) - p) < 1e-9 && shown.text.startsWith(want), `${id}: the change shown (${shown.text}) = the API's (${want})`);
    const d = (x) => x.slice(0, 16).replace('T', ' ');
    check(shown.title.includes(d(from)) && shown.title.includes(d(prevFrom)) && shown.title.includes('24 hours just before'), `${id}: its title says what it compares (${shown.title})`);
  }
  await page.locator('section.kpis').screenshot({ path: join(artifacts, 'kpis-change.png') });

  // A model's page, reached from the overview's top models: its versions, training runs and serving cost are the
  // costs API's own figures for that model and day (training = GPU time of workloads with an MLflow run id), and
  // its versions and runs link into MLflow's UI (the demo runs with --mlflow-ui-url). Checked for a model that was
  // served and one that was trained that day (one model when it was both).
  const modelsOf = await (await page.request.get(`${base}/api/v1/costs?${new URLSearchParams({ from, to, group_by: 'model' })}`)).json();
  const kinds = await (await page.request.get(`${base}/api/v1/costs?${new URLSearchParams({ from, to, group_by: 'model,run' })}`)).json();
  const served = (name) => kinds.rows.some((x) => x.model === name && x.run === '' && Number(x.total_micros) > 0);
  const trained = (name) => kinds.rows.some((x) => x.model === name && x.run !== '' && Number(x.total_micros) > 0);
  const ranked = modelsOf.rows.filter((x) => x.model !== '').sort((a, b) => Number(b.total_usd) - Number(a.total_usd)).slice(0, 8);
  const both = ranked.find((x) => served(x.model) && trained(x.model));
  const picks = both ? [both] : [ranked.find((x) => served(x.model)), ranked.find((x) => trained(x.model))].filter(Boolean);
  check(picks.some((x) => served(x.model)) && picks.some((x) => trained(x.model)), `models with cost on ${from}, served and trained: ${picks.map((x) => x.model).join(', ')}`);
  const micros = (rows) => rows.reduce((a, x) => a + Number(x.total_micros), 0);
  for (const topModel of picks) {
    await page.goto(`${base}/#/?${range}`);
    const link = page.locator(`[data-panel="top-models"] a[data-model="${topModel.model}"]`);
    await link.waitFor();
    await link.click();
    await page.waitForFunction(() => location.hash.startsWith('#/model/'));
    check(await page.evaluate(() => location.hash.includes('from=') && location.hash.includes('to=')), `the model page keeps the period: ${await page.evaluate(() => location.hash)}`);
    const m = await (await page.request.get(`${base}/api/v1/models/${encodeURIComponent(topModel.model)}?${new URLSearchParams({ from, to })}`)).json();
    const byRun = await (await page.request.get(`${base}/api/v1/costs?${new URLSearchParams({ from, to, group_by: 'model_version,run', filter: `model=${topModel.model}` })}`)).json();
    check(Number(m.total.total_micros) === Number(topModel.total_micros), `model ${topModel.model}: its total (${m.total.total_usd}) = the costs API's (${topModel.total_usd})`);
    check(Number(m.serving.total_micros) === micros(byRun.rows.filter((x) => x.run === '')), `model ${topModel.model}: serving (${m.serving.total_usd}) = the costs API's rows without a run`);
    check(Number(m.training.total_micros) === micros(byRun.rows.filter((x) => x.run !== '')), `model ${topModel.model}: training (${m.training.total_usd}) = the costs API's rows with a run`);
    const runs = new Set(byRun.rows.filter((x) => x.run !== '').map((x) => x.run));
    check(m.runs.length === runs.size && m.runs.every((r) => runs.has(r.run)), `model ${topModel.model}: ${m.runs.length} runs, the costs API's`);
    for (const r of m.runs) {
      const want = micros(byRun.rows.filter((x) => x.run === r.run));
      check(Number(r.cost.total_micros) === want, `run ${r.run}: ${r.cost.total_usd} = the costs API's`);
    }
    const versions = new Set(byRun.rows.map((x) => x.model_version));
    check(m.versions.length === versions.size, `model ${topModel.model}: ${m.versions.length} versions, the costs API's ${versions.size}`);
    await page.waitForFunction(() => /\d/.test(document.querySelector('[data-kpi="cost"] .value').textContent));
    const kpi = await page.$eval('[data-kpi="cost"] .value', (e) => e.textContent);
    check(kpi.replace(/[$,]/g, '') === Number(m.total.total_usd).toFixed(2), `model ${topModel.model}: the cost card (${kpi}) is the API's ${m.total.total_usd}`);
    await page.waitForSelector('[data-table="model-versions"] tbody tr');
    const vRows = await page.$$eval('[data-table="model-versions"] tbody tr', (rs) => rs.length);
    check(vRows === Math.min(25, m.versions.length), `model ${topModel.model}: the versions table shows ${vRows} of ${m.versions.length} versions`);
    const seen = await page.$eval('[data-table="model-versions"] tbody tr td[data-col="days"]', (td) => td.textContent);
    check(seen === from.slice(0, 10) && m.versions.every((v) => v.first_day === from.slice(0, 10) && v.last_day === from.slice(0, 10)), `model ${topModel.model}: seen on ${seen}, the day asked for`);
    const notes = await page.$eval('[data-panel="model-serving"] .body', (e) => e.textContent);
    check(!/null|undefined|NaN/.test(notes), `model ${topModel.model}: the serving panel shows no null, undefined or NaN`);
    if (m.runs.length) {
      await page.waitForSelector('[data-table="model-runs"] tbody tr');
      const runLinks = await page.$$eval('[data-table="model-runs"] a[data-mlflow]', (as) => as.map((a) => a.href));
      check(runLinks.length === Math.min(25, m.runs.length) && runLinks.every((h) => /^http:\/\/mlflow\.test:5000\/#\/(experiments\/[^/]+\/)?runs\/[0-9a-f]+$/.test(h)), `model ${topModel.model}: each run links into MLflow (${runLinks[0]})`);
    }
    const vLink = await page.$eval('[data-table="model-versions"] a[data-mlflow]', (a) => a.href).catch(() => '');
    check(vLink.startsWith(`http://mlflow.test:5000/#/models/${encodeURIComponent(topModel.model)}/versions/`), `model ${topModel.model}: a version links into MLflow (${vLink})`);
    const head = await page.$eval('.title-row a[data-mlflow]', (a) => a.href).catch(() => '');
    check(head === `http://mlflow.test:5000/#/models/${encodeURIComponent(topModel.model)}`, `model ${topModel.model}: the title links to the registered model in MLflow (${head})`);
    // serving over time: a bar series per version; the legend's totals are the costs API's serving cost per version
    if (Number(m.serving.total_micros) === 0) {
      await page.waitForSelector('[data-panel="model-serving"] .empty');
      check(true, `model ${topModel.model}: nothing served that day, and the serving chart says so`);
      continue;
    }
    await page.waitForFunction(() => window.gpucost.charts.get('model-serving'));
    const legend = await page.$$eval('[data-panel="model-serving"] .chart-legend [data-key]', (es) => es.map((e) => [e.dataset.key, Number(e.dataset.total)]));
    check(legend.length >= 1, `model ${topModel.model}: the serving chart's legend has ${legend.length} versions`);
    for (const [v, t] of legend) {
      const want = micros(byRun.rows.filter((x) => x.run === '' && x.model_version === v)) / 1e6;
      check(Math.abs(t - want) < 0.005, `model ${topModel.model}: version ${v || '(none)'} served for ${t.toFixed(2)} in the chart, ${want.toFixed(2)} in the costs API`);
    }
    await page.waitForFunction(() => window.gpucost.charts.get('model-efficiency') && window.gpucost.charts.get('model-power'));
    // an hour of the utilisation and power charts against the costs API for that hour
    const [eff, pw] = [await chart('model-efficiency'), await chart('model-power')];
    const busy = eff[1].findIndex((v) => v > 0);
    const i = busy >= 0 ? busy : eff[1].findIndex((v) => v !== null);
    check(i >= 0, `model ${topModel.model}: its serving utilisation is drawn`);
    const hour = eff[0][i];
    const at = await (await page.request.get(`${base}/api/v1/costs?${new URLSearchParams({ from: String(hour), to: String(hour + 3600), group_by: 'run', filter: `model=${topModel.model}` })}`)).json();
    const srv = at.rows.filter((x) => x.run === '');
    const held = srv.reduce((a, x) => a + x.held_gpu_seconds, 0);
    check(Math.abs(eff[1][i] - (100 * srv.reduce((a, x) => a + x.used_gpu_seconds, 0)) / held) < 1e-9, `model ${topModel.model}: serving utilisation at ${new Date(hour * 1000).toISOString()} = the costs API's used ÷ held (${eff[1][i].toFixed(1)}%)`);
    check(Math.abs(pw[1][i] - (srv.reduce((a, x) => a + x.energy_kwh, 0) * 3.6e6) / held) < 1e-6, `model ${topModel.model}: serving power then = its energy ÷ GPU time held (${pw[1][i].toFixed(0)} W)`);
    await page.screenshot({ path: join(artifacts, 'model.png'), fullPage: true });
  }
  // on a phone the model page's dollar columns stay on screen and nothing overflows sideways
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const edge = await page.$$eval('[data-table^="model-"] td.money, [data-table^="model-"] td[data-col="total"]', (tds) => Math.max(0, ...tds.map((t) => t.getBoundingClientRect().right)));
  const pageWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  check(edge > 0 && edge <= 390 && pageWidth <= 390, `model page at 390 px: rightmost dollar cell at ${Math.round(edge)} px, page ${pageWidth} px wide`);
  await page.screenshot({ path: join(artifacts, 'model-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1440, height: 1000 });
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
