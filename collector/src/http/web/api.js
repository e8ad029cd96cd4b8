// The collector's JSON API, the dashboard's state (all of it in the URL, so every view is a shareable
// link), time windows and number formatting.

export const HOUR = 3600;
export const DAY = 86400;

/** GET api/v1/<path>?<params> as JSON; a non-2xx answer throws with the API's `error` text. */
export async function getJSON(path, params = {}, { signal } = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') qs.set(k, v);
  const q = qs.toString();
  const r = await fetch(`api/v1/${path}${q ? `?${q}` : ''}`, { headers: { accept: 'application/json' }, signal });
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { msg = (await r.json()).error || msg; } catch { /* not JSON */ }
    throw new Error(`${path}: ${msg}`);
  }
  return r.json();
}

// ---- state in the URL: #/<view>/<id>?period=7d&cluster=…&team=…&workload=… ----

export const PERIODS = [
  ['24h', '24 h'], ['7d', '7 d'], ['30d', '30 d'], ['mtd', 'Month'], ['lm', 'Last month'],
];
const DEFAULT_PERIOD = '7d';
const KEEP = ['period', 'cluster', 'from', 'to', 'rows'];
// the allocation explorer's own parameters (explorer.js), kept while one stays in it
const EXPLORE = ['by', 'filter', 'policy', 'idle', 'chart'];

export function parseRoute(hash = location.hash) {
  const h = hash.replace(/^#\/?/, '');
  const q = h.indexOf('?');
  const path = q < 0 ? h : h.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : h.slice(q + 1));
  const slash = path.indexOf('/');
  const view = (slash < 0 ? path : path.slice(0, slash)) || 'overview';
  let id = null;
  if (slash >= 0) {
    try { id = decodeURIComponent(path.slice(slash + 1)); } catch { id = path.slice(slash + 1); }
  }
  const period = PERIODS.some(([p]) => p === params.get('period')) ? params.get('period') : DEFAULT_PERIOD;
  return {
    view, id, period,
    cluster: params.get('cluster') || '',
    from: params.get('from') || '', to: params.get('to') || '',
    team: params.get('team'), workload: params.get('workload'),
    ...Object.fromEntries(EXPLORE.map((k) => [k, params.get(k)])),
    // rows a page in the tables (25 unless the URL says)
    rows: /^\d+$/.test(params.get('rows') || '') && Number(params.get('rows')) >= 1 ? Math.min(1000, Number(params.get('rows'))) : null,
  };
}

/** A link to `view`/`id` keeping the period and cluster of `state`, plus `extra` query parameters. */
export function link(state, view, id, extra = {}) {
  const p = new URLSearchParams();
  for (const k of view === 'explore' && state.view === 'explore' ? [...KEEP, ...EXPLORE] : KEEP) if (state[k]) p.set(k, state[k]);
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined || v === null) p.delete(k); else p.set(k, v);
  }
  const path = view === 'overview' ? '' : `${view}/${encodeURIComponent(id ?? '')}`;
  const q = p.toString();
  return `#/${path}${q ? `?${q}` : ''}`;
}

// ---- time windows ----

const iso = (t) => new Date(t * 1000).toISOString().replace('.000Z', 'Z');
export { iso };

function parseTime(s) {
  if (/^\d+$/.test(s)) return Number(s);
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : Math.floor(t / 1000);
}

function monthStart(t, back = 0) {
  const d = new Date(t * 1000);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - back, 1) / 1000;
}

/**
 * The window a state covers: [from, to) in Unix seconds and the chart step (1 h, 6 h or a day; a day means
 * one query grouped by `day`, shorter steps one query per bucket).
 */
