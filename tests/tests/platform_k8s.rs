//! The platform files, checked with the real tools `scripts/test` installs: the Helm charts (`charts/`) through helm 3's
//! `lint --strict` and `template`, their manifests through `kubernetes-validate --strict` for Kubernetes 1.28 and the
//! newest version it ships, the Argo CD Applications (`argocd/`, the Backstage template skeletons) and Prometheus
//! operator objects against their CRD schemas (npm `@kubernetes-models/*`, and their types for unknown fields), the
//! Backstage catalog files and software templates (`catalog-info.yaml`, `backstage/`, `examples/catalog/`) against
//! Backstage's published JSON schemas and entity policies. Then what ties them to gpucost itself: the agent chart's
//! arguments parsed by the real agent, a real collector started from the collector chart's rendered configuration,
//! every dashboard and the alert rules carried unchanged, and the environment template's budget accepted by the
//! collector's API.
//!
//! Helpers: `tests/platform/k8s_validate.py` (kubernetes-validate, YAML to JSON) and `tests/platform/check.mjs`
//! (Backstage, Argo CD, Prometheus operator).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gpucost_e2e::prometheus::repo_root;
use gpucost_e2e::{Collector, Proc, bin, free_port, installed_peer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CHARTS: [&str; 3] = ["gpucost-agent", "gpucost-collector", "gpucost-monitoring"];
/// The oldest Kubernetes the charts support (their kubeVersion).
const OLDEST_KUBE: &str = "1.28.0";

/// helm, the kubernetes-validate venv's python, and the npm packages' folder.
struct Tools {
    helm: PathBuf,
    python: PathBuf,
    node_dir: PathBuf,
}

fn tools() -> Option<Tools> {
    let helm = installed_peer("helm 3", "GPUCOST_HELM", "helm/helm", "")?;
    let venv = installed_peer("kubernetes-validate", "GPUCOST_K8S_VENV", "k8s-venv", "bin/kubernetes-validate")?;
    let node_dir = installed_peer(
        "the platform checks' npm packages",
        "GPUCOST_PLATFORM_NODE_DIR",
        "platform-node",
        "node_modules/@kubernetes-models/argo-cd",
    )?;
    Some(Tools { helm, python: venv.join("bin/python"), node_dir })
}

/// Runs `cmd`; (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

impl Tools {
    fn helm(&self) -> Command {
        let mut c = Command::new(&self.helm);
        // No user config or cache from the machine: the same answer everywhere.
        let home = std::env::temp_dir().join(format!("gpucost-helm-home-{}", std::process::id()));
        c.env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .current_dir(repo_root());
        c
    }

    fn helper(&self, args: &[&str]) -> (bool, String) {
        run(Command::new(&self.python).arg(repo_root().join("tests/platform/k8s_validate.py")).args(args))
    }

    fn node(&self, args: &[&str]) -> (bool, String) {
        run(Command::new("node")
            .arg(repo_root().join("tests/platform/check.mjs"))
            .args(args)
            .env("GPUCOST_PLATFORM_NODE_DIR", &self.node_dir)
            .current_dir(repo_root()))
    }

    /// `helm template` of a chart; panics naming the chart, the values and helm's error.
    fn template(&self, chart: &str, values: &[PathBuf], kube: &str, extra: &[String], out: &Path) -> PathBuf {
        let mut c = self.helm();
        c.args(["template", chart, &format!("charts/{chart}"), "--namespace", "gpucost", "--kube-version", kube]);
        for v in values {
            c.arg("--values").arg(v);
        }
        c.args(extra);
        let (ok, text) = run(&mut c);
        assert!(ok, "helm template charts/{chart} with {values:?} {extra:?} (Kubernetes {kube}) failed:\n{text}");
        let file = out.join(format!("{chart}-{}-{kube}.yaml", values.len()));
        std::fs::write(&file, text).unwrap();
        file
    }

    /// YAML documents as JSON ({file, index, doc}); `any` also takes documents that are not Kubernetes objects.
    fn docs(&self, files: &[PathBuf], any: bool) -> Vec<Value> {
        let mut args = vec!["to-json".to_string()];
        if any {
            args.push("--any".into());
        }
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, text) = self.helper(&args);
        assert!(ok, "reading YAML:\n{text}");
        serde_json::from_str(text.lines().next().unwrap_or("[]")).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// kubernetes-validate --strict for Kubernetes 1.28 and the newest it ships; the CRD-kind objects go to their
    /// CRD schemas (check.mjs crds). Returns every document.
    fn validate(&self, files: &[PathBuf], dir: &Path) -> Vec<Value> {
        let crds = dir.join(format!("crds-{}.json", files.len()));
        let all = dir.join(format!("docs-{}.json", files.len()));
        let mut args = vec![
            "validate".to_string(),
            "--versions".into(),
            format!("{OLDEST_KUBE},newest"),
            "--crd-out".into(),
            crds.display().to_string(),
            "--json-out".into(),
            all.display().to_string(),
        ];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, text) = self.helper(&args);
        assert!(ok, "kubernetes-validate --strict refused these manifests:\n{text}");
        let crd_docs: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&crds).unwrap()).unwrap();
        if !crd_docs.is_empty() {
            self.crds(&crds);
        }
        serde_json::from_str(&std::fs::read_to_string(&all).unwrap()).unwrap()
    }

    /// Argo CD and Prometheus operator objects (a JSON file of {file, index, doc}) against their CRD schemas.
    fn crds(&self, file: &Path) {
        let (ok, text) = self.node(&["crds", &file.display().to_string()]);
        assert!(
            ok,
            "objects that do not satisfy their CRD schema (Argo CD v2.14 / Prometheus operator v0.65 CRDs):\n{text}"
        );
    }
}

/// The chart's test values (every optional feature on).
fn all_features(chart: &str) -> PathBuf {
    repo_root().join(format!("charts/{chart}/ci/all-features-values.yaml"))
}

