// Validates gpucost's platform files with the real published schemas and models, for tests/tests/platform_k8s.rs.
// Run with node from anywhere; the packages come from the folder scripts/test installs tests/platform/package.json
// into (GPUCOST_PLATFORM_NODE_DIR, default ~/.cache/gpucost/platform-node).
//
//   node check.mjs catalog <file.yaml>...          Backstage entities (catalog files, templates) against
//                                                  @backstage/catalog-model's and @backstage/plugin-scaffolder-
//                                                  common's JSON schemas (ajv) and the catalog's own entity policies
//   node check.mjs render-templates <dir> <out>    every backstage/templates/*/template.yaml: sample parameters
//                                                  (checked against the template's own parameter schemas), step
//                                                  inputs and skeletons rendered with nunjucks like the scaffolder;
//                                                  writes <out>/summary.json and the rendered files under <out>
//   node check.mjs crds <docs.json>                 Argo CD (Application, AppProject, ApplicationSet) and Prometheus
//                                                  operator (ServiceMonitor, PodMonitor, PrometheusRule) objects
//                                                  against their CRD schemas (@kubernetes-models .validate()), and
//                                                  against their TypeScript types for unknown fields (tsc)
//
// Every problem is printed as `<file>[#<document>] <object>: <where>: <what>` and makes the exit status 1.

import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const home = process.env.GPUCOST_PLATFORM_NODE_DIR || path.join(os.homedir(), ".cache/gpucost/platform-node");
const require = createRequire(path.join(home, "package.json"));
const YAML = require("yaml");

const problems = [];
const problem = (where, what) => problems.push(`${where}: ${what}`);

/** Every YAML document of a file, with its index; a parse error is a problem. */
function yamlDocs(file) {
  const text = fs.readFileSync(file, "utf8");
  const out = [];
  YAML.parseAllDocuments(text).forEach((d, i) => {
    if (d.errors.length) {
      problem(`${file}#${i}`, `YAML: ${d.errors.map((e) => e.message).join("; ")}`);
      return;
    }
    const doc = d.toJS();
    if (doc != null) out.push({ file, index: i, doc });
  });
  return out;
}

const describe = (d) => `${d.file}#${d.index} ${d.doc?.kind ?? "?"}/${d.doc?.metadata?.name ?? "?"}`;

// ---------------------------------------------------------------------------------------------------------------
// Backstage entities

function backstageValidators() {
  const Ajv = require("ajv");
  const addFormats = require("ajv-formats");
  const ajv = new Ajv({ allErrors: true, strict: false });
  addFormats(ajv);
  const load = (p) => require(path.join(home, "node_modules", p)).default;
  const model = "@backstage/catalog-model/dist/schema";
  for (const p of ["shared/common", "EntityMeta", "Entity", "EntityEnvelope"]) ajv.addSchema(load(`${model}/${p}.schema.json.cjs.js`));
  const kinds = {};
  for (const f of fs.readdirSync(path.join(home, "node_modules", model, "kinds"))) {
    const m = /^([A-Za-z]+)\.(v[0-9a-z]+)\.schema\.json\.cjs\.js$/.exec(f);
    if (!m) continue;
    const schema = load(`${model}/kinds/${f}`);
    ajv.addSchema(schema);
    kinds[`backstage.io/${m[2]}:${m[1]}`] = schema.$id;
  }
  const template = load("@backstage/plugin-scaffolder-common/dist/Template.v1beta3.schema.json.cjs.js");
  ajv.addSchema(template);
  kinds["scaffolder.backstage.io/v1beta3:Template"] = template.$id;

  const cm = require("@backstage/catalog-model");
  // The policies the catalog backend applies to every entity it reads.
  const policy = cm.EntityPolicies.allOf([
    new cm.DefaultNamespaceEntityPolicy(),
    new cm.NoForeignRootFieldsEntityPolicy(),
    new cm.FieldFormatEntityPolicy(),
    new cm.SchemaValidEntityPolicy(),
  ]);
  return { ajv, kinds, policy, cm };
}