export function timeWindow(state, now = Date.now() / 1000) {
  const endHour = Math.ceil(now / HOUR) * HOUR;
  let from; let to; let step;
  const f = state.from && parseTime(state.from);
  if (f) {
    from = Math.floor(f / HOUR) * HOUR;
    const t = state.to && parseTime(state.to);
    to = t ? Math.ceil(t / HOUR) * HOUR : endHour;
    const span = to - from;
    step = span <= 2 * DAY ? HOUR : span <= 8 * DAY ? 6 * HOUR : DAY;
    if (step === DAY) from = Math.floor(from / DAY) * DAY;
  } else {
    switch (state.period) {
      case '24h': to = endHour; from = to - DAY; step = HOUR; break;
      case '30d': to = endHour; from = Math.floor(now / DAY) * DAY - 29 * DAY; step = DAY; break;
      case 'mtd': to = endHour; from = monthStart(now); step = DAY; break;
      case 'lm': to = monthStart(now); from = monthStart(now, 1); step = DAY; break;
      default: to = Math.ceil(now / (6 * HOUR)) * 6 * HOUR; from = to - 7 * DAY; step = 6 * HOUR;
    }
  }
  return { from, to, step, month: new Date(Math.max(from, to - 1) * 1000).toISOString().slice(0, 7) };
}

/** A filter value as the API reads it: `\,` a comma inside the value, `\\` a backslash. */
export const filterValue = (v) => String(v).replace(/\\/g, '\\\\').replace(/,/g, '\\,');

/** The terms of a `filter=` value, split at the commas that are not escaped (each term kept as written). */
export function filterTerms(s) {
  return String(s || '').split(/(?<!(?:^|[^\\])(?:\\\\)*\\),/);
}

/** A term's value shown as it is: its escapes undone. */
export const termText = (t) => t.replace(/\\([\\,])/g, '$1');

/** The `filter=` value for dimension → value pairs (empty values kept: `team=` is "no team"). */
export function filterOf(pairs) {
  return Object.entries(pairs).filter(([, v]) => v !== undefined && v !== null).map(([k, v]) => `${k}=${filterValue(v)}`).join(',');
}

/**
 * Cost per time bucket: [{t, rows, data}] where `rows` are the costs API's rows for [t, t + step) grouped
 * by `groupBy` (one row when it is empty) and `data` whether the ledger holds anything for that bucket at
 * all (any GPU observed, fleet-wide): a bucket without data is not a bucket of zero cost.
 */
export async function costSeries(win, groupBy, filter, { policy, signal } = {}) {
  if (win.step === DAY) {
    const [r, usage] = await Promise.all([
      getJSON('costs', { from: iso(win.from), to: iso(win.to), group_by: [...groupBy, 'day'].join(','), filter, policy }, { signal }),
      getJSON('usage', { from: iso(win.from), to: iso(win.to), group_by: 'day' }, { signal }),
    ]);
    const observed = new Set(usage.rows.filter((x) => num(x.gpu_seconds) > 0).map((x) => Date.parse(`${x.day}T00:00:00Z`) / 1000));
    const buckets = new Map();
    for (let t = win.from; t < win.to; t += DAY) buckets.set(t, []);
    for (const row of r.rows) {
      const t = Date.parse(`${row.day}T00:00:00Z`) / 1000;
      if (!buckets.has(t)) buckets.set(t, []);
      buckets.get(t).push(row);
    }
    return [...buckets].sort((a, b) => a[0] - b[0]).map(([t, rows]) => ({ t, rows, data: rows.length > 0 || observed.has(t) }));
  }
  const starts = [];
  for (let t = win.from; t < win.to; t += win.step) starts.push(t);
  return Promise.all(starts.map(async (t) => {
    const r = await getJSON('costs', {
      from: iso(t), to: iso(Math.min(t + win.step, win.to)), group_by: groupBy.join(','), filter, policy,
    }, { signal });
    const data = r.rows.length > 0 || num(r.fleet?.usd) > 0 || num(r.unpriced?.gpu_seconds) > 0;
    return { t, rows: r.rows, data };
  }));
}

// ---- formatting ----

const nf0 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export const num = (v) => Number(v ?? 0);