/// `--set-file` for every dashboard and the rules file, as argocd/apps/gpucost-monitoring.yaml passes them.
fn monitoring_files() -> Vec<String> {
    let mut args = Vec::new();
    for f in dashboards() {
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        args.push("--set-file".into());
        args.push(format!("dashboards.{name}={}", f.display()));
    }
    args.push("--set-file".into());
    args.push(format!("rules={}", repo_root().join("deploy/prometheus/gpucost-rules.yml").display()));
    args
}

fn dashboards() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

fn extra_for(chart: &str) -> Vec<String> {
    if chart == "gpucost-monitoring" { monitoring_files() } else { Vec::new() }
}

/// The documents of one kind (and name, when given).
fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().map(|d| &d["doc"]).filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let v = of_kind(docs, kind);
    assert_eq!(v.len(), 1, "expected one {kind}, found {}", v.len());
    v[0]
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn charts_pass_helm_lint_strict_with_default_and_all_features_values() {
    let Some(t) = tools() else { return };
    let (ok, version) = run(t.helm().args(["version", "--short"]));
    assert!(ok && version.starts_with("v3."), "not helm 3: {version}");
    for chart in CHARTS {
        for values in [None, Some(all_features(chart))] {
            let mut c = t.helm();
            c.args(["lint", "--strict", &format!("charts/{chart}")]);
            if let Some(v) = &values {
                c.arg("--values").arg(v);
            }
            c.args(extra_for(chart));
            let (ok, text) = run(&mut c);
            assert!(ok, "helm lint --strict charts/{chart} (values: {values:?}):\n{text}");
        }
    }
    // The schema is strict: a misspelt key and a bad enum value are lint errors, named.
    let (ok, text) = run(t.helm().args([
        "lint",
        "--strict",
        "charts/gpucost-agent",
        "--set",
        "tolerationz=x",
        "--set",
        "kubernetes=yes",
    ]));
    assert!(
        !ok && text.contains("tolerationz") && text.contains("kubernetes"),
        "values.schema.json let mistakes through:\n{text}"
    );
}

#[test]
fn rendered_charts_pass_kubernetes_validate_strict_on_1_28_and_the_newest_schema() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_, newest) = t.helper(&["newest"]);
    let newest = newest.trim().to_string();
    let mut files = Vec::new();
    for chart in CHARTS {
        for values in [vec![], vec![all_features(chart)]] {
            for kube in [OLDEST_KUBE, newest.as_str()] {
                files.push(t.template(chart, &values, kube, &extra_for(chart), dir.path()));
            }
        }
    }
    let docs = t.validate(&files, dir.path());
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["doc"]["kind"].as_str()).collect();
    for k in ["DaemonSet", "Deployment", "Service", "PersistentVolumeClaim", "Ingress", "ConfigMap", "ClusterRole"] {
        assert!(kinds.contains(k), "no {k} rendered by any chart: {kinds:?}");
    }
    for k in ["ServiceMonitor", "PodMonitor", "PrometheusRule"] {
        assert!(kinds.contains(k), "the all-features values rendered no {k} (checked against its CRD): {kinds:?}");
    }
}

