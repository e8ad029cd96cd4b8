// The recommendations page (#/recommendations?kind=cheaper_gpu|mig_profile|share|release): right-sizing per
// workload over the last 14 days (GET /api/v1/recommendations, docs/recommendations.md) — what to move it to,
// the monthly cost now and proposed, the saving and the confidence, sortable. A row's "evidence" opens what the
// proposal rests on beside it: hours seen, peak memory against the current and proposed GPU's memory, p95 and
// highest SM, the prices used; its workloads in the explorer are one link away.

import { bytes, filterValue, getJSON, link, num, pct, usd } from './api.js';
import { PAGE_SIZE, dataTable, show } from './table.js';
import { h, panel } from './views.js';

const KINDS = [['', 'Every kind'], ['cheaper_gpu', 'Cheaper GPU'], ['mig_profile', 'MIG profile'], ['share', 'Share'], ['release', 'Release']];
const KIND_TEXT = Object.fromEntries(KINDS);

function pageKind() {
  const q = location.hash.indexOf('?');
  const v = new URLSearchParams(q < 0 ? '' : location.hash.slice(q + 1)).get('kind');
  return KINDS.some(([k]) => k && k === v) ? v : '';
}

/** A bar of `value` out of `max`, labelled. */
const bar = (label, value, max, text) => h('div.ev-bar', { 'data-bar': label },
  h('span.ev-label', label),
  h('span.ev-track', h('span.ev-fill', { style: { width: `${Math.min(100, max > 0 ? (100 * value) / max : 0).toFixed(1)}%` } })),
  h('span.ev-text', text));

function evidence(state, r) {
  const proposed = r.proposed;
  const room = Math.max(r.current.gpu_memory_bytes, proposed ? proposed.gpu_memory_bytes : 0);
  const offer = (o) => `${o.instance_type} · ${o.gpu_model}${o.mig_profile ? ` MIG ${o.mig_profile}` : ''} · ${usd(o.usd_per_instance_hour)}/h ÷ ${o.gpus_per_instance} GPUs × ${o.share_numerator}/${o.share_denominator} = ${usd(o.usd_per_gpu_hour)} per GPU-hour`;
  const controller = `${r.controller_kind}/${r.controller_name}`;
  return h('div.evidence', { 'data-evidence': r.group },
    h('h3', r.group),
    h('p', r.proposal),
    bar('peak memory', num(r.peak_memory_bytes), room, r.peak_memory_bytes === null ? 'unknown' : bytes(r.peak_memory_bytes)),
    bar('current GPU memory', r.current.gpu_memory_bytes, room, bytes(r.current.gpu_memory_bytes)),
    proposed ? bar('proposed memory', proposed.gpu_memory_bytes, room, bytes(proposed.gpu_memory_bytes)) : null,
    bar('p95 SM', r.sm_p95_pct, 100, pct(r.sm_p95_pct)),
    bar('highest SM', r.sm_max_pct, 100, pct(r.sm_max_pct)),
    h('ul',
      h('li', `${r.hours_seen} h seen, ${(r.gpus_held_milli / 1000).toFixed(3)} GPUs held on average, confidence ${pct(100 * r.confidence)}`),
      h('li', `now: ${offer(r.current)}`),
      proposed ? h('li', `proposed: ${offer(proposed)}`) : h('li', `spent in the window: ${usd(r.spent_usd)}`),
      h('li', `monthly = per GPU-hour × 730 × ${r.gpus_held_milli} ÷ 1000: ${usd(r.current_usd_monthly)} → ${usd(r.proposed_usd_monthly)}, saving ${usd(r.saving_usd_monthly)}`)),
    r.controller_kind ? h('a', { href: link(state, 'explore', '', { by: 'workload', filter: `controller=${filterValue(controller)}` }) }, 'its workloads in the explorer') : null);
}

export function recommendations(main, ctx) {
  const { state } = ctx;
  const kind = pageKind();
  const go = (changes) => { location.hash = link(state, 'recommendations', '', { kind: kind || null, ...changes }); };
  const p = panel(12, 'recommendations', 'Right-sizing recommendations');
  p.tools.append(h('div.seg', { role: 'group', 'aria-label': 'Recommendation kind' }, KINDS.map(([v, text]) => h('button', {
    type: 'button', 'data-kind': v || 'all', 'aria-pressed': String(kind === v), onclick: () => go({ kind: v || null }),
  }, text))));
  const detail = panel(12, 'evidence', 'Evidence', 'pick a row');
  detail.body.classList.remove('loading');
  detail.body.replaceChildren(h('div.empty', 'Open a recommendation\'s evidence from its row.'));
  main.append(p.el, detail.el);
  const open = (r) => { detail.sub.textContent = r.group; detail.body.replaceChildren(evidence(state, r)); };
  const table = dataTable({
    name: 'recommendations', sort: 'saving', pageSize: state.rows ?? PAGE_SIZE,
    onPageSize: (n) => go({ rows: n === PAGE_SIZE ? null : n }),
    label: (rows) => `${rows.length} recommendations`,
    columns: [
      { key: 'workload', title: 'workload', value: (r) => r.group, cell: (r) => h('div.stack', h('b', r.controller_name || r.group), h('span.s', `${r.namespace} · ${r.team || 'no team'}${r.model ? ` · ${r.model}` : ''}`)) },
      { key: 'kind', title: 'kind', value: (r) => r.kind, cell: (r) => h('span.kind', { 'data-kind': r.kind }, KIND_TEXT[r.kind] || r.kind) },
      { key: 'proposal', title: 'proposal', value: (r) => r.proposal, cell: (r) => r.proposal, secondary: true },
      { key: 'confidence', title: 'confidence', num: true, value: (r) => r.confidence, cell: (r) => pct(100 * r.confidence) },
      { key: 'current', title: 'now / month', num: true, money: true, value: (r) => num(r.current_usd_monthly), cell: (r) => usd(r.current_usd_monthly) },
      { key: 'proposed', title: 'proposed / month', num: true, money: true, value: (r) => num(r.proposed_usd_monthly), cell: (r) => usd(r.proposed_usd_monthly) },
      { key: 'saving', title: 'saving / month', num: true, money: true, value: (r) => num(r.saving_usd_monthly), cell: (r) => h('b', { 'data-saving': r.saving_usd_monthly }, usd(r.saving_usd_monthly)) },
      { key: 'evidence', title: 'evidence', cell: (r) => h('button.link', { type: 'button', 'data-open': r.group, onclick: () => open(r) }, 'evidence') },
    ],
  });
  ctx.load(p, async () => {
    const r = await getJSON('recommendations', { kind }, { signal: ctx.signal });
    p.sub.textContent = `${r.from} – ${r.to} · up to ${usd(r.total_saving_usd_monthly)} a month`;
    if (!r.recommendations.length) {
      p.body.replaceChildren(h('div.empty', `No ${kind ? `${KIND_TEXT[kind].toLowerCase()} ` : ''}recommendation: no workload with ${r.min_hours} h of evidence could run for less.`));
      return;
    }
    show(p.body, table.el);
    table.set(r.recommendations);
  });
}
