// Browser test of the collector's dashboard (`/`), in Debian's Chromium driven by npm playwright-core.
// Run by tests/tests/browser.rs against a running `gpucost-collector demo`; by hand:
//
//   GPUCOST_URL=http://127.0.0.1:8080 node tests/browser/dashboard.test.mjs
//
// Environment: as tests/browser/harness.mjs says (the collector, playwright-core, Chromium, where screenshots
// go), and GPUCOST_README_SCREENSHOT (also write the README's screenshot there, e.g.
// docs/dashboard.png). Exits 0 when every check passed; prints what it checked and how long each step took.

import { join } from 'node:path';

import { artifacts, base, check, checks, deadline, launch, step, steps, t0 } from './harness.mjs';

deadline('the browser test', 150_000);

const browser = await launch();
const problems = [];
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, colorScheme: 'light', deviceScaleFactor: 1 });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()} (${m.location().url})`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const err = r.failure()?.errorText || '';
    // Navigating away cancels the live stream and pending API calls: not a failure.
    if (!err.includes('ERR_ABORTED')) problems.push(`request failed: ${r.url()} ${err}`);
  });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });

  /** The named chart's series hold data and its canvas shows it (opaque pixels inside the plot). */
  async function chartHasData(name, { min = 1 } = {}) {
    await page.waitForFunction((n) => {
      const u = window.gpucost?.charts?.get(n);
      return u && u.data.length > 1 && u.data.slice(1).some((s) => s.some((v) => v !== null && v !== 0));
    }, name);
    const r = await page.evaluate((n) => {
      const u = window.gpucost.charts.get(n);
      const { left, top, width, height } = u.bbox;
      const px = u.ctx.getImageData(Math.round(left), Math.round(top), Math.max(1, Math.round(width)), Math.max(1, Math.round(height))).data;
      let opaque = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 200) opaque += 1;
      return { points: u.data[0].length, series: u.data.length - 1, opaque, area: px.length / 4 };
    }, name);
    check(r.points >= min && r.opaque > 0, `chart ${name}: ${r.series} series × ${r.points} points, ${r.opaque} drawn pixels`);
    return r;
  }

  async function liveChanges(panel) {
    const sel = `[data-panel="${panel}"]`;
    await page.waitForFunction((s) => document.querySelector(s)?.dataset.at, sel);
    const first = await page.$eval(sel, (e) => e.dataset.at);
    const t = Date.now();
    await page.waitForFunction(([s, a]) => document.querySelector(s)?.dataset.at !== a, [sel, first], { timeout: 10_000 });
    const second = await page.$eval(sel, (e) => e.dataset.at);
    check(true, `live ${panel}: ${first} → ${second} in ${Date.now() - t} ms, without reload`);
  }

  // ---- the overview ----
  // every answer the overview's team table gets (the demo runs on: each reload sees a little more cost)
  const teamCosts = [];
  page.on('response', (r) => {
    if (r.url().includes('/api/v1/costs') && new URL(r.url()).searchParams.get('group_by') === 'team') r.json().then((j) => teamCosts.push(j), () => {});
  });
  await page.goto(`${base}/#/?period=7d`);
  await page.waitForSelector('[data-panel="fleet"] .tile');
  const tiles = await page.$$eval('[data-panel="fleet"] .tile', (ts) => ts.length);
  const fleet = await (await page.request.get(`${base}/api/v1/fleet`)).json();
  check(tiles === fleet.gpus.length, `fleet now shows every GPU: ${tiles} tiles, ${fleet.gpus.length} GPUs in /api/v1/fleet`);
  // every cluster is named above the fleet's scroll box with its GPUs, and its chip scrolls to it
  const clustersLive = [...new Set(fleet.gpus.map((g) => g.cluster))].sort();
  const chips = await page.$$eval('[data-panel="fleet"] .fleet-index button[data-cluster]', (bs) => bs.map((b) => ({ cluster: b.dataset.cluster, text: b.textContent })));
  check(clustersLive.length >= 2 && chips.map((c) => c.cluster).join() === clustersLive.join()
    && chips.every((c) => c.text.includes(`${fleet.gpus.filter((g) => g.cluster === c.cluster).length} GPUs`)),
    `fleet index names every cluster with its GPUs: ${chips.map((c) => c.text).join(', ')} (live: ${clustersLive.join(', ')})`);
  if (chips.length >= 2) {
    const lastCluster = chips[chips.length - 1].cluster;
    await page.click(`[data-panel="fleet"] .fleet-index button[data-cluster="${lastCluster}"]`);
    const seen = await page.$eval('[data-panel="fleet"] .fleet-scroll', (box, c) => {
      const s = box.querySelector(`section[data-cluster="${c}"]`).getBoundingClientRect();
      const b = box.getBoundingClientRect();
      return { top: s.top - b.top, height: b.height, scrolled: box.scrollTop };
    }, lastCluster);
    check(seen.top >= -1 && seen.top < seen.height, `its chip brings cluster ${lastCluster} into the fleet box (top ${seen.top.toFixed(0)} px of ${seen.height.toFixed(0)}, scrolled ${seen.scrolled})`);
  }
  const held = await page.$$eval('[data-panel="fleet"] .tile:not(.free) .who', (ws) => ws.map((w) => w.textContent));
  check(held.length > 0 && held.every((w) => w.length > 0), `who is on the GPUs: ${held.length} held tiles name a team (${[...new Set(held)].slice(0, 5).join(', ')}…)`);
  await chartHasData('cost-by-team', { min: 28 });
  await page.waitForSelector('[data-panel="teams"] tbody tr');
  const teams = await page.$$eval('[data-panel="teams"] tbody tr', (rs) => rs.length);
  check(teams > 1, `teams table: ${teams} teams`);
  await page.waitForSelector('[data-panel="top-models"] .bar-row');
  check(await page.$$eval('[data-panel="top-models"] .bar-row', (r) => r.length) > 1, 'top models listed');
  await page.waitForSelector('[data-panel="idle-waste"] .bar-row');
  check(await page.$$eval('[data-panel="idle-waste"] .bar-row', (r) => r.length) > 1, 'idle waste per team listed');
  await page.waitForSelector('[data-panel="budgets"] .budget');
  const budgets = await page.$$eval('[data-panel="budgets"] .budget', (bs) => bs.map((b) => b.dataset.budget));
  const spending = (await (await page.request.get(`${base}/api/v1/budgets/status`)).json()).budgets.filter((b) => Number(b.spend_usd) > 0);
  check(budgets.length > 0 && spending.length > 0, `budgets: ${budgets.length} burn-down cards, ${spending.length} with spend`);
  for (const b of spending) await chartHasData(`budget:${b.budget}`, { min: 2 });
  const kpi = await page.$eval('[data-kpi="cost"] .value', (e) => e.textContent);
  check(/^\$[\d,.]+$/.test(kpi) && kpi !== '$0.00', `fleet cost KPI: ${kpi}`);
  // one meaning of idle, unattributed and unallocated: the Idle waste KPI is the costs API's idle for the
  // same window; GPUs nobody held are their own entry; no team is shown as "(no team)"
  await page.waitForFunction(() => document.querySelector('[data-kpi="waste"] .value')?.textContent !== '—');
  const dollars = (v) => {
    const n = Number(v);
    if (Math.abs(n) >= 10000) return `$${new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 }).format(n)}`;
    if (Math.abs(n) >= 1 || n === 0) return `$${new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n)}`;
    return `$${n.toPrecision(2)}`;
  };
  // The KPI and the panel are drawn from one costs answer; the demo runs on, so several answers may have come.
  const [waste, row] = await page.evaluate(() => [
    document.querySelector('[data-kpi="waste"] .value')?.textContent,
    document.querySelector('[data-panel="idle-waste"] [data-row="unallocated"]')?.textContent ?? null,
  ]);
  const drawn = (a) => dollars(a.idle.usd) === waste && (Number(a.unallocated.usd) === 0 || (row ?? '').includes(dollars(a.unallocated.usd)));
  const costs = teamCosts.find(drawn) ?? teamCosts[teamCosts.length - 1];
  check(waste === dollars(costs.idle.usd) && Number(costs.idle.usd) > 0, `Idle waste KPI ${waste} is the costs API's idle (${costs.idle.usd} under ${costs.policy})`);
  if (Number(costs.unallocated.usd) > 0) {
    check(row !== null && row.includes('unallocated') && row.includes(dollars(costs.unallocated.usd)), `unallocated is its own entry: ${row}`);
  }
  const noTeam = await page.evaluate(() => document.body.innerText.includes('(no team)'));
  check(!noTeam, 'no team is shown as "(no team)"');
  step('overview rendered');

  // live: the fleet panel and the utilisation sparkline change without a reload
  const before = await page.$$eval('[data-panel="fleet"] .tile', (ts) => ts.map((t) => t.title).join('\n'));
  await liveChanges('fleet');
  await page.waitForFunction(() => (window.gpucost?.charts?.get('live:fleet-util')?.data[0].length ?? 0) >= 2);
  // the readings themselves change with the next interval an agent reports (the test's demo reports every 2 s)
  const t1 = Date.now();
  await page.waitForFunction((b) => [...document.querySelectorAll('[data-panel="fleet"] .tile')].map((t) => t.title).join('\n') !== b,
    before, { timeout: 20_000 });
  check(true, `live GPU readings change without reload (after ${Date.now() - t1} ms)`);
  step('live update seen');
  await page.screenshot({ path: join(artifacts, 'overview.png'), fullPage: true });
  if (process.env.GPUCOST_README_SCREENSHOT) {
    await page.mouse.move(0, 0);
    // the top of the overview: headline figures, the fleet now, cost by team and top models
    const box = await page.locator('[data-panel="cost-by-team"]').boundingBox();
    await page.screenshot({ path: process.env.GPUCOST_README_SCREENSHOT, fullPage: true, clip: { x: 0, y: 0, width: 1440, height: Math.ceil(box.y + box.height + 16) } });
  }

  // ---- tables a person can use: sorting, totals, paging, no nested scroll box ----
  const parseUsd = (t) => Number(String(t).replace(/[^0-9.\-]/g, ''));
  // a shown amount is off by at most half its last digit: whole dollars from $10,000, cents below
  const slack = (v) => (Math.abs(v) >= 10000 ? 0.5 : 0.005);
  const teamsSel = '[data-panel="teams"] table.data';
  /** The teams table now: its rows' team names and dollar columns, the totals row, the sorted header. */
  const teamsTable = () => page.$eval('[data-panel="teams"]', (p) => {
    const col = (tr, k) => tr.querySelector(`[data-col="${k}"]`)?.textContent.trim() ?? null;
    const sorted = p.querySelector('th[aria-sort]');
    return {
      rows: [...p.querySelectorAll('tbody tr')].map((tr) => ({ team: col(tr, 'team'), used: col(tr, 'used'), idle: col(tr, 'idle'), total: col(tr, 'total') })),
      foot: (() => { const tr = p.querySelector('tfoot tr'); return tr ? { label: tr.firstElementChild.textContent, used: col(tr, 'used'), idle: col(tr, 'idle'), total: col(tr, 'total') } : null; })(),
      sortedBy: sorted?.dataset.col ?? null,
      sort: sorted?.getAttribute('aria-sort') ?? null,
      arrow: sorted?.querySelector('.arrow')?.textContent ?? null,
      arrowShown: (() => { const a = sorted?.querySelector('.arrow'); const r = a?.getBoundingClientRect(); return !!r && r.width > 0 && getComputedStyle(a).visibility !== 'hidden'; })(),
      range: p.querySelector('.pager')?.hidden ? null : p.querySelector('.pager .range')?.textContent ?? null,
      prevDisabled: p.querySelector('.pager .page-prev')?.disabled ?? null,
      nextDisabled: p.querySelector('.pager .page-next')?.disabled ?? null,
    };
  });
  const ordered = (xs, cmp) => xs.every((x, i) => i === 0 || cmp(xs[i - 1], x) <= 0);
  let tt = await teamsTable();
  check(tt.sortedBy === 'total' && tt.sort === 'descending' && tt.arrow === '▼' && tt.arrowShown,
    `teams table sorted by total, descending, first: aria-sort=${tt.sort}, arrow ${tt.arrow}`);
  const totalsDesc = tt.rows.map((r) => parseUsd(r.total));
  check(ordered(totalsDesc, (a, b) => b - a), `teams by total, largest first: ${tt.rows.map((r) => `${r.team} ${r.total}`).join(', ')}`);
  // the totals row is the sum of the rows (all of them are on this one page)
  for (const k of ['used', 'idle', 'total']) {
    const vals = tt.rows.map((r) => parseUsd(r[k]));
    const sumShown = vals.reduce((a, v) => a + v, 0);
    const foot = parseUsd(tt.foot?.[k]);
    const tol = vals.reduce((a, v) => a + slack(v), 0) + slack(foot) + 1e-9;
    check(tt.foot !== null && Math.abs(foot - sumShown) <= tol, `totals row ${k}: ${tt.foot?.[k]} = the ${tt.rows.length} rows' ${sumShown.toFixed(2)} (±${tol.toFixed(3)})`);
  }
  // clicking a header reorders the rows: total ascending, then team by name (from the keyboard)
  const beforeOrder = tt.rows.map((r) => r.team);
  await page.click(`${teamsSel} th[data-col="total"] button`);
  tt = await teamsTable();
  const totalsAsc = tt.rows.map((r) => parseUsd(r.total));
  check(tt.sort === 'ascending' && tt.sortedBy === 'total' && tt.arrow === '▲' && ordered(totalsAsc, (a, b) => a - b)
    && tt.rows.map((r) => r.team).join() !== beforeOrder.join(), `click on "total": smallest first (${tt.rows.map((r) => r.team).join(', ')}; was ${beforeOrder.join(', ')})`);
  await page.focus(`${teamsSel} th[data-col="team"] button`);
  await page.keyboard.press('Enter');
  tt = await teamsTable();
  const names = tt.rows.map((r) => r.team);
  check(tt.sortedBy === 'team' && tt.sort === 'ascending' && ordered(names, (a, b) => a.localeCompare(b, 'en', { numeric: true })),
    `Enter on the "team" header: by name, A–Z (${names.join(', ')}); aria-sort on ${tt.sortedBy} only`);
  check(await page.$$eval(`${teamsSel} th[aria-sort]`, (ths) => ths.length) === 1, 'one header carries aria-sort');
  // full height: no table sits in a scroll box of its own
  const boxed = await page.$$eval('table.data', (ts) => ts.flatMap((t) => {
    const out = [];
    for (let e = t.parentElement; e && e !== document.body; e = e.parentElement) {
      const oy = getComputedStyle(e).overflowY;
      if ((oy === 'auto' || oy === 'scroll') && e.scrollHeight > e.clientHeight + 1) out.push(`${t.dataset.table}: ${e.className}`);
    }
    return out;
  }));
  check(boxed.length === 0, `tables are full height, no nested scroll box${boxed.length ? `: ${boxed.join(', ')}` : ''}`);
  // paging: two rows a page (rows=2 in the URL), sorted by total, largest first
  const teamRows = (await (await page.request.get(`${base}/api/v1/costs?group_by=team&from=${new Date(Date.now() - 7 * 86400e3).toISOString().slice(0, 19)}Z`)).json()).rows.length;
  // The live demo keeps storing GPU time and the page refreshes every minute: a refresh landing between two
  // pages moves the figures by a few cents. Such a walk is not evidence either way, so it is walked again
  // (at most three times); the checks are on the first walk during which the data held still.
  const walkPages = async () => {
    await page.goto(`${base}/#/?period=7d&rows=2`);
    await page.waitForSelector(`${teamsSel} tbody tr`);
    for (let i = 0; i < 3; i += 1) {
      const t = await teamsTable();
      if (t.sortedBy === 'total' && t.sort === 'descending') break;
      await page.click(`${teamsSel} th[data-col="total"] button`);
    }
    const first = await teamsTable();
    const walk = { first, pages: [], seen: [], pageTotals: [], last: first };
    const n = Number(first.range?.match(/of (\d+)/)?.[1]);
    for (let pg = 0; n > 0 && pg < Math.ceil(n / 2); pg += 1) {
      const cur = await teamsTable();
      walk.pages.push(cur);
      walk.seen.push(...cur.rows.map((r) => r.team));
      walk.pageTotals.push(...cur.rows.map((r) => parseUsd(r.total)));
      walk.last = cur;
      if (!cur.nextDisabled) await page.click('[data-panel="teams"] .pager .page-next');
    }
    const foot = parseUsd(walk.last.foot?.total);
    const sum = walk.pageTotals.reduce((a, v) => a + v, 0);
    walk.still = walk.pages.every((p) => p.foot?.total === first.foot?.total)
      && Math.abs(foot - sum) <= walk.pageTotals.reduce((a, v) => a + slack(v), 0) + slack(foot);
    return walk;
  };
  let walk = await walkPages();
  for (let again = 0; again < 2 && !walk.still; again += 1) walk = await walkPages();
  tt = walk.first;
  const n = Number(tt.range?.match(/of (\d+)/)?.[1]);
  check(n >= 3 && Math.abs(n - teamRows) <= 1, `pager: "${tt.range}" (${teamRows} teams in the costs API)`);
  walk.pages.forEach((p, pg) => {
    const want = `rows ${2 * pg + 1}–${Math.min(n, 2 * pg + 2)} of ${n}`;
    check(p.range === want && p.rows.length === Math.min(2, n - 2 * pg) && p.prevDisabled === (pg === 0) && p.nextDisabled === (2 * pg + 2 >= n),
      `page ${pg + 1}: "${p.range}" shows ${p.rows.map((r) => `${r.team} ${r.total}`).join(', ')}`);
  });
  const { seen, pageTotals } = walk;
  tt = walk.last;
  check(new Set(seen).size === n && ordered(pageTotals, (a, b) => b - a), `pages hold every team once, in order of total: ${seen.join(', ')}`);
  const footAll = parseUsd(tt.foot.total);
  const sumAll = pageTotals.reduce((a, v) => a + v, 0);
  check(Math.abs(footAll - sumAll) <= pageTotals.reduce((a, v) => a + slack(v), 0) + slack(footAll), `totals row over all pages: ${tt.foot.total} = ${sumAll.toFixed(2)}`);
  await page.click('[data-panel="teams"] .pager .page-prev');
  tt = await teamsTable();
  check(tt.range === `rows ${2 * (Math.ceil(n / 2) - 2) + 1}–${2 * (Math.ceil(n / 2) - 1)} of ${n}`, `prev goes back a page: "${tt.range}"`);
  step('tables: sort, totals, paging');

  // the footer's chargeback links export the period on screen (not the month it ends in), CSV and FOCUS
  await page.goto(`${base}/#/?period=30d`);
  await page.waitForSelector(`${teamsSel} tbody tr`);
  const shown = (await page.textContent('#window')).match(/(\d{4}-\d\d-\d\dT[\d:]+Z) – (\d{4}-\d\d-\d\dT[\d:]+Z)/);
  const links = await page.$eval('#chargeback-csv', (a) => ({ csv: a.href, label: a.textContent, focus: document.getElementById('chargeback-focus')?.href ?? '' }));
  const csvUrl = new URL(links.csv);
  const focusUrl = new URL(links.focus || `${base}/`);
  check(shown && csvUrl.searchParams.get('from') === shown[1] && csvUrl.searchParams.get('to') === shown[2]
    && !csvUrl.searchParams.has('period') && csvUrl.searchParams.get('format') === 'csv',
    `chargeback CSV link covers the window on screen ${shown?.[1]} – ${shown?.[2]}: ${links.csv} ("${links.label}")`);
  check(focusUrl.searchParams.get('from') === shown?.[1] && focusUrl.searchParams.get('to') === shown?.[2] && focusUrl.searchParams.get('format') === 'focus',
    `FOCUS link beside it for the same window: ${links.focus}`);
  const csvResp = await page.request.get(links.csv);
  const csvText = await csvResp.text();
  const csvLines = csvText.trim().split(/\r?\n/);
  const firstLine = (csvLines[1] ?? '').split(',');
  check(csvResp.status() === 200 && csvLines[0].startsWith('period_start,period_end,group_by') && csvLines.length >= 2
    && firstLine[0] === shown?.[1] && firstLine[1] === shown?.[2] && firstLine[2] === 'team',
    `the chargeback CSV downloads for that window (${csvResp.status()}, ${csvLines.length} lines, first: ${csvLines[1]})`);
  const focusResp = await page.request.get(links.focus);
  check(focusResp.status() === 200 && (await focusResp.text()).split('\n')[0].includes('BilledCost'), `the FOCUS file downloads (${focusResp.status()})`);
  step('chargeback links: the period on screen');

  // ---- honest charts: the unfinished bucket, buckets without data, distinct colours ----
  await page.goto(`${base}/#/?period=7d`);
  await chartHasData('cost-by-team', { min: 28 });
  const chart = await page.evaluate(() => {
    const u = window.gpucost.charts.get('cost-by-team');
    const g = u.gpucost;
    const now = Date.now() / 1000;
    const colOf = (i) => [u.valToPos(g.starts[i], 'x', true), u.valToPos(g.starts[i] + g.step, 'x', true)];
    const { left, top, width, height } = u.bbox;
    const px = u.ctx.getImageData(Math.round(left), Math.round(top), Math.round(width), Math.round(height)).data;
    const w = Math.round(width);
    // along rows across a column's middle: how often drawn and empty pixels alternate (hatching does)
    const transitions = (i) => {
      const [x0, x1] = colOf(i).map((x) => Math.round(x - left));
      let n = 0;
      for (let f = 0.1; f < 0.95; f += 0.1) {
        const y = Math.round(f * height);
        let last = null;
        for (let x = x0 + 3; x < x1 - 3; x += 1) {
          const on = px[4 * (y * w + x) + 3] > 40;
          if (last !== null && on !== last) n += 1;
          last = on;
        }
      }
      return n;
    };
    const alpha = (i) => { const [x0, x1] = colOf(i).map((x) => Math.round(x - left)); return px[4 * (Math.round(height / 2) * w + Math.round((x0 + x1) / 2)) + 3]; };
    return {
      partial: g.partial,
      expected: g.starts.findIndex((t) => t <= now && now < t + g.step),
      partialStripes: g.partial >= 0 ? transitions(g.partial) : 0,
      fullStripes: g.partial > 0 ? transitions(g.partial - 1) : -1,
      missing: g.missing,
      missingNull: g.missing.every((i) => u.data.slice(1).every((s) => s[i] === null)),
      missingAlpha: g.missing.length ? alpha(g.missing[0]) : 0,
      dataMarked: g.starts.map((_, i) => i).filter((i) => !g.missing.includes(i) && i !== g.partial).some((i) => u.data.slice(1).every((s) => s[i] === null)),
      first: g.missing.length ? g.starts[g.missing[0]] : null,
      step: g.step,
      colors: g.colors,
      labels: g.labels,
      notes: [...document.querySelectorAll('[data-panel="cost-by-team"] .chart-notes [data-note]')].map((e) => [e.dataset.note, e.textContent]),
    };
  });
  const note = (k) => chart.notes.find(([n]) => n === k)?.[1] ?? '';
  check(chart.partial >= 0 && chart.partial === chart.expected && note('partial').includes('so far'),
    `the unfinished bucket (#${chart.partial}, now falls in it) is marked: "${note('partial')}"`);
  check(chart.partialStripes >= 10 && chart.fullStripes >= 0 && chart.fullStripes <= 2 * 9,
    `the unfinished bucket is drawn hatched (${chart.partialStripes} stripe edges across it, ${chart.fullStripes} across the finished one before it)`);
  // the demo's two days of history in a 7-day window: the days before are "no data", not $0
  const bucket = await (await page.request.get(`${base}/api/v1/costs?from=${chart.first}&to=${chart.first + chart.step}`)).json();
  check(chart.missing.length > 0 && chart.missingNull && !chart.dataMarked && chart.missingAlpha > 0 && Number(bucket.fleet.usd) === 0 && bucket.rows.length === 0
    && note('missing').includes('no data'),
  `${chart.missing.length} buckets without data are null (not $0) and drawn as such; the API has nothing for the first: "${note('missing')}"`);
  // colours: a palette for categories, every pair of groups on screen far apart (CIE76 ΔE >= 20)
  const lab = (hex) => {
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255).map((c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    const f = (v) => (v > 0.008856 ? Math.cbrt(v) : 7.787 * v + 16 / 116);
    const [x, y, z] = [(0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b, (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883].map(f);
    return [116 * y - 16, 500 * (x - y), 200 * (y - z)];
  };
  const minDelta = (cs) => {
    let m = Infinity;
    for (let i = 0; i < cs.length; i += 1) for (let j = i + 1; j < cs.length; j += 1) m = Math.min(m, Math.hypot(...lab(cs[i]).map((v, k) => v - lab(cs[j])[k])));
    return m;
  };
  const md = minDelta(chart.colors);
  check(chart.colors.length > 1 && new Set(chart.colors).size === chart.colors.length && md >= 20,
    `cost by team: ${chart.colors.length} groups in ${new Set(chart.colors).size} colours, closest pair ΔE ${md.toFixed(1)} (${chart.labels.map((l, i) => `${l} ${chart.colors[i]}`).join(', ')})`);
  const legendColors = await page.$$eval('[data-panel="cost-by-team"] .chart-legend .swatch', (ss) => ss.map((s) => getComputedStyle(s).backgroundColor));
  check(new Set(legendColors).size === legendColors.length, `the legend's ${legendColors.length} swatches differ`);
  // beyond the palette: 15 groups get 9 hues and one "other"
  const many = await page.evaluate(async () => {
    const m = await import('/assets/charts.js');
    const keys = Array.from({ length: 15 }, (_, i) => `group-${i}`);
    const colors = m.categorical(keys);
    const series = keys.map((k, i) => ({ key: k, label: k, color: colors.get(k), total: 15 - i, values: [1, null] }));
    const merged = m.withOther(series);
    return { hues: keys.slice(0, 9).map((k) => colors.get(k)), rest: [...new Set(keys.slice(9).map((k) => colors.get(k)))], other: m.OTHER, merged: merged.map((s) => [s.label, s.color, s.values]) };
  });
  const last = many.merged[many.merged.length - 1];
  check(new Set(many.hues).size === 9 && minDelta([...many.hues, many.other]) >= 20 && many.rest.length === 1 && many.rest[0] === many.other
    && many.merged.length === 10 && last[0] === 'other (6)' && last[2][0] === 6 && last[2][1] === null,
  `15 groups: 9 distinct hues (closest ΔE ${minDelta([...many.hues, many.other]).toFixed(1)}), the other 6 merged into "${last[0]}"`);
  step('honest charts');
  await page.goto(`${base}/#/?period=7d`);
  await page.waitForSelector('[data-panel="fleet"] .tile');

  // ---- filters and shareable links ----
  await page.click('[data-period="24h"]');
  await page.waitForFunction(() => location.hash.includes('period=24h'));
  await page.waitForFunction(() => window.gpucost?.charts?.get('cost-by-team')?.data[0].length === 24);
  check(true, 'period 24h: hourly buckets, in the URL');
  const clusters = await page.$$eval('#cluster option', (os) => os.map((o) => o.value).filter(Boolean));
  check(clusters.length > 1, `cluster filter offers ${clusters.join(', ')}`);
  const cluster = clusters[0];
  await page.selectOption('#cluster', cluster);
  await page.waitForFunction((c) => location.hash.includes(`cluster=${encodeURIComponent(c)}`), cluster);
  const shared = page.url();
  const page2 = await context.newPage();
  page2.on('console', (m) => { if (m.type() === 'error') problems.push(`console error (shared link): ${m.text()}`); });
  page2.on('pageerror', (e) => problems.push(`page error (shared link): ${e.message}`));
  await page2.goto(shared);
  await page2.waitForSelector('[data-panel="fleet"] .tile');
  const view = await page2.evaluate(() => ({
    cluster: document.getElementById('cluster').value,
    period: document.querySelector('[data-period][aria-pressed="true"]')?.dataset.period,
    clusters: [...document.querySelectorAll('[data-panel="fleet"] .cluster-name')].map((e) => e.firstChild.textContent),
  }));
  check(view.cluster === cluster && view.period === '24h' && view.clusters.length === 1 && view.clusters[0] === cluster,
    `a shared link restores the view: ${JSON.stringify(view)}`);
  await page2.waitForFunction(() => window.gpucost?.charts?.get('cost-by-team')?.data[0].length === 24);
  await page2.close();
  step('filters and shared link');

  // ---- drill-down: team → workload → GPU ----
  await page.goto(`${base}/#/?period=7d`);
  await page.waitForSelector('[data-panel="teams"] tbody tr a');
  const teamLink = page.locator('[data-panel="teams"] tbody tr a[href^="#/team/"]:not([href^="#/team/?"])').first();
  const teamName = await teamLink.textContent();
  await teamLink.click();
  await page.waitForFunction(() => location.hash.startsWith('#/team/'));
  await page.waitForSelector('[data-panel="workloads"] tbody tr');
  await chartHasData('team-cost');
  const h1 = await page.textContent('h1');
  check(h1 === teamName, `team view: ${h1}, ${await page.$$eval('[data-panel="workloads"] tbody tr', (r) => r.length)} workloads`);
  await page.screenshot({ path: join(artifacts, 'team.png'), fullPage: true });
  step('team view');

  const workloadLink = page.locator('[data-panel="workloads"] tbody tr a[href^="#/workload/"]').first();
  const workloadId = await workloadLink.getAttribute('title');
  await workloadLink.click();
  await page.waitForFunction(() => location.hash.startsWith('#/workload/'));
  await page.waitForSelector('[data-panel="gpus"] tbody tr');
  await chartHasData('workload-cost');
  const crumbs = await page.$$eval('#crumbs a, #crumbs span:not(.sep)', (c) => c.map((e) => e.textContent));
  check(crumbs.length === 3 && crumbs[1] === `team ${teamName}`, `workload view ${workloadId}; breadcrumbs ${crumbs.join(' › ')}`);
  await page.screenshot({ path: join(artifacts, 'workload.png'), fullPage: true });
  step('workload view');

  const gpuLink = page.locator('[data-panel="gpus"] tbody tr a[data-gpu]').first();
  const gpuId = await gpuLink.getAttribute('data-gpu');
  await gpuLink.click();
  await page.waitForFunction(() => location.hash.startsWith('#/gpu/'));
  await page.waitForSelector('[data-panel="gpu-workloads"] tbody tr');
  await chartHasData('gpu-cost');
  check((await page.textContent('h1')) === gpuId, `GPU view of ${gpuId}`);
  const gpuCrumbs = await page.$$eval('#crumbs a, #crumbs span:not(.sep)', (c) => c.map((e) => e.textContent));
  check(gpuCrumbs.length === 4 && gpuCrumbs[1] === `team ${teamName}`, `breadcrumbs ${gpuCrumbs.join(' › ')}`);
  const live = fleet.gpus.some((g) => g.gpu === gpuId);
  if (live) {
    await page.waitForSelector('[data-panel="gpu-now"] [data-live="util"]');
    await liveChanges('gpu-now');
    await page.waitForFunction(() => (window.gpucost?.charts?.get('live:gpu')?.data[0].length ?? 0) >= 2);
    check(true, 'the GPU\'s live utilisation chart grows');
  }
  await page.screenshot({ path: join(artifacts, 'gpu.png'), fullPage: true });
  step('GPU view');

  // back to the workload through the breadcrumbs, then the browser's back button
  await page.click('#crumbs a:nth-of-type(3)');
  await page.waitForFunction(() => location.hash.startsWith('#/workload/'));
  await page.goBack();
  await page.waitForFunction(() => location.hash.startsWith('#/gpu/'));
  await page.waitForSelector('[data-panel="gpu-workloads"] tbody tr');
  check(true, 'breadcrumbs and back navigate');

  // ---- dark theme and a phone ----
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(`${base}/#/?period=7d`);
  await page.waitForSelector('[data-panel="fleet"] .tile');
  await chartHasData('cost-by-team');
  await page.waitForSelector('[data-panel="teams"] tbody tr');
  await page.waitForSelector('[data-panel="budgets"] .budget .uplot');
  await page.waitForSelector('[data-panel="top-models"] .bar-row');
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const [r, g, b] = bg.match(/\d+/g).map(Number);
  check(r + g + b < 120, `dark theme follows the system: background ${bg}`);
  await page.screenshot({ path: join(artifacts, 'overview-dark.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await page.waitForSelector('[data-panel="fleet"] .tile');
  await chartHasData('cost-by-team');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `phone width: no sideways scrolling (${overflow} px over)`);
  await page.screenshot({ path: join(artifacts, 'phone.png'), fullPage: false });
  // every dollar cell of every table is on screen at 390 px (the rows become cards; dollars stay)
  const moneyOnScreen = async (what) => {
    await page.waitForSelector('table.data tbody td.money');
    const cells = await page.$$eval('table.data td.money', (tds) => tds.map((td) => {
      const r = td.getBoundingClientRect();
      return { table: td.closest('table').dataset.table, col: td.dataset.col, text: td.textContent, left: r.left, right: r.right, width: r.width };
    }));
    const off = cells.filter((c) => !(c.width > 0 && c.left >= 0 && c.right <= 390));
    const tables = [...new Set(cells.map((c) => c.table))];
    check(cells.length > 0 && off.length === 0,
      `${what} at 390 px: ${cells.length} dollar cells of ${tables.join(', ')} all within the screen${off.length ? `; off: ${JSON.stringify(off.slice(0, 4))}` : ` (rightmost ${Math.max(...cells.map((c) => c.right)).toFixed(0)} px)`}`);
  };
  await page.waitForSelector('[data-panel="teams"] tbody td.money');
  await moneyOnScreen('overview');
  await page.locator('[data-panel="teams"]').screenshot({ path: join(artifacts, 'phone-teams.png') });
  await page.goto(`${base}/#/team/${encodeURIComponent(teamName)}?period=7d`);
  await page.waitForSelector('[data-panel="workloads"] tbody td.money');
  await moneyOnScreen(`team ${teamName}`);
  step('dark theme and phone');

  check(problems.length === 0, `no console errors, page errors or failed requests${problems.length ? `:\n  ${problems.join('\n  ')}` : ''}`);
  await context.close();
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
console.log(checks.join('\n'));
console.log(`steps: ${steps.join('; ')}`);
console.log(`screenshots in ${artifacts}; total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
if (failed) {
  if (problems.length) console.error(`browser problems:\n  ${problems.join('\n  ')}`);
  console.error(`FAIL: ${failed.stack || failed}`);
  process.exit(1);
}
console.log('PASS');
