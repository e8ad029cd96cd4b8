// Charts, drawn by uPlot (vendored: assets/vendor/uPlot.iife.min.js, MIT). Every chart is registered in
// `window.gpucost.charts` by name, so the browser tests can check that it holds data.

import { usdShort, when } from './api.js';

const uPlot = window.uPlot;
export const registry = new Map();
window.gpucost = Object.assign(window.gpucost || {}, { charts: registry });

/**
 * A palette made for categorical data: Tableau 10's nine hues (its grey is kept for "other"), which read on
 * light and dark backgrounds and stay apart for the common colour-vision deficiencies (every pair differs
 * by ΔE76 > 20). Groups beyond the ninth get OTHER and are drawn as one "other" group, so two groups on
 * screen never share a near-identical colour.
 */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f'];
export const OTHER = '#9aa3ae';
const NONE = OTHER;
const assigned = new Map();

/**
 * A stable colour per name (teams): the same team has the same colour in every view. The first
 * PALETTE.length names get a hue each; later ones OTHER (they are grouped as "other" in charts).
 */
export function colorFor(name) {
  if (name === '' || name === null || name === undefined) return NONE;
  if (!assigned.has(name)) assigned.set(name, assigned.size < PALETTE.length ? PALETTE[assigned.size] : OTHER);
  return assigned.get(name);
}
/** Hands out colours to `names` alphabetically, so the order data arrives in does not change them. */
export function assignColors(names) {
  for (const n of [...names].filter((x) => x !== '').sort()) colorFor(n);
}
/**
 * Colours for the top PALETTE.length of `totals` (name → amount; the largest first get a hue each,
 * alphabetically among themselves so a reload keeps them), before any other name asks for one.
 */
export function assignTop(totals) {
  const top = [...totals].filter(([n]) => n !== '').sort((a, b) => b[1] - a[1]).slice(0, PALETTE.length).map(([n]) => n);
  assignColors(top);
}

/**
 * Colours for `keys`, largest first: the first `n` get the palette in order, the rest OTHER. A pure
 * function (the charts of other dimensions use it; the browser test checks it).
 */
export function categorical(keys, n = PALETTE.length) {
  return new Map(keys.map((k, i) => [k, i < Math.min(n, PALETTE.length) ? PALETTE[i] : OTHER]));
}

/**
 * Series with a colour of their own stay; the rest (OTHER) become one "other" series, on top of the
 * stack. `series`: [{key, label, color, values, total}].
 */
export function withOther(series) {
  const own = series.filter((s) => s.color !== OTHER);
  const rest = series.filter((s) => s.color === OTHER);
  if (rest.length <= 1) return series;
  const values = rest[0].values.map((_, i) => (rest.every((s) => s.values[i] === null) ? null : rest.reduce((a, s) => a + (s.values[i] ?? 0), 0)));
  return [...own, {
    key: null, other: rest.map((s) => s.key), label: `other (${rest.length})`, color: OTHER, values,
    total: rest.reduce((a, s) => a + s.total, 0),
  }];
}

export const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function axisStyle() {
  const font = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  const common = { stroke: cssVar('--muted'), font, ticks: { show: false }, grid: { stroke: cssVar('--grid'), width: 1 } };
  return common;
}

const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC');

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n) => String(n).padStart(2, '0');
/** Time-axis labels in UTC: "Nov 28" for days, "18:00" within a day (with the date under midnight). */
/** Whole seconds at least: the live charts span seconds, and uPlot would otherwise tick in milliseconds. */
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400];
const timeAxis = { grid: { show: false }, values: timeValues, incrs: TIME_INCRS, space: 64 };
function timeValues(u, splits, axisIdx, space, incr) {
  return splits.map((v, i) => {
    const d = new Date(v * 1000);
    const day = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
    if (incr >= 86400) return day;
    if (incr < 60) return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return i === 0 || (d.getUTCHours() === 0 && d.getUTCMinutes() === 0) ? `${hm}\n${day}` : hm;
  });
}

/** Keeps a chart as wide as its box. */
function fit(u, el, height) {
  const ro = new ResizeObserver(() => {
    const w = Math.floor(el.clientWidth);
    if (w > 0 && w !== u.width) u.setSize({ width: w, height });
  });
  ro.observe(el);
  return ro;
}