const RELATION_FIELDS = {
  owner: "group",
  system: "system",
  domain: "domain",
  parent: "group",
  children: "group",
  memberOf: "group",
  providesApis: "api",
  consumesApis: "api",
  dependsOn: "component",
  dependencyOf: "component",
  subcomponentOf: "component",
};

/**
 * The catalog's placeholders ($text, $json, $yaml), resolved before validation like its PlaceholderProcessor: a
 * relative path must name a file next to the catalog file (its text stands in), a URL stays as text.
 */
function resolvePlaceholders(value, file, where) {
  if (Array.isArray(value)) return value.map((v) => resolvePlaceholders(v, file, where));
  if (!value || typeof value !== "object") return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && ["$text", "$json", "$yaml"].includes(keys[0])) {
    const target = value[keys[0]];
    if (typeof target !== "string") {
      problem(where, `${keys[0]} needs a string`);
      return "";
    }
    if (/^https?:\/\//.test(target)) return `(read from ${target})`;
    const p = path.resolve(path.dirname(file), target);
    if (!fs.existsSync(p)) {
      problem(where, `${keys[0]}: ${target} does not exist (resolved to ${p})`);
      return "";
    }
    const text = fs.readFileSync(p, "utf8");
    return keys[0] === "$text" ? text : keys[0] === "$json" ? JSON.parse(text) : YAML.parse(text);
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolvePlaceholders(v, file, where)]));
}

function checkCatalog(files) {
  const { ajv, kinds, policy, cm } = backstageValidators();
  const docs = files.flatMap(yamlDocs).map((d) => ({ ...d, doc: resolvePlaceholders(d.doc, d.file, describe(d)) }));
  const known = new Set();
  for (const d of docs) {
    if (d.doc?.metadata?.name && d.doc.kind) {
      known.add(`${d.doc.kind.toLowerCase()}:${d.doc.metadata.namespace ?? "default"}/${d.doc.metadata.name}`);
    }
  }
  const pending = [];
  for (const d of docs) {
    const where = describe(d);
    const ajvEnvelope = ajv.getSchema("EntityEnvelope");
    if (!ajvEnvelope(d.doc)) {
      problem(where, `not a Backstage entity: ${ajv.errorsText(ajvEnvelope.errors)}`);
      continue;
    }
    const id = kinds[`${d.doc.apiVersion}:${d.doc.kind}`];
    if (!id) {
      problem(where, `no published schema for apiVersion ${d.doc.apiVersion} kind ${d.doc.kind}`);
      continue;
    }
    const validate = ajv.getSchema(id);
    if (!validate(d.doc)) {
      for (const e of validate.errors) problem(where, `${id} schema: ${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`);
    }
    pending.push(
      policy.enforce(structuredClone(d.doc)).catch((e) => problem(where, `catalog entity policy: ${e.message}`)),
    );
    if (d.doc.kind === "Template") {
      const { templateEntityV1beta3Validator } = require("@backstage/plugin-scaffolder-common");
      pending.push(
        Promise.resolve()
          .then(() => templateEntityV1beta3Validator.check(d.doc))
          .then((ok) => ok || problem(where, "templateEntityV1beta3Validator refused it"))
          .catch((e) => problem(where, `templateEntityV1beta3Validator: ${e.message}`)),
      );
    }
    // A Location's relative targets must exist.
    if (d.doc.kind === "Location") {
      for (const t of [d.doc.spec?.target, ...(d.doc.spec?.targets ?? [])].filter(Boolean)) {
        if (/^[a-z]+:\/\//.test(t)) continue;
        if (!fs.existsSync(path.resolve(path.dirname(d.file), t))) problem(where, `spec.targets: ${t} does not exist next to ${d.file}`);
      }
    }
    // References to other entities must resolve within the files checked together.
    const spec = d.doc.spec ?? {};
    for (const [field, defaultKind] of Object.entries(RELATION_FIELDS)) {
      const refs = spec[field] === undefined ? [] : [spec[field]].flat();
      for (const ref of refs) {
        if (typeof ref !== "string") continue;
        let parsed;
        try {
          parsed = cm.parseEntityRef(ref, { defaultKind, defaultNamespace: d.doc.metadata.namespace ?? "default" });
        } catch (e) {
          problem(where, `spec.${field}: ${e.message}`);
          continue;
        }
        const key = `${parsed.kind.toLowerCase()}:${parsed.namespace}/${parsed.name}`;
        if (!known.has(key)) problem(where, `spec.${field}: ${ref} is not defined in any of the checked catalog files`);
      }
    }
  }
  return Promise.all(pending).then(() => docs.length);
}

// ---------------------------------------------------------------------------------------------------------------
// Backstage templates: render like the scaffolder

/** The scaffolder's templating: nunjucks with ${{ }} as the variable tags and its built-in filters. */
function templater() {
  const nunjucks = require("nunjucks");
  const cm = require("@backstage/catalog-model");
  const env = new nunjucks.Environment(null, {
    autoescape: false,
    throwOnUndefined: true,
    tags: { variableStart: "${{", variableEnd: "}}" },
  });
  env.addFilter("parseRepoUrl", (url) => {
    const u = new URL(`https://${url}`);
    const q = Object.fromEntries(u.searchParams);
    if (!q.owner || !q.repo) throw new Error(`parseRepoUrl: ${url} has no owner and repo`);
    return { host: u.host, owner: q.owner, repo: q.repo, organization: q.organization, workspace: q.workspace, project: q.project };
  });
  env.addFilter("projectSlug", (url) => {
    const u = new URL(`https://${url}`);
    return `${u.searchParams.get("owner")}/${u.searchParams.get("repo")}`;
  });
  env.addFilter("parseEntityRef", (ref, ctx) => cm.parseEntityRef(ref, ctx));
  env.addFilter("pick", (obj, key) => obj?.[key]);
  return env;
}

/** A step input value rendered like NunjucksWorkflowRunner: a string that is one ${{ }} expression keeps its type. */
function renderValue(env, value, context, where) {
  if (typeof value === "string") {
    const single = /^\s*\$\{\{([\s\S]*)\}\}\s*$/.exec(value);
    try {
      if (single && !single[1].includes("}}")) return JSON.parse(env.renderString(`\${{ (${single[1]}) | dump }}`, context));
      return env.renderString(value, context);
    } catch (e) {
      problem(where, `${JSON.stringify(value)}: ${e.message.replace(/\s+/g, " ").trim()}`);
      return undefined;
    }
  }
  if (Array.isArray(value)) return value.map((v, i) => renderValue(env, v, context, `${where}[${i}]`));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renderValue(env, v, context, `${where}.${k}`)]));
  }
  return value;
}