#[test]
fn agent_chart_passes_the_agents_real_flags_and_mounts_what_they_name() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_, help) = run(Command::new(bin("gpucost-agent")).arg("--help"));
    for values in [vec![], vec![all_features("gpucost-agent")]] {
        let file = t.template("gpucost-agent", &values, OLDEST_KUBE, &[], dir.path());
        let docs = t.docs(&[file], false);
        let ds = one(&docs, "DaemonSet");
        let pod = &ds["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let ctx = format!("charts/gpucost-agent DaemonSet (values {values:?})");

        // The real agent parses every argument (clap checks names and values before --help answers).
        let args = strs(&c["args"]);
        let (ok, text) = run(Command::new(bin("gpucost-agent")).args(&args).arg("--help"));
        assert!(ok, "{ctx}: gpucost-agent refuses the chart's arguments {args:?}:\n{text}");
        let arg = |flag: &str| args.iter().find_map(|a| a.strip_prefix(&format!("{flag}="))).map(str::to_string);
        // Every environment variable is one the agent reads, or the NVIDIA runtime's.
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            let known = help.contains(&format!("[env: {name}=")) || name.starts_with("NVIDIA_") || name == "RUST_LOG";
            assert!(known, "{ctx}: env {name} is no flag's variable in `gpucost-agent --help`");
        }
        let env = |name: &str| c["env"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned();
        assert_eq!(
            env("NODE_NAME").map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone()),
            Some(json!("spec.nodeName")),
            "{ctx}: NODE_NAME must come from the downward API"
        );
        assert_eq!(env("NVIDIA_VISIBLE_DEVICES").map(|e| e["value"].clone()), Some(json!("all")), "{ctx}");
        assert!(
            env("NVIDIA_DRIVER_CAPABILITIES").is_some_and(|e| e["value"].as_str().unwrap_or("").contains("utility")),
            "{ctx}: NVML needs the utility driver capability"
        );

        // What the flags name is mounted, read-only, from the host (or a Secret).
        let mount_of = |path: &str| -> Option<(Value, Value)> {
            let m = c["volumeMounts"].as_array()?.iter().find(|m| {
                let mp = m["mountPath"].as_str().unwrap_or("");
                path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/')))
            })?;
            let v = pod["volumes"].as_array()?.iter().find(|v| v["name"] == m["name"])?;
            Some((m.clone(), v.clone()))
        };
        let proc_root = arg("--proc-root").expect("--proc-root");
        let (m, v) = mount_of(&proc_root).unwrap_or_else(|| panic!("{ctx}: --proc-root {proc_root} is not mounted"));
        assert_eq!(
            (m["readOnly"].clone(), v["hostPath"]["path"].clone()),
            (json!(true), json!("/proc")),
            "{ctx}: {m} {v}"
        );
        let socket = arg("--pod-resources-socket").expect("--pod-resources-socket");
        let (m, v) =
            mount_of(&socket).unwrap_or_else(|| panic!("{ctx}: the pod-resources socket {socket} is not mounted"));
        assert_eq!(m["readOnly"], json!(true), "{ctx}: the pod-resources mount must be read-only");
        assert_eq!(v["hostPath"]["path"], json!("/var/lib/kubelet/pod-resources"), "{ctx}");
        for flag in ["--token-file", "--passwd"] {
            if let Some(p) = arg(flag) {
                let (m, _) = mount_of(&p).unwrap_or_else(|| panic!("{ctx}: {flag} {p} is not mounted"));
                assert_eq!(m["readOnly"], json!(true), "{ctx}: {flag}'s mount must be read-only");
            }
        }
        let metrics = arg("--metrics-addr").expect("the chart serves metrics by default");
        let port: u64 = metrics.rsplit(':').next().unwrap().parse().unwrap();
        let cport = c["ports"].as_array().unwrap().iter().find(|p| p["name"] == "metrics").expect("metrics port");
        assert_eq!(cport["containerPort"], json!(port), "{ctx}: --metrics-addr and the container port differ");
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"]["path"], json!("/healthz"), "{ctx}: the agent answers /healthz");
            assert_eq!(c[probe]["httpGet"]["port"], json!("metrics"), "{ctx}");
        }

        // The pod: host PIDs, the NVIDIA runtime, GPU node tolerations, no GPU of its own, the tight context.
        assert_eq!(pod["hostPID"], json!(true), "{ctx}: NVML's pids are the host's");
        assert!(pod["hostNetwork"].is_null() || pod["hostNetwork"] == json!(false), "{ctx}: no host network");
        assert_eq!(pod["runtimeClassName"], json!("nvidia"), "{ctx}");
        assert!(
            pod["tolerations"].as_array().is_some_and(|t| t.iter().any(|t| t["key"] == "nvidia.com/gpu")),
            "{ctx}: GPU nodes' taint not tolerated"
        );
        assert!(
            !c["resources"].to_string().contains("nvidia.com/gpu"),
            "{ctx}: the agent must not request a GPU (it would hold one a workload needs)"
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["privileged"], json!(false), "{ctx}");
        assert_eq!(sc["allowPrivilegeEscalation"], json!(false), "{ctx}");
        assert_eq!(sc["readOnlyRootFilesystem"], json!(true), "{ctx}");
        assert!(strs(&sc["capabilities"]["drop"]).contains(&"ALL".to_string()), "{ctx}: capabilities not dropped");

        // RBAC: watch pods and namespaces, get nodes, watch DRA's ResourceSlices and read ResourceClaims, nothing
        // else (tests/tests/rbac.rs and dra.rs prove it from the requests the real agent makes).
        let role = one(&docs, "ClusterRole");
        let mut granted = BTreeSet::new();
        for r in role["rules"].as_array().unwrap() {
            for group in strs(&r["apiGroups"]) {
                for res in strs(&r["resources"]) {
                    for verb in strs(&r["verbs"]) {
                        granted.insert(format!("{group}/{res}:{verb}"));
                    }
                }
            }
        }
        let expected: BTreeSet<String> = [
            "/pods:list",
            "/pods:watch",
            "/namespaces:list",
            "/namespaces:watch",
            "/nodes:get",
            "resource.k8s.io/resourceslices:list",
            "resource.k8s.io/resourceslices:watch",
            "resource.k8s.io/resourceclaims:get",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(granted, expected, "{ctx}: the ClusterRole grants more or less than the agent uses");
        let binding = one(&docs, "ClusterRoleBinding");
        assert_eq!(
            binding["subjects"][0]["name"], pod["serviceAccountName"],
            "{ctx}: the binding names another account"
        );

        // Monitors select the agent pods and scrape the metrics port.
        let labels = &ds["spec"]["template"]["metadata"]["labels"];
        for kind in ["ServiceMonitor", "PodMonitor"] {
            for m in of_kind(&docs, kind) {
                for (k, v) in m["spec"]["selector"]["matchLabels"].as_object().unwrap() {
                    assert_eq!(&labels[k], v, "{ctx}: the {kind} selects {k}={v}, the pods have {}", labels[k]);
                }
                let endpoints = if kind == "PodMonitor" { "podMetricsEndpoints" } else { "endpoints" };
                assert_eq!(m["spec"][endpoints][0]["port"], json!("metrics"), "{ctx}: {kind} port");
            }
        }
        // A NetworkPolicy selects the agent pods and lets the scrapers reach the metrics port.
        for np in of_kind(&docs, "NetworkPolicy") {
            for (k, v) in np["spec"]["podSelector"]["matchLabels"].as_object().unwrap() {
                assert_eq!(&labels[k], v, "{ctx}: the NetworkPolicy selects {k}={v}, the pods have {}", labels[k]);
            }
            assert!(
                np["spec"]["ingress"].to_string().contains("\"port\":\"metrics\""),
                "{ctx}: the NetworkPolicy blocks the metrics port"
            );
        }
    }
}