/** A hover box listing the series at the cursor (raw values, largest first). */
function tooltip(el, { title, rows }) {
  const tip = document.createElement('div');
  tip.className = 'tip';
  el.append(tip);
  return {
    hooks: {
      setCursor: [(u) => {
        const i = u.cursor.idx;
        if (i === null || i === undefined || u.cursor.left < 0) { tip.style.display = 'none'; return; }
        const items = rows(i).filter((r) => r.value !== null && r.value !== undefined);
        if (!items.length) { tip.style.display = 'none'; return; }
        tip.replaceChildren();
        const w = document.createElement('div');
        w.className = 'when';
        w.textContent = title(i);
        tip.append(w);
        for (const r of items) {
          const row = document.createElement('div');
          row.className = 'row';
          const a = document.createElement('span');
          const sw = document.createElement('i');
          sw.className = 'swatch';
          sw.style.background = r.color;
          a.append(sw, r.label);
          const b = document.createElement('b');
          b.textContent = r.text;
          row.append(a, b);
          tip.append(row);
        }
        tip.style.display = 'block';
        const left = u.over.offsetLeft + u.cursor.left;
        const x = left + 16 + tip.offsetWidth > el.clientWidth ? left - tip.offsetWidth - 16 : left + 16;
        tip.style.left = `${Math.max(0, x)}px`;
        tip.style.top = `${u.over.offsetTop + 8}px`;
      }],
    },
  };
}

function mount(el, name, opts, data, height) {
  destroy(el);
  opts.width = Math.max(200, Math.floor(el.clientWidth || 600));
  opts.height = height;
  const u = new uPlot(opts, data, el);
  const ro = fit(u, el, height);
  el._chart = { u, ro, name };
  if (name) registry.set(name, u);
  return u;
}

/** Removes the chart in `el`, if any. */
export function destroy(el) {
  const c = el._chart;
  if (!c) return;
  c.ro.disconnect();
  c.u.destroy();
  if (c.name && registry.get(c.name) === c.u) registry.delete(c.name);
  el._chart = null;
  el.querySelectorAll('.tip').forEach((t) => t.remove());
}

/** The runs of consecutive indices in `set` as [first, last] pairs. */
function runs(set) {
  const out = [];
  for (const i of [...set].sort((x, y) => x - y)) {
    if (out.length && out[out.length - 1][1] === i - 1) out[out.length - 1][1] = i;
    else out.push([i, i]);
  }
  return out;
}

/** Diagonal stripes over the canvas rectangle [x0, x1] × [y0, y1], `shift` of a period along. */
function stripes(ctx, x0, x1, y0, y1, period, width, shift = 0) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(x0, y0, x1 - x0, y1 - y0);
  ctx.clip();
  ctx.lineWidth = width;
  ctx.beginPath();
  for (let x = x0 - (y1 - y0) - period + shift; x < x1 + period; x += period) {
    ctx.moveTo(x, y1);
    ctx.lineTo(x + (y1 - y0), y0);
  }
  ctx.stroke();
  ctx.restore();
}

/**
 * Stacked bars over time. `xs`: bucket starts (s), `step`: bucket length, `series`: [{label, color,
 * values}] bottom first. Drawn as cumulative bars, top of the stack first, each painted over the last.
 * `partial`: the index of the unfinished bucket (now falls in it), drawn hatched; `missing`: indices of
 * buckets without data (a null value, not zero), drawn as a grey band reading "no data". Both are kept on
 * the chart as `u.gpucost` for the browser test.
 */
