// Checks the Grafana dashboards: `node check.mjs <dashboards folder> <out folder>`.
//
// 1. Lints each dashboard: a Prometheus `datasource` template variable, used by every panel, every query and every
//    query variable; every query has a PromQL `expr` whose `$variables` are defined; unique panel ids and refIds;
//    units on every data panel; panels inside the 24-column grid and not overlapping.
// 2. Writes <out>/<dashboard>.ts holding the dashboard, and each panel, as object literals that must satisfy
//    schema.ts's types (@grafana/schema); `tsc -p tsconfig.json` then type-checks them.
// Exits 1 listing every problem, each naming the dashboard and panel.
import { readdirSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join, basename } from 'node:path';

const [dir, out] = process.argv.slice(2);
if (!dir || !out) {
  console.error('usage: node check.mjs <dashboards folder> <out folder>');
  process.exit(2);
}

const BUILTINS = new Set(['__range', '__range_s', '__range_ms', '__rate_interval', '__interval', '__interval_ms']);
const DATA_PANELS = new Set(['stat', 'timeseries', 'bargauge', 'table', 'state-timeline']);
const isDatasourceVar = (ds) => ds && ds.type === 'prometheus' && ds.uid === '${datasource}' && Object.keys(ds).length === 2;

const problems = [];
const uids = new Map();
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
if (files.length === 0) problems.push(`${dir}: no dashboards`);

for (const file of files) {
  const name = basename(file, '.json');
  const where = (panel) => `${file}: panel ${panel.id} "${panel.title ?? ''}"`;
  let d;
  try {
    d = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  } catch (e) {
    problems.push(`${file}: not JSON: ${e.message}`);
    continue;
  }
  // Exports "for sharing externally" carry these; they are not part of the dashboard model.
  delete d.__inputs;
  delete d.__requires;
  delete d.__elements;

  if (!d.title) problems.push(`${file}: no title`);
  if (!d.uid) problems.push(`${file}: no uid`);
  else if (uids.has(d.uid)) problems.push(`${file}: uid ${d.uid} is also ${uids.get(d.uid)}'s`);
  else uids.set(d.uid, file);
  if (!(d.schemaVersion >= 39)) problems.push(`${file}: schemaVersion ${d.schemaVersion} < 39`);

  const vars = d.templating?.list ?? [];
  const ds = vars.find((v) => v.name === 'datasource');
  if (!ds || ds.type !== 'datasource' || ds.query !== 'prometheus') {
    problems.push(`${file}: no "datasource" template variable of type datasource, query prometheus`);
  }
  const names = new Set(vars.map((v) => v.name));
  for (const v of vars) {
    if (v.type === 'query' && !isDatasourceVar(v.datasource)) {
      problems.push(`${file}: variable ${v.name}: datasource is ${JSON.stringify(v.datasource)}, not \${datasource}`);
    }
    // The editor's object form ({qryType: 1, ...}) needs its own label/metric fields; a string works everywhere.
    if (v.type === 'query' && !(typeof v.query === 'string' && /^label_values\(.+,\s*\w+\)$/.test(v.query))) {
      problems.push(`${file}: variable ${v.name}: query is not a "label_values(selector, label)" string`);
    }
  }

  const panels = [];
  for (const p of d.panels ?? []) {
    panels.push(p);
    for (const inner of p.type === 'row' ? (p.panels ?? []) : []) panels.push(inner);
  }
  if (panels.length === 0) problems.push(`${file}: no panels`);
  const ids = new Set();
  for (const p of panels) {
    if (ids.has(p.id)) problems.push(`${where(p)}: id used twice`);
    ids.add(p.id);
    const g = p.gridPos ?? {};
    if (!(g.w >= 1 && g.h >= 1 && g.x >= 0 && g.y >= 0 && g.x + g.w <= 24)) {
      problems.push(`${where(p)}: gridPos ${JSON.stringify(g)} is outside the 24-column grid`);
    }
    if (p.type === 'row') continue;
    if (!DATA_PANELS.has(p.type)) problems.push(`${where(p)}: panel type ${p.type} is not checked by schema.ts`);
    if (!isDatasourceVar(p.datasource)) {
      problems.push(`${where(p)}: datasource is ${JSON.stringify(p.datasource)}, not \${datasource}`);
    }
    if (!p.fieldConfig?.defaults?.unit && p.type !== 'table') problems.push(`${where(p)}: no unit`);
    const targets = p.targets ?? [];
    if (targets.length === 0) problems.push(`${where(p)}: no queries`);
    const refIds = new Set();
    for (const t of targets) {
      const q = `${where(p)}: query ${t.refId}`;
      if (refIds.has(t.refId)) problems.push(`${q}: refId used twice`);
      refIds.add(t.refId);
      if (!isDatasourceVar(t.datasource)) {
        problems.push(`${q}: datasource is ${JSON.stringify(t.datasource)}, not \${datasource}`);
      }
      if (typeof t.expr !== 'string' || t.expr.trim() === '') {
        problems.push(`${q}: no expr`);
        continue;
      }
      for (const m of t.expr.matchAll(/\$(?:\{(\w+)(?::\w+)?\}|(\w+))/g)) {
        const v = m[1] ?? m[2];
        if (!names.has(v) && !BUILTINS.has(v)) problems.push(`${q}: $${v} is not a template variable: ${t.expr}`);
      }
    }
  }
  // Top-level panels must not overlap (Grafana would push them around).
  const top = (d.panels ?? []).filter((p) => p.gridPos);
  for (let i = 0; i < top.length; i++) {
    for (let j = i + 1; j < top.length; j++) {
      const [a, b] = [top[i].gridPos, top[j].gridPos];
      if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) {
        problems.push(`${where(top[i])} overlaps panel ${top[j].id} "${top[j].title}"`);
      }
    }
  }

  let ts = `// Generated by tests/grafana/check.mjs from dashboards/${file}; type-checked by tsc.\n`;
  ts += `import type { DashboardJson, Panels } from '../schema';\n\n`;
  ts += `export const dashboard = ${JSON.stringify(d, null, 2)} satisfies DashboardJson;\n`;
  for (const p of panels) {
    ts += `\n// ${file}: panel ${p.id} "${String(p.title ?? '').replace(/\n/g, ' ')}"\n`;
    ts += `export const panel_${Number(p.id) || 0}_${panels.indexOf(p)} = ${JSON.stringify(p, null, 2)} satisfies Panels[${JSON.stringify(p.type)}];\n`;
  }
  writeFileSync(join(out, `${name.replace(/[^A-Za-z0-9_-]/g, '_')}.ts`), ts);
}

if (problems.length > 0) {
  console.error(`${problems.length} problem(s) in the dashboards:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`${files.length} dashboards linted: ${files.join(', ')}`);