/** Dollars: $12,345 / $123.45 / $0.0123. */
export function usd(v) {
  const n = num(v);
  const a = Math.abs(n);
  if (a >= 10000) return `$${nf0.format(n)}`;
  if (a >= 1 || a === 0) return `$${nf2.format(n)}`;
  return `$${n.toPrecision(2)}`;
}

/** Dollars for axes: $1.2k, $340, $0.50. */
export function usdShort(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `$${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `$${+(v / 1e3).toFixed(1)}k`;
  if (a >= 10 || a === 0) return `$${Math.round(v)}`;
  return `$${+v.toFixed(2)}`;
}

export const pct = (v, digits = 0) => `${num(v).toFixed(digits)}%`;
export const gpuHours = (seconds) => {
  const h = num(seconds) / HOUR;
  return h >= 100 ? nf0.format(h) : nf1.format(h);
};
export function bytes(b) {
  const g = num(b) / 2 ** 30;
  return g >= 10 ? `${nf0.format(g)} GiB` : `${nf1.format(g)} GiB`;
}
export const kwh = (v) => (num(v) >= 100 ? nf0.format(num(v)) : nf1.format(num(v)));
export const count = (v) => nf0.format(num(v));

/** used ÷ held GPU time, in percent (null when nothing was held). */
export function efficiency(row) {
  const held = num(row.held_gpu_seconds);
  return held > 0 ? (100 * num(row.used_gpu_seconds)) / held : null;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** "Nov 28 21:00" in UTC (the ledger's days are UTC days). */
export function when(t, { time = true } = {}) {
  const d = new Date(t * 1000);
  const day = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
  return time ? `${day} ${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}` : day;
}
export function clock(isoTime) {
  const d = new Date(isoTime);
  return Number.isNaN(d.getTime()) ? '—' : d.toISOString().slice(11, 19);
}

/** A holder's team as the costs API names it: the live view gives workloads no rule names a payer for no team. */
export const teamKey = (t) => (t === '' || t === null || t === undefined ? 'unattributed' : t);
export const teamName = (t) => teamKey(t);
export const modelName = (m) => (m === '' || m === null || m === undefined ? '(no model)' : m);

/** A workload id (`pod:<cluster>/<ns>/<pod>/<container>`, `ecs:<cluster>/<family>/<task id>`, …) as a title, a subtitle and a kind. */
export function workloadLabel(id) {
  const i = (id || '').indexOf(':');
  const kind = i < 0 ? '' : id.slice(0, i);
  const rest = i < 0 ? id || '' : id.slice(i + 1);
  const parts = rest.split('/');
  switch (kind) {
    case 'pod': return { kind, title: parts[2] ?? rest, sub: `${parts[0]} / ${parts[1]}${parts[3] ? ` · ${parts[3]}` : ''}` };
    case 'ecs': {
      // `ecs:<task arn>`: how ledgers written before tasks were named by family keep them.
      if (rest.startsWith('arn:')) { const arn = rest.split('/'); return { kind, title: arn.slice(-1)[0], sub: arn.slice(-2, -1)[0] ?? '' }; }
      const task = `task ${parts.slice(-1)[0].slice(0, 8)}`;
      return { kind, title: parts.length > 2 ? parts[1] : task, sub: `${parts[0]} · ${task}` };
    }
    case 'slurm': return { kind, title: `job ${parts.slice(1).join('/')}`, sub: parts[0] };
    case 'user': return { kind, title: parts[2] ?? rest, sub: `${parts[0]} / ${shortNode(parts[1] ?? '')}` };
    case 'unidentified': return { kind: '?', title: 'unidentified', sub: `${parts[0]} / ${shortNode(parts[1] ?? '')}` };
    default: return { kind: kind || '?', title: rest, sub: '' };
  }
}

/** `ip-10-0-1-2.ec2.internal` → `ip-10-0-1-2`. */
export const shortNode = (n) => (/^\d+\.\d+\.\d+\.\d+$/.test(n) ? n : String(n).split('.')[0]);
export const shortGpu = (uuid) => (uuid && uuid.length > 16 ? `${uuid.slice(0, 12)}…` : uuid);