export function stackedBars(el, { name, xs, step, range, series, height = 260, fmt = usdShort, partial = -1, missing = new Set() }) {
  const mids = xs.map((t) => t + step / 2);
  const cum = [];
  let acc = xs.map(() => 0);
  for (const s of series) {
    acc = acc.map((v, i) => v + (s.values[i] ?? 0));
    cum.push(acc.map((v, i) => (missing.has(i) ? null : v)));
  }
  const order = series.map((_, i) => i).reverse();
  const ax = axisStyle();
  const bars = uPlot.paths.bars({ size: [0.78, 64], align: 0, gap: 1 });
  const span = (i) => `${when(xs[i], { time: step < 86400 })}${step < 86400 ? ` – ${when(xs[i] + step).slice(-5)}` : ''} UTC`;
  const faint = cssVar('--faint');
  const muted = cssVar('--muted');
  const tip = tooltip(el, {
    title: (i) => `${span(i)}${i === partial ? ' · so far (unfinished)' : ''}`,
    rows: (i) => (missing.has(i)
      ? [{ label: 'no data recorded', color: faint, value: 0, text: '—' }]
      : series.map((s) => ({ label: s.label, color: s.color, value: s.values[i], text: fmt(s.values[i] ?? 0) }))
        .filter((r) => r.value > 0).sort((a, b) => b.value - a.value)),
  });
  const column = (u, i) => [u.valToPos(xs[i], 'x', true), u.valToPos(xs[i] + step, 'x', true)];
  const px = (v) => Math.round(v * uPlot.pxRatio);
  // under the bars: the bands of buckets without data, and the unfinished bucket's hatching
  const bands = (u) => {
    const { ctx } = u;
    const { top, height: h } = u.bbox;
    ctx.save();
    for (const [f, l] of runs(missing)) {
      const x0 = column(u, f)[0];
      const x1 = column(u, l)[1];
      ctx.fillStyle = faint;
      ctx.globalAlpha = 0.14;
      ctx.fillRect(x0, top, x1 - x0, h);
      ctx.globalAlpha = 1;
      ctx.fillStyle = muted;
      ctx.font = `${px(11)}px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      if (ctx.measureText('no data').width < x1 - x0 - px(6)) ctx.fillText('no data', (x0 + x1) / 2, top + h / 2);
    }
    if (partial >= 0) {
      const [x0, x1] = column(u, partial);
      ctx.strokeStyle = faint;
      ctx.globalAlpha = 0.5;
      stripes(ctx, x0, x1, top, top + h, px(7), px(2), px(3.5));
    }
    ctx.restore();
  };
  // over the bars: the unfinished bucket's bars get see-through stripes, between those of its band
  const hatch = (u) => {
    if (partial < 0) return;
    const [x0, x1] = column(u, partial);
    const { ctx } = u;
    ctx.save();
    ctx.globalCompositeOperation = 'destination-out';
    ctx.strokeStyle = '#000';
    stripes(ctx, x0, x1, u.bbox.top, u.bbox.top + u.bbox.height, px(7), px(2.5));
    ctx.restore();
  };
  const opts = {
    tzDate: utc,
    legend: { show: false },
    cursor: { points: { show: false }, drag: { x: false, y: false } },
    scales: { x: { time: true, range: () => [range[0], range[1]] }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] } },
    axes: [{ ...ax, ...timeAxis }, { ...ax, size: 56, values: (u, v) => v.map(fmt) }],
    series: [{}, ...order.map((i) => ({
      label: series[i].label, stroke: series[i].color, fill: series[i].color, width: 0, paths: bars, points: { show: false },
    }))],
    hooks: { ...tip.hooks, drawAxes: [bands], draw: [hatch] },
  };
  const u = mount(el, name, opts, [mids, ...order.map((i) => cum[i])], height);
  u.gpucost = { partial, missing: [...missing].sort((x, y) => x - y), step, starts: xs, colors: series.map((s) => s.color), labels: series.map((s) => s.label) };
  return u;
}

/**
 * Lines over time. `series`: [{label, color, values, dash, width, fill}] on the shared `xs` (s); a null
 * value is a gap.
 */
export function lines(el, { name, xs, range, series, height = 200, fmt = usdShort, yRange, timeFmt, axes = true, tipRows }) {
  const ax = axisStyle();
  const tip = axes ? tooltip(el, {
    title: (i) => timeFmt ? timeFmt(xs[i]) : `${when(xs[i])} UTC`,
    rows: tipRows || ((i) => series.map((s) => ({ label: s.label, color: s.color, value: s.values[i], text: fmt(s.values[i]) })).filter((r) => r.value !== null)),
  }) : { hooks: {} };
  const opts = {
    tzDate: utc,
    legend: { show: false },
    padding: axes ? undefined : [2, 0, 0, 0],
    cursor: axes ? { points: { size: 6 }, drag: { x: false, y: false } } : { show: false },
    scales: {
      x: { time: true, ...(range ? { range: () => [range[0], range[1]] } : {}) },
      y: { range: yRange || ((u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1]) },
    },
    axes: axes ? [{ ...ax, ...timeAxis }, { ...ax, size: 56, values: (u, v) => v.map(fmt) }] : [{ show: false }, { show: false }],
    series: [{}, ...series.map((s) => ({
      label: s.label, stroke: s.color, width: s.width ?? 2, dash: s.dash, fill: s.fill, spanGaps: false,
      points: { show: s.points ?? false, size: 5, fill: s.color },
    }))],
    hooks: tip.hooks,
  };
  return mount(el, name, opts, [xs, ...series.map((s) => s.values)], height);
}

/** Replaces a line chart's data in place (live charts), keeping its size and options. */
export function update(el, xs, valueArrays) {
  const c = el._chart;
  if (!c) return false;
  c.u.setData([xs, ...valueArrays]);
  return true;
}