/** What each action's output holds in the real scaffolder, filled with sample values. */
const ACTION_OUTPUTS = {
  "fetch:template": () => ({}),
  "fetch:plain": () => ({}),
  "publish:github": (input) => {
    const u = new URL(`https://${input.repoUrl}`);
    const slug = `${u.searchParams.get("owner")}/${u.searchParams.get("repo")}`;
    return {
      remoteUrl: `https://github.com/${slug}`,
      repoContentsUrl: `https://github.com/${slug}/blob/main`,
      commitHash: "0123456789abcdef0123456789abcdef01234567",
    };
  },
  "publish:github:pull-request": (input) => ({ remoteUrl: `https://github.com/pulls/1`, pullRequestNumber: 1, targetBranchName: input.branchName }),
  "catalog:register": () => ({ entityRef: "component:default/sample", catalogInfoUrl: "https://github.com/example-org/sample/blob/main/catalog-info.yaml" }),
  "http:backstage:request": () => ({ code: 200, headers: {}, body: {} }),
  "debug:log": () => ({}),
};

/** A sample for every parameter: its default, else its first example, else its first enum value. */
function sampleParameters(template, where) {
  const pages = [template.spec.parameters ?? []].flat();
  const Ajv = require("ajv");
  const ajv = new Ajv({ allErrors: true, strict: false });
  const values = {};
  pages.forEach((page, p) => {
    for (const [name, schema] of Object.entries(page.properties ?? {})) {
      const sample = schema.default ?? schema.examples?.[0] ?? schema.enum?.[0];
      const required = (page.required ?? []).includes(name);
      if (sample === undefined) {
        if (required) problem(where, `parameter ${name} (page ${p + 1}) has no default, example or enum to test it with: add examples:`);
        continue;
      }
      values[name] = sample;
    }
    const pageSchema = { type: "object", properties: page.properties ?? {}, required: page.required ?? [] };
    const validate = ajv.compile(pageSchema);
    if (!validate(values)) {
      for (const e of validate.errors) problem(where, `parameters page ${p + 1} "${page.title}": sample ${e.instancePath || "/"} ${e.message}`);
    }
  });
  return values;
}

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  });
}