const AGENT_TOKEN: &str = "agent-token-0123456789";
const READ_TOKEN: &str = "read-token-0123456789";

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it (ca.pem, server.pem/.key,
/// client.pem/.key).
fn pki(dir: &Path) {
    use gpucost_e2e::pki::{CLIENT, SERVER};
    gpucost_e2e::pki::pki(dir, "ca", &[("server", SERVER), ("client", CLIENT)]);
}

/// Writes what the pod's Secret and ConfigMap volumes would hold under `root` (at the mount paths): ConfigMap items
/// from the rendered ConfigMap, Secret items by key from `secrets` (key -> content).
fn fill_volumes(ctx: &str, docs: &[Value], pod: &Value, root: &Path, secrets: &[(&str, String)]) {
    let c = &pod["containers"][0];
    for v in pod["volumes"].as_array().unwrap() {
        let Some(m) = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == v["name"]) else { continue };
        let at = root.join(m["mountPath"].as_str().unwrap().trim_start_matches('/'));
        let items = if let Some(items) = v["configMap"]["items"].as_array() {
            let name = &v["configMap"]["name"];
            let cm = of_kind(docs, "ConfigMap").into_iter().find(|d| &d["metadata"]["name"] == name);
            let cm = cm.unwrap_or_else(|| {
                panic!("{ctx}: volume {} names ConfigMap {name}, which the chart does not render", v["name"])
            });
            items
                .iter()
                .map(|it| {
                    (
                        it["path"].as_str().unwrap().to_string(),
                        cm["data"][it["key"].as_str().unwrap()].as_str().map(str::to_string),
                    )
                })
                .collect()
        } else if let Some(items) = v["secret"]["items"].as_array() {
            items
                .iter()
                .map(|it| {
                    let key = it["key"].as_str().unwrap();
                    (
                        it["path"].as_str().unwrap().to_string(),
                        secrets.iter().find(|(k, _)| *k == key).map(|(_, c)| c.clone()),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        std::fs::create_dir_all(&at).unwrap();
        for (path, content) in items {
            let content =
                content.unwrap_or_else(|| panic!("{ctx}: nothing to put in {} of volume {}", path, v["name"]));
            let p = at.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
    }
}

/// A path under one of the container's mounts, moved under `root`; anything else unchanged.
fn relocate(c: &Value, root: &Path, v: &str) -> String {
    let under = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["mountPath"].as_str())
        .any(|m| v == m || v.starts_with(&format!("{m}/")));
    if under { root.join(v.trim_start_matches('/')).display().to_string() } else { v.to_string() }
}

/// The container's arguments and environment as the pod would have them: literal values (paths under the mounts
/// moved under `root`), Secret references as sample secrets, the downward API's node name; then `overrides`.
fn container_env(
    ctx: &str,
    pod: &Value,
    root: &Path,
    overrides: &[(&str, String)],
) -> (Vec<(String, String)>, Vec<String>) {
    let c = &pod["containers"][0];
    let mut env = Vec::new();
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            relocate(c, root, v)
        } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
            let key = r["key"].as_str().unwrap();
            if key.contains("url") {
                "http://127.0.0.1:9/hook".to_string()
            } else {
                format!("sample-{key}-0123456789abcdef")
            }
        } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName" {
            "gpu-node-1".to_string()
        } else {
            panic!("{ctx}: env {name} has neither a value, a secret reference nor the node name: {e}");
        };
        env.push((name, value));
    }
    for (k, v) in overrides {
        env.retain(|(n, _)| n != k);
        env.push((k.to_string(), v.clone()));
    }
    let args = strs(&c["args"])
        .iter()
        .map(|a| match a.split_once('=') {
            Some((flag, v)) => format!("{flag}={}", relocate(c, root, v)),
            None => a.clone(),
        })
        .collect();
    (env, args)
}

/// `args` with the values of `set` replaced (or added) and the flags in `drop` removed.
fn override_args(args: &[String], set: &[(&str, String)], drop: &[&str]) -> Vec<String> {
    let flag = |a: &str| a.split_once('=').map_or(a.to_string(), |(f, _)| f.to_string());
    let mut out: Vec<String> = args
        .iter()
        .filter(|a| !drop.contains(&flag(a).as_str()) && !set.iter().any(|(f, _)| *f == flag(a)))
        .cloned()
        .collect();
    out.extend(set.iter().map(|(f, v)| if v.is_empty() { f.to_string() } else { format!("{f}={v}") }));
    out
}

