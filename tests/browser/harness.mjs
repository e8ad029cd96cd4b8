// What every browser test of the dashboard shares: the collector under test, Debian's Chromium through npm
// playwright-core, where screenshots go, a deadline, and the record of checks and steps.
//
// Environment: GPUCOST_URL (the collector, required); GPUCOST_PLAYWRIGHT_DIR (a folder whose node_modules
// holds playwright-core; default ~/.cache/gpucost/playwright, where scripts/test installs it);
// GPUCOST_CHROMIUM (default /usr/bin/chromium); GPUCOST_BROWSER_ARTIFACTS (where screenshots go; default a
// temporary folder); GPUCOST_BROWSER_TIMEOUT_MS (overrides a test's deadline).

import { mkdirSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const base = process.env.GPUCOST_URL;
if (!base) {
  console.error('GPUCOST_URL is not set (the collector to test, e.g. http://127.0.0.1:8080)');
  process.exit(2);
}
const pwDir = process.env.GPUCOST_PLAYWRIGHT_DIR || join(homedir(), '.cache/gpucost/playwright');
const { chromium } = createRequire(join(resolve(pwDir), 'package.json'))('playwright-core');
const executablePath = process.env.GPUCOST_CHROMIUM || '/usr/bin/chromium';
export const artifacts = process.env.GPUCOST_BROWSER_ARTIFACTS || mkdtempSync(join(tmpdir(), 'gpucost-browser-'));
mkdirSync(artifacts, { recursive: true });

/** When the test started. */
export const t0 = Date.now();
/** Every check made, `ok  …` or `FAIL …`, in order. */
export const checks = [];
/** How long each named step took. */
export const steps = [];
let stepStart = Date.now();

/** Ends the step `name` (its time since the last step). */
export function step(name) {
  const now = Date.now();
  steps.push(`${name}: ${now - stepStart} ms`);
  stepStart = now;
}

/** Records a check; a failed one ends the test with `what`. */
export function check(ok, what) {
  checks.push(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) throw new Error(what);
}

/** Fails `name` (e.g. "the browser test") when it runs longer than `defaultMs` (or GPUCOST_BROWSER_TIMEOUT_MS). */
export function deadline(name, defaultMs) {
  const limitMs = Number(process.env.GPUCOST_BROWSER_TIMEOUT_MS || defaultMs);
  setTimeout(() => { console.error(`FAIL: ${name} did not finish within ${limitMs / 1000} s`); process.exit(3); }, limitMs).unref();
}

/** Debian's Chromium, headless. */
export function launch() {
  return chromium.launch({ executablePath, args: ['--no-sandbox'] });
}

/**
 * A page in a fresh context (1440 × 1000, light, 20 s default timeouts) whose console errors, page errors and
 * failed requests (HTTP 400 and above) are pushed onto `problems`, for the test's closing check.
 */
export async function watchedPage(browser, problems, { width = 1440, height = 1000, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, colorScheme, deviceScaleFactor: 1 });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  return { context, page };
}

/**
 * Waits until the page's header is drawn (the period buttons and the first view): a click on a header link
 * before then can land on whatever the header's layout shift puts under the pointer.
 */
export async function headerReady(page) {
  await page.waitForSelector('#periods button');
  await page.waitForSelector('#main > *');
  await page.evaluate(() => new Promise((resolve) => { requestAnimationFrame(() => requestAnimationFrame(resolve)); }));
}