function renderTemplates(templatesDir, outDir) {
  const env = templater();
  const summary = [];
  const known = new Set(Object.keys(ACTION_OUTPUTS));
  for (const name of fs.readdirSync(templatesDir).sort()) {
    const file = path.join(templatesDir, name, "template.yaml");
    if (!fs.existsSync(file)) continue;
    const docs = yamlDocs(file);
    if (docs.length !== 1 || docs[0].doc.kind !== "Template") {
      problem(file, "must hold exactly one Template");
      continue;
    }
    const template = docs[0].doc;
    const where = `${file} Template/${template.metadata.name}`;
    if (template.metadata.name !== name) problem(where, `metadata.name must be the folder's name (${name})`);
    const parameters = sampleParameters(template, where);
    const context = {
      parameters,
      steps: {},
      user: { ref: "user:default/alice", entity: { metadata: { name: "alice" } } },
      secrets: {},
    };
    const steps = [];
    const ids = new Set();
    for (const [i, step] of (template.spec.steps ?? []).entries()) {
      const sw = `${where}: steps[${i}] ${step.id}`;
      if (ids.has(step.id)) problem(sw, "duplicate step id");
      ids.add(step.id);
      if (!known.has(step.action)) problem(sw, `action ${step.action} is not one this platform's Backstage installs (${[...known].join(", ")})`);
      const input = renderValue(env, step.input ?? {}, context, `${sw}: input`);
      const rendered = { id: step.id, action: step.action, input };
      if (step.action === "fetch:template" || step.action === "fetch:plain") {
        const src = path.resolve(path.dirname(file), input.url ?? "");
        if (!input.url || !fs.existsSync(src) || !fs.statSync(src).isDirectory()) {
          problem(sw, `input.url ${input.url} is not a folder next to the template`);
        } else {
          const dst = path.join(outDir, name, step.id, input.targetPath ?? ".");
          const valuesCtx = { values: input.values ?? {} };
          for (const f of walk(src)) {
            const rel = path.relative(src, f);
            let relOut;
            let text;
            try {
              relOut = step.action === "fetch:template" ? env.renderString(rel, valuesCtx) : rel;
              text = fs.readFileSync(f, "utf8");
              if (step.action === "fetch:template") text = env.renderString(text, valuesCtx);
            } catch (e) {
              problem(`${f}`, `renders with an error (values from ${sw}): ${e.message.replace(/\s+/g, " ").trim()}`);
              continue;
            }
            const target = path.join(dst, relOut);
            fs.mkdirSync(path.dirname(target), { recursive: true });
            fs.writeFileSync(target, text);
          }
          rendered.outputDir = path.join(outDir, name, step.id);
        }
      }
      context.steps[step.id] = { output: (ACTION_OUTPUTS[step.action] ?? (() => ({})))(input ?? {}) };
      steps.push(rendered);
    }
    const output = renderValue(env, template.spec.output ?? {}, context, `${where}: output`);
    summary.push({ template: name, file, parameters, steps, output });
  }
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "summary.json"), JSON.stringify(summary, null, 2));
  return summary.length;
}

// ---------------------------------------------------------------------------------------------------------------
// CRD-backed objects: Argo CD and the Prometheus operator