#[test]
fn collector_and_agent_chart_configs_run_the_real_binaries_together_over_mutual_tls() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();

    // Default values: no auth file, so the real collector refuses to start, as NOTES.txt warns.
    let file = t.template("gpucost-collector", &[], OLDEST_KUBE, &[], dir.path());
    let docs = t.docs(&[file], false);
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let (env, args) = container_env(
        "default values",
        pod,
        &dir.path().join("default"),
        &[("GPUCOST_DB", dir.path().join("default.db").display().to_string())],
    );
    let (ok, text) = run(Command::new(bin("gpucost-collector")).args(&args).envs(env.iter().map(|(k, v)| (k, v))));
    assert!(
        !ok && text.contains("--auth"),
        "the collector started without an auth file, or said nothing of it:\n{text}"
    );

    // Every optional feature on: the prices, budgets and catalog files from the ConfigMap, an auth file, a TLS
    // certificate and the agents' CA in the Secrets' places. The real collector runs on that.
    let ca = dir.path().join("pki");
    std::fs::create_dir_all(&ca).unwrap();
    pki(&ca);
    let pem = |f: &str| std::fs::read_to_string(ca.join(f)).unwrap();
    let auth = format!(
        // The simulated node the agent runs below is in cluster prod-us-east-1.
        "[[agent]]\ncluster = \"prod-us-east-1\"\nsha256 = \"{}\"\n\n[[api]]\nname = \"reader\"\nscope = \"read\"\nsha256 = \"{}\"\n",
        sha256_hex(AGENT_TOKEN),
        sha256_hex(READ_TOKEN)
    );
    let file = t.template("gpucost-collector", &[all_features("gpucost-collector")], OLDEST_KUBE, &[], dir.path());
    let docs = t.docs(&[file], false);
    let deploy = one(&docs, "Deployment");
    let ctx = "charts/gpucost-collector (ci/all-features-values.yaml)";
    assert_eq!(deploy["spec"]["replicas"], json!(1), "{ctx}: one writer");
    assert_eq!(deploy["spec"]["strategy"]["type"], json!("Recreate"), "{ctx}: two pods must never share the ledger");
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true), "{ctx}");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], json!(true), "{ctx}");
    assert!(strs(&c["securityContext"]["capabilities"]["drop"]).contains(&"ALL".to_string()), "{ctx}");
    let root = dir.path().join("collector-pod");
    fill_volumes(
        ctx,
        &docs,
        pod,
        &root,
        &[
            ("auth.toml", auth),
            ("tls.crt", pem("server.pem")),
            ("tls.key", pem("server.key")),
            ("ca.crt", pem("ca.pem")),
        ],
    );
    let (grpc, http) = (free_port(), free_port());
    let (env, args) = container_env(
        ctx,
        pod,
        &root,
        &[
            ("GPUCOST_GRPC_ADDR", format!("127.0.0.1:{grpc}")),
            ("GPUCOST_HTTP_ADDR", format!("127.0.0.1:{http}")),
            // Discovery and the notifiers stay on, pointed nowhere: they fail in the background, as on a
            // cluster without those peers.
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ],
    );
    for (k, v) in &env {
        if k == "GPUCOST_DB" {
            assert!(
                v.starts_with(&root.join("var/lib/gpucost").display().to_string()),
                "{ctx}: the ledger is not on the volume: {v}"
            );
        }
    }
    // The container ports are the ones the collector listens on.
    let port_of = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["containerPort"].clone())
            .unwrap_or(Value::Null)
    };
    let rendered_env =
        |name: &str| c["env"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap()["value"].clone();
    assert_eq!(rendered_env("GPUCOST_GRPC_ADDR"), json!(format!("0.0.0.0:{}", port_of("grpc"))), "{ctx}");
    assert_eq!(rendered_env("GPUCOST_HTTP_ADDR"), json!(format!("0.0.0.0:{}", port_of("http"))), "{ctx}");
    let log = dir.path().join("collector.log");
    let child = Command::new(bin("gpucost-collector"))
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let get = |path: &str, token: Option<&str>| -> (u16, String) {
        let mut r = agent.get(&format!("http://127.0.0.1:{http}{path}"));
        if let Some(t) = token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        match r.call() {
            Ok(mut resp) => (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while get("/healthz", None).0 != 200 {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!(
                "{ctx}: the collector exited ({status}) on the chart's configuration:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: no /healthz within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let p = &c[probe]["httpGet"];
        assert_eq!(p["port"], json!("http"), "{ctx}: {probe} port");
        let path = p["path"].as_str().unwrap();
        assert_eq!(get(path, None).0, 200, "{ctx}: {probe} {path} does not answer 200 without a token");
    }
    assert_eq!(get("/api/v1/budgets", None).0, 401, "{ctx}: the API is open although the chart mounted an auth file");
    assert_eq!(get("/metrics", Some(READ_TOKEN)).0, 200, "{ctx}: /metrics with a read token (the ServiceMonitor's)");
    let (_, budgets) = get("/api/v1/budgets", Some(READ_TOKEN));
    assert!(budgets.contains("vision-gpu"), "{ctx}: the budgets file's budget is missing: {budgets}");

    // The agent chart's agent, as rendered (token, CA, client certificate, every flag), reaches this collector
    // over mutual TLS. Only what cannot run here is swapped: the simulator for NVML, no API server, this
    // collector's loopback address, a virtual clock.
    let file = t.template("gpucost-agent", &[all_features("gpucost-agent")], OLDEST_KUBE, &[], dir.path());
    let adocs = t.docs(&[file], false);
    let apod = &one(&adocs, "DaemonSet")["spec"]["template"]["spec"];
    let actx = "charts/gpucost-agent (ci/all-features-values.yaml)";
    let aroot = dir.path().join("agent-pod");
    fill_volumes(
        actx,
        &adocs,
        apod,
        &aroot,
        &[
            ("token", AGENT_TOKEN.to_string()),
            ("ca.crt", pem("ca.pem")),
            ("tls.crt", pem("client.pem")),
            ("tls.key", pem("client.key")),
        ],
    );
    let (aenv, aargs) = container_env(actx, apod, &aroot, &[]);
    let aargs = override_args(
        &aargs,
        &[
            ("--source", "sim".into()),
            ("--kubernetes", "off".into()),
            ("--collector", format!("https://127.0.0.1:{grpc}")),
            ("--metrics-addr", format!("127.0.0.1:{}", free_port())),
            ("--sim-start", "2026-11-01T00:00:00Z".into()),
            ("--sim-pace", "20ms".into()),
            ("--intervals", "3".into()),
        ],
        &[],
    );
    let out = run(Command::new(bin("gpucost-agent"))
        .args(&aargs)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(aenv.iter().map(|(k, v)| (k, v))));
    assert!(
        out.0,
        "{actx}: the agent did not deliver to the collector chart's collector; args {aargs:?}:\n{}\ncollector log:\n{}",
        out.1,
        std::fs::read_to_string(&log).unwrap()
    );
    let (status, usage) = get("/api/v1/usage?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z", Some(READ_TOKEN));
    let usage: Value = serde_json::from_str(&usage).unwrap_or_default();
    assert!(
        status == 200 && usage["totals"]["observed_ns"].as_u64().unwrap_or(0) > 0,
        "{ctx}: nothing stored from the agent: {status} {usage}"
    );

    // The Service reaches the container's ports, gRPC marked as such.
    let svc = one(&docs, "Service");
    for p in svc["spec"]["ports"].as_array().unwrap() {
        assert!(
            !port_of(p["targetPort"].as_str().unwrap()).is_null(),
            "{ctx}: Service port {p} targets no container port"
        );
    }
    assert!(
        svc["spec"]["ports"].as_array().unwrap().iter().any(|p| p["appProtocol"] == "grpc"),
        "{ctx}: no grpc appProtocol"
    );
    let sm = one(&docs, "ServiceMonitor");
    assert!(
        sm["spec"]["endpoints"][0]["relabelings"].to_string().contains("\"replacement\":\"gpucost-collector\""),
        "{ctx}: the rules and dashboards need job=\"gpucost-collector\""
    );
}

#[test]
fn monitoring_chart_carries_every_dashboard_and_the_alert_rules_unchanged() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Rendered the way Argo CD renders it: the Application's value files and file parameters.
    let app = t.docs(&[repo_root().join("argocd/apps/gpucost-monitoring.yaml")], false);
    let app = one(&app, "Application");
    let (values, files) = helm_inputs(app);
    let file = t.template("gpucost-monitoring", &values, OLDEST_KUBE, &files, dir.path());
    let docs = t.validate(&[file], dir.path());

    let maps = of_kind(&docs, "ConfigMap");
    for f in dashboards() {
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let want: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let cm = maps
            .iter()
            .find(|m| m["data"].get(format!("{name}.json")).is_some())
            .unwrap_or_else(|| panic!("dashboards/{name}.json is not loaded into Grafana: add it to argocd/apps/gpucost-monitoring.yaml's fileParameters"));
        let got: Value = serde_json::from_str(cm["data"][format!("{name}.json")].as_str().unwrap()).unwrap();
        assert_eq!(got, want, "the ConfigMap's dashboards/{name}.json differs from the file");
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], json!("1"), "{name}: the sidecar label");
    }
    assert_eq!(maps.len(), dashboards().len(), "ConfigMaps for dashboards that are not in dashboards/");
    let rule = one(&docs, "PrometheusRule");
    let want = t.docs(&[repo_root().join("deploy/prometheus/gpucost-rules.yml")], true);
    assert_eq!(
        rule["spec"]["groups"], want[0]["doc"]["groups"],
        "the PrometheusRule differs from deploy/prometheus/gpucost-rules.yml"
    );

    // kube-prometheus-stack's Grafana looks for exactly these ConfigMaps, and its Prometheus scrapes the job the rules
    // and dashboards use.
    let kps = t.docs(&[repo_root().join("argocd/values/kube-prometheus-stack.yaml")], true);
    let kps = &kps[0]["doc"];
    let sidecar = &kps["grafana"]["sidecar"]["dashboards"];
    let cm = maps[0];
    assert_eq!(
        cm["metadata"]["labels"][sidecar["label"].as_str().unwrap()],
        sidecar["labelValue"],
        "Grafana's sidecar label"
    );
    assert!(
        cm["metadata"]["annotations"].get(sidecar["folderAnnotation"].as_str().unwrap()).is_some(),
        "folder annotation"
    );
    assert_eq!(sidecar["searchNamespace"], json!("ALL"), "the sidecar must search the dashboards' namespace");
    assert_eq!(
        kps["prometheus"]["prometheusSpec"]["ruleSelectorNilUsesHelmValues"],
        json!(false),
        "rules without a release label"
    );
    let jobs = kps["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"].to_string();
    assert!(
        jobs.contains("\"job_name\":\"gpucost-collector\""),
        "no scrape job gpucost-collector for the collector on ECS"
    );
}

/// An Application's Helm value files and --set-file arguments, resolved like Argo CD (relative to its path).
fn helm_inputs(app: &Value) -> (Vec<PathBuf>, Vec<String>) {
    let src = &app["spec"]["source"];
    let base = repo_root().join(src["path"].as_str().unwrap());
    let values = strs(&src["helm"]["valueFiles"]).iter().map(|v| base.join(v)).collect();
    let mut files = Vec::new();
    for p in src["helm"]["fileParameters"].as_array().into_iter().flatten() {
        files.push("--set-file".to_string());
        files.push(format!("{}={}", p["name"].as_str().unwrap(), base.join(p["path"].as_str().unwrap()).display()));
    }
    (values, files)
}

fn glob_match(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((pre, post)) => s.len() >= pre.len() + post.len() && s.starts_with(pre) && s.ends_with(post),
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    v.sort();
    v
}

#[test]
fn argocd_applications_satisfy_argo_cd_crds_and_point_at_pinned_existing_sources() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    let mut files = vec![root.join("argocd/root.yaml")];
    files.extend(yaml_files(&root.join("argocd/apps")));
    files.extend(yaml_files(&root.join("argocd/workloads")));
    let docs = t.docs(&files, false);
    let crds = dir.path().join("argocd.json");
    std::fs::write(&crds, serde_json::to_string(&docs).unwrap()).unwrap();
    t.crds(&crds);
    // The values files are YAML.
    t.docs(&yaml_files(&root.join("argocd/values")), true);

    let apps = of_kind(&docs, "Application");
    let projects = of_kind(&docs, "AppProject");
    let rootapp =
        apps.iter().find(|a| a["metadata"]["name"] == "platform").expect("argocd/root.yaml: Application platform");
    assert_eq!(rootapp["spec"]["source"]["path"], json!("argocd/apps"), "the root Application must sync argocd/apps/");
    let repo_url = rootapp["spec"]["source"]["repoURL"].as_str().unwrap();

    let mut charts = BTreeSet::new();
    for app in &apps {
        let name = app["metadata"]["name"].as_str().unwrap();
        let ctx = format!("argocd Application {name}");
        let sp = &app["spec"]["syncPolicy"];
        assert_eq!(sp["automated"]["prune"], json!(true), "{ctx}: automated prune");
        assert_eq!(sp["automated"]["selfHeal"], json!(true), "{ctx}: automated self-heal (drift correction)");
        assert!(strs(&sp["syncOptions"]).contains(&"CreateNamespace=true".to_string()), "{ctx}: CreateNamespace=true");
        let project = app["spec"]["project"].as_str().unwrap();
        let proj = projects.iter().find(|p| p["metadata"]["name"] == project);
        assert!(proj.is_some() || project == "default", "{ctx}: project {project} is not defined in argocd/");
        let sources: Vec<&Value> = match app["spec"]["sources"].as_array() {
            Some(s) => s.iter().collect(),
            None => vec![&app["spec"]["source"]],
        };
        let dest_ns = app["spec"]["destination"]["namespace"].as_str().unwrap();
        if let Some(p) = proj {
            let allowed = strs(&p["spec"]["sourceRepos"]);
            for s in &sources {
                let url = s["repoURL"].as_str().unwrap();
                assert!(
                    allowed.iter().any(|a| glob_match(a, url)),
                    "{ctx}: project {project} does not allow source {url}"
                );
            }
            let ok = p["spec"]["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| glob_match(d["namespace"].as_str().unwrap(), dest_ns));
            assert!(ok, "{ctx}: project {project} does not allow namespace {dest_ns}");
        }
        let has_values_ref = sources.iter().any(|s| s["ref"] == "values");
        for s in &sources {
            if let Some(chart) = s["chart"].as_str() {
                charts.insert(chart.to_string());
                let rev = s["targetRevision"].as_str().unwrap();
                assert!(
                    rev.split('.').count() == 3
                        && rev.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
                    "{ctx}: chart {chart} is not pinned to an exact version: {rev}"
                );
                for v in strs(&s["helm"]["valueFiles"]) {
                    let rel = v
                        .strip_prefix("$values/")
                        .unwrap_or_else(|| panic!("{ctx}: value file {v} is not in this repository ($values/...)"));
                    assert!(has_values_ref, "{ctx}: $values without a `ref: values` source");
                    assert!(root.join(rel).is_file(), "{ctx}: value file {rel} does not exist");
                }
            } else if s["ref"] == "values" {
                assert_eq!(
                    s["repoURL"],
                    json!(repo_url),
                    "{ctx}: the values come from another repository than the root's"
                );
            } else {
                assert_eq!(s["repoURL"], json!(repo_url), "{ctx}: a path source in another repository than the root's");
                let path = root.join(s["path"].as_str().unwrap());
                assert!(path.is_dir(), "{ctx}: path {} does not exist", s["path"]);
                for v in strs(&s["helm"]["valueFiles"]) {
                    assert!(
                        path.join(&v).is_file(),
                        "{ctx}: value file {v} (relative to {}) does not exist",
                        s["path"]
                    );
                }
                for p in s["helm"]["fileParameters"].as_array().into_iter().flatten() {
                    let f = path.join(p["path"].as_str().unwrap());
                    assert!(f.is_file(), "{ctx}: file parameter {} = {} does not exist", p["name"], p["path"]);
                }
                if path.join("Chart.yaml").is_file() {
                    charts.insert(s["path"].as_str().unwrap().to_string());
                }
            }
        }
        if ["kube-prometheus-stack", "argo-cd"].contains(&name) {
            assert!(
                strs(&sp["syncOptions"]).contains(&"ServerSideApply=true".to_string()),
                "{ctx}: big CRDs need ServerSideApply=true"
            );
        }
    }
    for chart in [
        "argo-cd",
        "backstage",
        "mlflow",
        "nvidia-device-plugin",
        "kube-prometheus-stack",
        "charts/gpucost-agent",
        "charts/gpucost-monitoring",
    ] {
        assert!(charts.contains(chart), "the app-of-apps does not install {chart}: {charts:?}");
    }

    // The charts of this repository, rendered with the Applications' values, are valid manifests (the agent's
    // values file also passes the chart's schema).
    let mut rendered = Vec::new();
    for app in &apps {
        let src = &app["spec"]["source"];
        if let Some(path) = src["path"].as_str().and_then(|p| p.strip_prefix("charts/")) {
            let (values, extra) = helm_inputs(app);
            rendered.push(t.template(path, &values, OLDEST_KUBE, &extra, dir.path()));
        }
    }
    t.validate(&rendered, dir.path());
}

#[test]
fn backstage_catalog_files_and_templates_satisfy_backstages_schemas() {
    let Some(t) = tools() else { return };
    let root = repo_root();
    let mut files = vec![root.join("catalog-info.yaml"), root.join("backstage/templates/all.yaml")];
    files.extend(yaml_files(&root.join("examples/catalog")));
    let mut templates = Vec::new();
    for e in std::fs::read_dir(root.join("backstage/templates")).unwrap() {
        let p = e.unwrap().path().join("template.yaml");
        if p.is_file() {
            templates.push(p);
        }
    }
    templates.sort();
    assert!(templates.len() >= 5, "four model templates and the environment template: {templates:?}");
    files.extend(templates.iter().cloned());
    let args: Vec<String> =
        std::iter::once("catalog".to_string()).chain(files.iter().map(|f| f.display().to_string())).collect();
    let (ok, text) = t.node(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "Backstage's schemas or entity policies refuse these catalog files:\n{text}");
    // Every template is registered through backstage/templates/all.yaml.
    let all = std::fs::read_to_string(root.join("backstage/templates/all.yaml")).unwrap();
    for tpl in &templates {
        let name = tpl.parent().unwrap().file_name().unwrap().to_string_lossy();
        assert!(all.contains(&format!("./{name}/template.yaml")), "backstage/templates/all.yaml does not list {name}");
    }
}

#[test]
fn backstage_templates_render_to_valid_manifests_with_gpu_requests_and_billing_labels() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rendered");
    let (ok, text) = t.node(&["render-templates", "backstage/templates", &out.display().to_string()]);
    assert!(ok, "the Backstage templates do not render like the scaffolder renders them:\n{text}");
    let summary: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();

    let mut manifests = Vec::new();
    let mut catalog = vec![];
    let mut apps = Vec::new();
    for tpl in &summary {
        let name = tpl["template"].as_str().unwrap();
        let steps = tpl["steps"].as_array().unwrap();
        let step =
            |id: &str| steps.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("template {name}: no step {id}"));
        for a in ["fetch:template", "publish:github", "publish:github:pull-request", "catalog:register"] {
            assert!(steps.iter().any(|s| s["action"] == a), "template {name}: no {a} step");
        }
        let fetch = PathBuf::from(step("fetch")["outputDir"].as_str().unwrap());
        catalog.push(fetch.join("catalog-info.yaml"));
        let values = &step("fetch")["input"]["values"];
        for sub in ["deploy", "manifests"] {
            if fetch.join(sub).is_dir() {
                manifests.extend(yaml_files(&fetch.join(sub)));
            }
        }
        // The Application in the service repository and the one proposed to the platform repository.
        let gitops = PathBuf::from(step("gitops")["outputDir"].as_str().unwrap());
        let target = step("gitops")["input"]["targetPath"].as_str().unwrap().to_string();
        assert!(
            target.ends_with("argocd/workloads"),
            "template {name}: the Application must go to argocd/workloads (argocd/apps/workloads.yaml)"
        );
        assert_eq!(
            step("gitops-pr")["input"]["sourcePath"].as_str().map(|s| target.starts_with(s)),
            Some(true),
            "template {name}: the pull request does not carry the rendered Application"
        );
        let proposed = yaml_files(&gitops.join(&target));
        assert_eq!(proposed.len(), 1, "template {name}: one Application file: {proposed:?}");
        let copy = fetch.join("argocd").join(proposed[0].file_name().unwrap());
        assert_eq!(
            std::fs::read_to_string(&copy).ok(),
            std::fs::read_to_string(&proposed[0]).ok(),
            "template {name}: the two Applications differ"
        );
        apps.push((name.to_string(), proposed[0].clone(), values.clone(), step("publish")["input"]["repoUrl"].clone()));
    }

    // The manifests: strict Kubernetes schemas; the Applications: Argo CD's CRD; the components: Backstage's.
    let docs = t.validate(&manifests, dir.path());
    let app_docs = t.docs(&apps.iter().map(|a| a.1.clone()).collect::<Vec<_>>(), false);
    let crds = dir.path().join("apps.json");
    std::fs::write(&crds, serde_json::to_string(&app_docs).unwrap()).unwrap();
    t.crds(&crds);
    let root = repo_root();
    let mut args = vec!["catalog".to_string()];
    args.extend(catalog.iter().map(|f| f.display().to_string()));
    args.extend(yaml_files(&root.join("examples/catalog")).iter().map(|f| f.display().to_string()));
    let (ok, text) = t.node(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "rendered catalog-info.yaml files refused by Backstage's schemas:\n{text}");

    for (name, file, values, repo) in &apps {
        let ctx = format!("template {name}");
        let app = app_docs.iter().find(|d| d["file"] == json!(file.display().to_string())).unwrap();
        let app = &app["doc"];
        assert_eq!(app["spec"]["project"], json!("gpu-workloads"), "{ctx}: project");
        assert_eq!(app["spec"]["destination"]["namespace"], values["namespace"], "{ctx}: destination namespace");
        let repo = repo.as_str().unwrap();
        let slug = format!("{}/{}", values["repoOwner"].as_str().unwrap(), values["repoName"].as_str().unwrap());
        assert!(repo.contains(&format!("owner={}", values["repoOwner"].as_str().unwrap())), "{ctx}: {repo}");
        assert_eq!(
            app["spec"]["source"]["repoURL"],
            json!(format!("https://github.com/{slug}.git")),
            "{ctx}: the Application deploys another repository"
        );
        let sp = &app["spec"]["syncPolicy"]["automated"];
        assert_eq!((sp["prune"].clone(), sp["selfHeal"].clone()), (json!(true), json!(true)), "{ctx}: automated sync");
        let in_ns = |d: &&Value| {
            d["doc"]["metadata"]["namespace"] == values["namespace"]
                || d["doc"]["metadata"]["name"] == values["namespace"]
        };
        let mine: Vec<Value> = docs
            .iter()
            .filter(|d| d["file"].as_str().is_some_and(|f| f.contains(&format!("/{name}/"))))
            .filter(in_ns)
            .cloned()
            .collect();
        if name == "gpu-environment" {
            let ns = one(&mine, "Namespace");
            assert_eq!(ns["metadata"]["labels"]["backstage.io/owner"], values["team"], "{ctx}: namespace owner label");
            let quota = one(&mine, "ResourceQuota");
            assert_eq!(
                quota["spec"]["hard"]["requests.nvidia.com/gpu"],
                json!(values["gpuQuota"].to_string()),
                "{ctx}: GPU quota"
            );
            continue;
        }
        // The model services: GPUs requested, and the labels gpucost attributes by.
        assert_eq!(
            app["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]["backstage.io/owner"], values["ownerName"],
            "{ctx}: namespace owner label"
        );
        let deploy = one(&mine, "Deployment");
        let labels = &deploy["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["backstage.io/kubernetes-id"], values["name"], "{ctx}: backstage.io/kubernetes-id");
        assert_eq!(labels["mlflow.org/model-name"], values["modelName"], "{ctx}: mlflow.org/model-name");
        assert_eq!(labels["mlflow.org/model-version"], values["modelVersion"], "{ctx}: mlflow.org/model-version");
        let gpus: Vec<(Value, Value)> = deploy["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["resources"]["requests"]["nvidia.com/gpu"].clone(),
                    c["resources"]["limits"]["nvidia.com/gpu"].clone(),
                )
            })
            .filter(|(r, _)| !r.is_null())
            .collect();
        assert_eq!(
            gpus,
            vec![(values["gpus"].clone(), values["gpus"].clone())],
            "{ctx}: nvidia.com/gpu requests and limits"
        );
    }
}

