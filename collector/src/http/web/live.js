// The fleet now: `GET api/v1/fleet` once, then `GET api/v1/live` (server-sent events, `event: fleet`,
// the same JSON every two seconds). Views subscribe; the last few minutes are kept for live sparklines.

const listeners = new Set();
const statusListeners = new Set();
const HISTORY = 150; // points kept per series: five minutes at one event every two seconds

export const live = {
  fleet: null,
  status: 'connecting',
  /** Fleet-wide utilisation, one point per event: {t (s), util, busy, gpus, usdPerHour}. */
  history: [],
  /** Per GPU: [{t, util, mem, power}]. */
  gpuHistory: new Map(),
  events: 0,
};
window.gpucost = Object.assign(window.gpucost || {}, { live });

let source = null;
let retry = null;

function setStatus(s, detail = '') {
  live.status = s;
  live.statusDetail = detail;
  for (const fn of statusListeners) fn(s, detail);
}

function publish(fleet) {
  if (!fleet || !Array.isArray(fleet.gpus)) return;
  live.fleet = fleet;
  live.events += 1;
  const t = Date.parse(fleet.at) / 1000 || Date.now() / 1000;
  const last = live.history[live.history.length - 1];
  if (!last || last.t !== t) {
    const tot = fleet.totals || {};
    live.history.push({
      t, util: Number(tot.utilization_pct ?? 0), busy: Number(tot.busy ?? 0), gpus: Number(tot.gpus ?? fleet.gpus.length),
      usdPerHour: Number(tot.cost_usd_per_hour ?? 0),
    });
    if (live.history.length > HISTORY) live.history.shift();
    for (const g of fleet.gpus) {
      let h = live.gpuHistory.get(g.gpu);
      if (!h) live.gpuHistory.set(g.gpu, (h = []));
      h.push({ t, util: Number(g.utilization_pct ?? 0), mem: Number(g.memory_used_bytes ?? 0), power: Number(g.power_watts ?? 0) });
      if (h.length > HISTORY) h.shift();
    }
  }
  for (const fn of listeners) {
    try { fn(fleet); } catch (e) { console.warn('live view update failed', e); }
  }
}

function later(fn, ms) {
  clearTimeout(retry);
  retry = setTimeout(fn, ms);
}

/** Starts the stream: a first snapshot, then server-sent events; reconnects by itself. */
export async function start() {
  try {
    const r = await fetch('api/v1/fleet', { headers: { accept: 'application/json' } });
    if (r.status === 404) {
      setStatus('unavailable', 'this collector has no live fleet view (GET /api/v1/fleet: 404)');
      later(start, 30000);
      return;
    }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    publish(await r.json());
  } catch (e) {
    setStatus('down', `fleet: ${e.message}`);
    later(start, 5000);
    return;
  }
  connect();
}

function connect() {
  if (source) source.close();
  source = new EventSource('api/v1/live');
  source.addEventListener('open', () => setStatus('live'));
  source.addEventListener('fleet', (e) => {
    if (live.status !== 'live') setStatus('live');
    try { publish(JSON.parse(e.data)); } catch (err) { console.warn('bad fleet event', err); }
  });
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      setStatus('down', 'stream closed; retrying');
      later(start, 5000);
    } else {
      setStatus('reconnecting');
    }
  });
}

/** Calls `fn(fleet)` now (when known) and on every update; returns the unsubscribe function. */
export function subscribe(fn) {
  listeners.add(fn);
  if (live.fleet) fn(live.fleet);
  return () => listeners.delete(fn);
}

export function onStatus(fn) {
  statusListeners.add(fn);
  fn(live.status, live.statusDetail);
  return () => statusListeners.delete(fn);
}

/** Totals over the GPUs `keep` selects (the fleet's own totals when it selects all). */
export function totals(fleet, keep) {
  const gpus = fleet.gpus.filter(keep);
  if (gpus.length === fleet.gpus.length && fleet.totals) {
    return { gpus: fleet.totals.gpus ?? gpus.length, busy: fleet.totals.busy, util: fleet.totals.utilization_pct, usdPerHour: fleet.totals.cost_usd_per_hour };
  }
  const util = gpus.length ? gpus.reduce((a, g) => a + Number(g.utilization_pct ?? 0), 0) / gpus.length : 0;
  return { gpus: gpus.length, busy: gpus.filter((g) => (g.holders || []).length > 0).length, util, usdPerHour: null };
}