const MODELS = {
  "argoproj.io/v1alpha1:Application": ["@kubernetes-models/argo-cd/argoproj.io/v1alpha1/Application", "Application", "IApplication"],
  "argoproj.io/v1alpha1:AppProject": ["@kubernetes-models/argo-cd/argoproj.io/v1alpha1/AppProject", "AppProject", "IAppProject"],
  "argoproj.io/v1alpha1:ApplicationSet": ["@kubernetes-models/argo-cd/argoproj.io/v1alpha1/ApplicationSet", "ApplicationSet", "IApplicationSet"],
  "monitoring.coreos.com/v1:ServiceMonitor": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor", "ServiceMonitor", "IServiceMonitor"],
  "monitoring.coreos.com/v1:PodMonitor": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor", "PodMonitor", "IPodMonitor"],
  "monitoring.coreos.com/v1:PrometheusRule": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule", "PrometheusRule", "IPrometheusRule"],
};

function checkCrds(docsFile) {
  const docs = JSON.parse(fs.readFileSync(docsFile, "utf8"));
  const typed = [];
  for (const d of docs) {
    const where = describe(d);
    const entry = MODELS[`${d.doc.apiVersion}:${d.doc.kind}`];
    if (!entry) {
      problem(where, `no CRD schema here for ${d.doc.apiVersion} ${d.doc.kind}`);
      continue;
    }
    const Model = require(entry[0])[entry[1]];
    try {
      new Model(d.doc).validate();
    } catch (e) {
      const details = (e.details ?? []).map((x) => `${x.instancePath || "/"} ${x.message}${x.params?.allowedValues ? ` (${x.params.allowedValues.join(", ")})` : ""}`);
      problem(where, `${entry[1]} CRD schema: ${details.length ? details.join("; ") : e.message}`);
    }
    typed.push({ d, entry });
  }
  // Unknown fields: the CRD validators accept them, the types do not (TypeScript's excess-property check on each
  // object literal).
  if (typed.length) {
    const run = fs.mkdtempSync(path.join(home, "run-"));
    try {
      let ts = "";
      const lines = [];
      const imports = new Set();
      typed.forEach(({ d, entry }, i) => {
        imports.add(`import type { ${entry[2]} } from "${entry[0]}";`);
        const body = `// ${describe(d)}\nexport const doc${i} = ${JSON.stringify(d.doc, null, 2)} satisfies ${entry[2]};\n`;
        lines.push({ start: 0, where: describe(d), body });
      });
      ts = [...imports].join("\n") + "\n";
      for (const l of lines) {
        l.start = ts.split("\n").length;
        ts += l.body;
      }
      fs.writeFileSync(path.join(run, "docs.ts"), ts);
      fs.writeFileSync(
        path.join(run, "tsconfig.json"),
        JSON.stringify({ compilerOptions: { strict: true, noEmit: true, module: "commonjs", moduleResolution: "node", skipLibCheck: true, types: [] }, files: ["docs.ts"] }),
      );
      try {
        execFileSync(process.execPath, [path.join(home, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json", "--pretty", "false"], { cwd: run, encoding: "utf8" });
      } catch (e) {
        const src = ts.split("\n");
        for (const line of `${e.stdout}${e.stderr}`.split("\n").filter((l) => l.includes("error TS"))) {
          const m = /docs\.ts\((\d+),(\d+)\): error (TS\d+): (.*)$/.exec(line);
          if (!m) {
            problem("tsc", line);
            continue;
          }
          const n = Number(m[1]);
          const owner = [...lines].reverse().find((l) => l.start <= n);
          problem(owner ? owner.where : "docs.ts", `type: ${m[4]} (at \`${(src[n - 1] ?? "").trim()}\`)`);
        }
      }
    } finally {
      fs.rmSync(run, { recursive: true, force: true });
    }
  }
  return docs.length;
}

// ---------------------------------------------------------------------------------------------------------------

const [cmd, ...args] = process.argv.slice(2);
let done;
if (cmd === "catalog") done = checkCatalog(args);
else if (cmd === "render-templates") done = renderTemplates(args[0], args[1]);
else if (cmd === "crds") done = checkCrds(args[0]);
else {
  console.error("usage: check.mjs catalog <files...> | render-templates <dir> <out> | crds <docs.json>");
  process.exit(2);
}
Promise.resolve(done).then((n) => {
  if (problems.length) {
    console.log(problems.join("\n"));
    process.exit(1);
  }
  console.log(`ok: ${n} checked`);
});