#[test]
fn environment_template_budget_is_accepted_by_the_collector_api() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rendered");
    let (ok, text) = t.node(&["render-templates", "backstage/templates", &out.display().to_string()]);
    assert!(ok, "{text}");
    let summary: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let env = summary.iter().find(|s| s["template"] == "gpu-environment").expect("the gpu-environment template");
    let step = env["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "http:backstage:request")
        .expect("a budget step");
    let input = &step["input"];
    let path = input["path"].as_str().unwrap();
    let api = path
        .strip_prefix("/proxy/gpucost")
        .unwrap_or_else(|| panic!("the budget goes through Backstage's /proxy/gpucost: {path}"));
    let proxy = std::fs::read_to_string(repo_root().join("argocd/values/backstage.yaml")).unwrap();
    assert!(
        proxy.contains("/gpucost:"),
        "argocd/values/backstage.yaml has no /gpucost proxy endpoint for the budget step"
    );

    let collector = Collector::start(&dir.path().join("ledger.db"));
    let resp = ureq::put(&collector.http(api))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", "application/json")
        .send(input["body"].to_string())
        .expect("PUT the budget");
    let status = resp.status().as_u16();
    let body = resp.into_body().read_to_string().unwrap_or_default();
    assert_eq!(status, 201, "the collector refused the template's budget {} {api}: {body}", input["method"]);
    assert_eq!(input["method"], json!("PUT"));
    let (status, budget) = collector.get(api);
    assert_eq!(status, 200, "{budget}");
    let ns = env["steps"][0]["input"]["values"]["namespace"].clone();
    assert_eq!(
        budget["scope"]["namespace"], ns,
        "the budget covers another scope than the environment's namespace: {budget}"
    );
}
