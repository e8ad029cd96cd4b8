//! The collector's IAM policies, proven from what its code really calls (issue 20): the real collector binary
//! discovers a fleet in moto's server, with moto enforcing IAM, as a user holding only the discovery policy read
//! from `terraform/modules/discovery-policy/main.tf` (the parsed HCL, `tests/platform_iac/iam_policies.py`).
//!
//! - Every call is granted: discovery succeeds and prices a node, and every request moto recorded is allowed by
//!   the policy, its action, its resource and its condition.
//! - None is unused: the actions the collector called are exactly the actions the policy grants, and without any
//!   one of them discovery fails with an error that names it.
//! - The ECS task role's `rds-db:connect` (`terraform/modules/ecs/postgres.tf`) is for the database user that the
//!   collector signs its RDS IAM tokens for, given the URL Terraform writes into its secret. That is no API call:
//!   the token is a presigned `connect` that RDS checks at login (`tests/tests/rds_iam.rs` checks the token).
//!
//! What moto checks, and what this test checks itself: moto (5.2.5, `moto/iam/access_control.py`) verifies each
//! request's SigV4 signature and that an `Allow` statement names its action and no `Deny` does. It authorises ECS
//! and EKS calls against the resource `*` only, and evaluates no condition of an identity policy, so the user in
//! moto holds the policy with every `Resource` widened to `*`; the resources and the `aws:RequestedRegion`
//! condition of the real policy are evaluated here, on each recorded request, against the ARN AWS authorises
//! that action on (the Service Authorization Reference's resource type; none for `eks:ListClusters`,
//! `ecs:ListClusters` and `ecs:ListTasks`). moto's error for a denied JSON-protocol call is an XML body, not
//! AWS's JSON `AccessDeniedException`, so the collector names the action from the HTTP 403 instead of the body.
//! moto 5.2.5 also hashes the wrong payload for a request with no body and no query (every such EKS `GET`
//! fails its signature check): `tests/fixtures/moto/iam_server.py` starts moto with that one line fixed.
//!
//! Not the collector's calls, so not checked here: the ECS execution role's `secretsmanager:GetSecretValue` and
//! `kms:Decrypt` (the ECS agent reads the task's secrets before the collector starts), the EFS mount's
//! `elasticfilesystem:ClientMount`/`ClientWrite` (the EFS mount helper, for a SQLite ledger), and the
//! `sts:AssumeRole` of the trust policies (ECS and EKS Pod Identity hand the collector its credentials).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use gpucost_e2e::{Collector, Moto, free_port, installed_peer, send_batches};
use gpucost_ledger::sql::rds_iam::{Credentials, auth_token};
use gpucost_proto::v1 as pb;
use serde_json::{Value, json};

/// moto's account and the region everything runs in.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
/// The RDS inputs the ledger login policy and URL are rendered with.
const DB_RESOURCE_ID: &str = "db-ABCDEFGHIJKLMNOPQRSTUVWXY";
const DB_IAM_USER: &str = "gpucost_iam";
const DB_HOST: &str = "gpucost-ledger.c1a2b3c4d5e6.us-east-1.rds.amazonaws.com";

const NS: u64 = 1_000_000_000;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// One statement of a policy as Terraform renders it.
#[derive(Clone, Debug)]
struct Statement {
    sid: String,
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    /// (test, variable, values)
    conditions: Vec<(String, String, Vec<String>)>,
}

impl Statement {
    fn from_json(v: &Value) -> Self {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().expect("a list").iter().map(|s| s.as_str().expect("a string").to_string()).collect()
        };
        Statement {
            sid: v["sid"].as_str().unwrap_or_default().to_string(),
            allow: v["effect"] == "Allow",
            actions: strings(&v["actions"]),
            resources: strings(&v["resources"]),
            conditions: v["conditions"]
                .as_array()
                .expect("conditions")
                .iter()
                .map(|c| {
                    (
                        c["test"].as_str().unwrap().to_string(),
                        c["variable"].as_str().unwrap().to_string(),
                        strings(&c["values"]),
                    )
                })
                .collect(),
        }
    }

    /// Whether this statement applies to `action` on `resource` in `region`: IAM's action (case-insensitive)
    /// and resource wildcards, and its conditions. Only the condition the policies use is known here.
    fn applies(&self, action: &str, resource: &str, region: &str) -> bool {
        self.actions.iter().any(|a| wildcard(&a.to_lowercase(), &action.to_lowercase()))
            && self.resources.iter().any(|r| wildcard(r, resource))
            && self.conditions.iter().all(|(test, variable, values)| {
                assert!(
                    test == "StringEquals" && variable == "aws:RequestedRegion",
                    "statement {}: this test evaluates StringEquals on aws:RequestedRegion only, not {test} on {variable}",
                    self.sid
                );
                values.iter().any(|v| v == region)
            })
    }
}

/// IAM's `*` (any run of characters) and `?` (any one character).
fn wildcard(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    // matched[j]: the pattern so far matches the first j characters of the value.
    let mut matched = vec![false; v.len() + 1];
    matched[0] = true;
    for &pc in &p {
        let mut next = vec![false; v.len() + 1];
        for j in 0..=v.len() {
            next[j] = match pc {
                '*' => matched[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && matched[j - 1],
                c => j > 0 && matched[j - 1] && v[j - 1] == c,
            };
        }
        matched = next;
    }
    matched[v.len()]
}

/// Allowed: some statement allows it and none denies it.
fn allowed(policy: &[Statement], action: &str, resource: &str, region: &str) -> bool {
    let applying: Vec<_> = policy.iter().filter(|s| s.applies(action, resource, region)).collect();
    !applying.is_empty() && applying.iter().all(|s| s.allow)
}

fn granted(policy: &[Statement]) -> BTreeSet<String> {
    policy.iter().filter(|s| s.allow).flat_map(|s| s.actions.iter().cloned()).collect()
}

/// The policies and the ledger URL, from the parsed Terraform (python-hcl2 in the IaC venv `scripts/test`
/// installs). `None` when that venv is missing: a failure under `CI=true`.
struct Terraform {
    discovery: Vec<Statement>,
    rds_connect: Vec<Statement>,
    db_url: String,
}

fn terraform() -> Option<Terraform> {
    let venv = installed_peer("python-hcl2 (the IaC venv)", "GPUCOST_IAC_VENV", "iac-venv", "bin/python")?;
    let root = repo_root();
    let out = Command::new(venv.join("bin/python"))
        .arg(root.join("tests/platform_iac/iam_policies.py"))
        .args([root.to_str().unwrap(), REGION, ACCOUNT, DB_RESOURCE_ID, DB_IAM_USER, DB_HOST])
        .output()
        .expect("run iam_policies.py");
    assert!(
        out.status.success(),
        "iam_policies.py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("iam_policies.py prints JSON");
    let statements = |k: &str| v[k].as_array().expect(k).iter().map(Statement::from_json).collect::<Vec<_>>();
    Some(Terraform {
        discovery: statements("discovery"),
        rds_connect: statements("rds_connect"),
        db_url: v["db_url"].as_str().expect("db_url").to_string(),
    })
}

/// The policy document the user in moto holds: `policy` with every resource `*`, because moto authorises ECS and
/// EKS calls against the resource `*` only (the real resources are checked on the recorded requests).
fn for_moto(policy: &[Statement]) -> Value {
    let statements: Vec<Value> = policy
        .iter()
        .map(|s| {
            let mut conditions = serde_json::Map::new();
            for (test, variable, values) in &s.conditions {
                conditions.entry(test.clone()).or_insert_with(|| json!({}))[variable] = json!(values);
            }
            let mut statement = json!({
                "Sid": s.sid,
                "Effect": if s.allow { "Allow" } else { "Deny" },
                "Action": s.actions,
                "Resource": "*",
            });
            if !conditions.is_empty() {
                statement["Condition"] = Value::Object(conditions);
            }
            statement
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// `policy` without `action` (statements left with no action dropped).
fn without(policy: &[Statement], action: &str) -> Vec<Statement> {
    policy
        .iter()
        .cloned()
        .filter_map(|mut s| {
            s.actions.retain(|a| a != action);
            (!s.actions.is_empty()).then_some(s)
        })
        .collect()
}

/// What the setup made in moto: each user's access key, and the node groups' ARNs (which name a generated id).
struct Fleet {
    keys: BTreeMap<String, (String, String)>,
    nodegroup_arns: BTreeMap<String, String>,
}

/// moto with IAM enforced from now on, recording every request into `recording` once `record` is called.
fn moto(recording: &Path) -> Option<Moto> {
    let launcher = repo_root().join("tests/fixtures/moto/iam_server.py");
    Moto::start_with(Some(&launcher), &[("MOTO_RECORDER_FILEPATH", recording.to_str().unwrap())])
}

fn moto_api(moto: &Moto, path: &str, body: &str) -> String {
    let resp = ureq::post(&format!("{}/moto-api/{path}", moto.url())).send(body.to_string()).expect(path);
    resp.into_body().read_to_string().expect("moto's answer")
}

/// The discovery fleet of `tests/tests/discovery.rs` (two EKS clusters, three node groups, an ECS cluster with a
/// GPU container instance and a task) and one IAM user per policy in `users`; then IAM is enforced.
fn fleet(moto: &Moto, dir: &Path, users: &BTreeMap<String, Value>) -> Fleet {
    let out = dir.join("fleet.json");
    let users = serde_json::to_string(users).unwrap();
    moto.boto3_with_out(
        &out,
        &format!(
            r#"
USERS = json.loads({users:?})
eks = boto3.client('eks', **kw)
ecs = boto3.client('ecs', **kw)
iam = boto3.client('iam', **kw)
role = 'arn:aws:iam::123456789012:role/eks'
groups = [('gpu-prod', 'a10g-spot', 'g5.12xlarge', 'SPOT'), ('gpu-prod', 'system', 'm6i.xlarge', 'ON_DEMAND'),
          ('gpu-dev', 'a10g', 'g5.48xlarge', 'ON_DEMAND')]
for cluster in ('gpu-prod', 'gpu-dev'):
    eks.create_cluster(name=cluster, roleArn=role, resourcesVpcConfig={{'subnetIds': ['subnet-1']}})
arns = {{}}
for cluster, name, itype, capacity in groups:
    arns[cluster + '/' + name] = eks.create_nodegroup(clusterName=cluster, nodegroupName=name, nodeRole=role,
        subnets=['subnet-1'], instanceTypes=[itype], capacityType=capacity)['nodegroup']['nodegroupArn']
ecs.create_cluster(clusterName='batch')
ec2 = boto3.client('ec2', **kw)
iid = ec2.run_instances(ImageId='ami-12c6146b', MinCount=1, MaxCount=1, InstanceType='g6.xlarge')['Instances'][0]['InstanceId']
ecs.register_container_instance(cluster='batch', instanceIdentityDocument=json.dumps({{'instanceId': iid}}),
    totalResources=[{{'name': 'GPU', 'type': 'STRINGSET', 'stringSetValue': ['GPU-l4']}}],
    attributes=[{{'name': 'ecs.instance-type', 'value': 'g6.xlarge'}}])
ecs.register_task_definition(family='vision-embed', containerDefinitions=[{{'name': 'main', 'image': 'embed:1', 'memory': 512,
    'resourceRequirements': [{{'type': 'GPU', 'value': '1'}}]}}])
ecs.run_task(cluster='batch', taskDefinition='vision-embed', tags=[{{'key': 'backstage.io/owner', 'value': 'group:default/vision'}}])
keys = {{}}
for i, (name, policy) in enumerate(sorted(USERS.items())):
    user = f'gpucost-collector-{{i}}'
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName='discovery', PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)['AccessKey']
    keys[name] = [key['AccessKeyId'], key['SecretAccessKey']]
open(OUT, 'w').write(json.dumps({{'keys': keys, 'nodegroups': arns}}))
"#
        ),
    );
    let made: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let answer = moto_api(moto, "reset-auth", "0");
    assert!(answer.contains("\"ok\""), "moto did not enforce IAM: {answer}");
    Fleet {
        keys: made["keys"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), (v[0].as_str().unwrap().to_string(), v[1].as_str().unwrap().to_string())))
            .collect(),
        nodegroup_arns: made["nodegroups"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
    }
}

/// A collector discovering through moto with `key`; ready once its first discovery pass is over.
fn collector(moto: &Moto, dir: &Path, name: &str, key: &(String, String)) -> Collector {
    let env = [
        ("AWS_ACCESS_KEY_ID", key.0.as_str()),
        ("AWS_SECRET_ACCESS_KEY", key.1.as_str()),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ];
    let url = moto.url();
    Collector::start_with(
        &dir.join(format!("{name}.db")),
        free_port(),
        free_port(),
        &["--aws-discovery", "--aws-endpoint-url", &url],
        &env,
    )
}

/// One request moto recorded, as IAM authorises it.
#[derive(Debug)]
struct Call {
    action: String,
    /// The ARNs AWS authorises the action on (`*` for an action with no resource type).
    resources: Vec<String>,
    region: String,
    request: String,
}

/// Maps a recorded request to its IAM action, from the protocol: the `X-Amz-Target` of ECS's JSON protocol, the
/// method and path of EKS's REST protocol. The resource is the ARN the Service Authorization Reference names for
/// the action. A request of any other kind stops the test: teach it the new call.
fn call_of(entry: &Value, nodegroup_arns: &BTreeMap<String, String>) -> Call {
    let header = |name: &str| {
        entry["headers"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string)
    };
    let method = entry["method"].as_str().unwrap();
    let url = entry["url"].as_str().unwrap();
    let request = format!("{method} {url} {}", header("X-Amz-Target").unwrap_or_default());
    // Credential=KEY/DATE/REGION/SERVICE/aws4_request
    let authorization = header("Authorization").unwrap_or_else(|| panic!("{request}: not signed"));
    let scope: Vec<&str> =
        authorization.split("Credential=").nth(1).and_then(|c| c.split(',').next()).unwrap().split('/').collect();
    let (region, service) = (scope[2].to_string(), scope[3]);
    let path = url.splitn(4, '/').nth(3).unwrap_or_default();
    let path = path.split('?').next().unwrap();
    let body: Value = {
        let raw = entry["body"].as_str().unwrap_or_default();
        let bytes = if entry["body_encoded"] == true {
            base64::engine::general_purpose::STANDARD.decode(raw).unwrap()
        } else {
            raw.as_bytes().to_vec()
        };
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let arns =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect() };
    let ecs_cluster = |v: &Value| {
        let c = v.as_str().unwrap_or("default");
        if c.starts_with("arn:") { c.to_string() } else { format!("arn:aws:ecs:{region}:{ACCOUNT}:cluster/{c}") }
    };
    let segments: Vec<&str> = path.split('/').collect();
    let (action, resources) = match (service, method, segments.as_slice()) {
        ("eks", "GET", ["clusters"]) => ("eks:ListClusters".to_string(), vec!["*".to_string()]),
        ("eks", "GET", ["clusters", cluster, "node-groups"]) => {
            ("eks:ListNodegroups".to_string(), vec![format!("arn:aws:eks:{region}:{ACCOUNT}:cluster/{cluster}")])
        }
        ("eks", "GET", ["clusters", cluster, "node-groups", group]) => (
            "eks:DescribeNodegroup".to_string(),
            vec![nodegroup_arns.get(&format!("{cluster}/{group}")).expect("a node group of the fleet").clone()],
        ),
        ("ecs", "POST", [""]) => {
            let target = header("X-Amz-Target").unwrap_or_else(|| panic!("{request}: no X-Amz-Target"));
            let operation = target.rsplit('.').next().unwrap().to_string();
            let resources = match operation.as_str() {
                "ListClusters" | "ListTasks" => vec!["*".to_string()],
                "ListContainerInstances" => vec![ecs_cluster(&body["cluster"])],
                "DescribeContainerInstances" => arns(&body["containerInstances"]),
                "DescribeTasks" => arns(&body["tasks"]),
                other => panic!("{request}: the test does not know the resource of ecs:{other}; add it"),
            };
            (format!("ecs:{operation}"), resources)
        }
        _ => panic!("{request} (service {service}): the test does not know which IAM action this needs; add it"),
    };
    Call { action, resources, region, request }
}

#[test]
fn discovery_with_only_the_terraform_policy_calls_exactly_the_actions_it_grants() {
    let Some(tf) = terraform() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("moto-recording.jsonl");
    let Some(moto) = moto(&recording) else { return };
    let users = BTreeMap::from([("discovery".to_string(), for_moto(&tf.discovery))]);
    let fleet = fleet(&moto, dir.path(), &users);
    moto_api(&moto, "recorder/start-recording", "");

    let c = collector(&moto, dir.path(), "ledger", &fleet.keys["discovery"]);
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(!log.contains("AWS discovery failed"), "{log}");
    let (_, inv) = c.get("/api/v1/inventory");
    assert_eq!(inv["node_groups"].as_array().unwrap().len(), 3, "{inv}");
    assert_eq!(inv["ecs_instances"].as_array().unwrap().len(), 1, "{inv}");
    assert_eq!(inv["ecs_tasks"][0]["tags"]["backstage.io/owner"], "group:default/vision", "{inv}");
    // And it prices with it: a gpu-prod node whose agent sent no instance type is a g5.12xlarge of a10g-spot.
    let t0 = 1_793_577_600 * NS;
    let batch = pb::UsageBatch {
        agent_id: "ip-10-1-2-3".into(),
        boot_id: "b".into(),
        seq: 1,
        node: Some(pb::NodeInfo {
            cluster: "gpu-prod".into(),
            node_name: "ip-10-1-2-3".into(),
            region: REGION.into(),
            devices: (0..4)
                .map(|i| pb::GpuDevice {
                    uuid: format!("GPU-{i}"),
                    model: "NVIDIA A10G".into(),
                    memory_total_bytes: 24 << 30,
                    index: i,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        interval_start_unix_nanos: t0,
        interval_end_unix_nanos: t0 + 3_600 * NS,
        ..Default::default()
    };
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1, "stored");
    let (_, prices) = c.get("/api/v1/prices");
    assert_eq!(prices["nodes"][0]["instance_type"], "g5.12xlarge", "{prices}");
    let (_, costs) = c.get("/api/v1/costs?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z");
    assert_eq!(costs["fleet"]["micros"].as_u64(), Some(5_672_000), "{costs}");

    // Every request the collector made, allowed by the policy as written: action, resource and region.
    moto_api(&moto, "recorder/stop-recording", "");
    let recorded = ureq::get(&format!("{}/moto-api/recorder/download-recording", moto.url()))
        .call()
        .expect("moto's recording")
        .into_body()
        .read_to_string()
        .unwrap();
    let calls: Vec<Call> = recorded
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| call_of(&serde_json::from_str(l).unwrap(), &fleet.nodegroup_arns))
        .collect();
    assert!(calls.len() >= 8, "moto recorded {} requests:\n{recorded}", calls.len());
    let refused: Vec<String> = calls
        .iter()
        .flat_map(|c| c.resources.iter().map(move |r| (c, r)))
        .filter(|(c, r)| !allowed(&tf.discovery, &c.action, r, &c.region))
        .map(|(c, r)| format!("{} on {r} in {} ({})", c.action, c.region, c.request))
        .collect();
    assert!(
        refused.is_empty(),
        "the discovery policy does not allow what the collector called:\n{}",
        refused.join("\n")
    );

    let called: BTreeSet<String> = calls.iter().map(|c| c.action.clone()).collect();
    let granted = granted(&tf.discovery);
    assert_eq!(
        called,
        granted,
        "called but not granted: {:?}; granted but never called: {:?}",
        called.difference(&granted).collect::<Vec<_>>(),
        granted.difference(&called).collect::<Vec<_>>()
    );
}

#[test]
fn discovery_without_any_one_granted_action_fails_naming_that_action() {
    let Some(tf) = terraform() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = moto(&dir.path().join("moto-recording.jsonl")) else { return };
    let actions = granted(&tf.discovery);
    let users: BTreeMap<String, Value> =
        actions.iter().map(|a| (a.clone(), for_moto(&without(&tf.discovery, a)))).collect();
    let fleet = fleet(&moto, dir.path(), &users);

    for (i, action) in actions.iter().enumerate() {
        let c = collector(&moto, dir.path(), &format!("without-{i}"), &fleet.keys[action]);
        let log = std::fs::read_to_string(&c.log).unwrap();
        let failure = log
            .lines()
            .find(|l| l.contains("AWS discovery failed"))
            .unwrap_or_else(|| panic!("without {action}, discovery did not fail:\n{log}"));
        assert!(
            failure.contains(&format!("AWS discovery: {action}: access denied (HTTP 403)"))
                && failure.contains(&format!("may not call {action};")),
            "without {action}, the error does not name it:\n{failure}"
        );
        let (_, inv) = c.get("/api/v1/inventory");
        assert_eq!(inv["node_groups"].as_array().unwrap().len(), 0, "without {action}: {inv}");
    }
}

#[test]
fn the_ledger_login_policy_is_for_the_user_the_collector_signs_its_rds_tokens_for() {
    let Some(tf) = terraform() else { return };
    assert_eq!(granted(&tf.rds_connect), BTreeSet::from(["rds-db:connect".to_string()]));

    // The URL Terraform gives the collector with db_iam_user set, as the collector reads it.
    let url = tf.db_url.as_str();
    assert!(url.contains("auth=rds-iam") && url.contains("sslmode=verify-full"), "{url}");
    let authority = url.strip_prefix("postgres://").unwrap().split('/').next().unwrap();
    let (user, host_port) = authority.split_once('@').expect("a user in the URL");
    assert!(!user.contains(':'), "a password in the IAM URL: {url}");
    let (host, port) = host_port.split_once(':').unwrap();
    let creds = Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    };
    let token = auth_token(host, port.parse().unwrap(), user, REGION, &creds, 1_793_577_600);

    // What RDS authorises that token as: `<service>:<Action>` on the dbuser ARN of its DBUser, in its region.
    let query: BTreeMap<&str, String> = token
        .split_once("/?")
        .expect("host:port/?query")
        .1
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k, v.replace("%2F", "/").replace("%3A", ":"))
        })
        .collect();
    let scope: Vec<&str> = query["X-Amz-Credential"].split('/').collect();
    let (region, service) = (scope[2], scope[3]);
    let action = format!("{service}:{}", query["Action"]);
    let dbuser = |u: &str| format!("arn:aws:rds-db:{region}:{ACCOUNT}:dbuser:{DB_RESOURCE_ID}/{u}");
    assert_eq!((action.as_str(), query["DBUser"].as_str()), ("rds-db:connect", DB_IAM_USER), "{token}");
    assert!(
        allowed(&tf.rds_connect, &action, &dbuser(&query["DBUser"]), region),
        "the task role may not connect as the user its tokens name: {action} on {} ({:?})",
        dbuser(&query["DBUser"]),
        tf.rds_connect
    );
    // And as no other user, the master user included.
    assert!(!allowed(&tf.rds_connect, &action, &dbuser("gpucost"), region));
}

#[test]
fn iam_wildcards_match_as_aws_documents_them() {
    assert!(wildcard("arn:aws:ecs:us-east-1:1:task/*", "arn:aws:ecs:us-east-1:1:task/batch/abc"));
    assert!(!wildcard("arn:aws:ecs:us-east-1:1:task/*", "arn:aws:ecs:us-east-1:1:cluster/batch"));
    assert!(wildcard("arn:aws:eks:*:1:nodegroup/*/*/*", "arn:aws:eks:eu-west-1:1:nodegroup/c/g/uuid"));
    assert!(!wildcard("arn:aws:eks:*:1:nodegroup/*/*/*", "arn:aws:eks:eu-west-1:1:nodegroup/c/g"));
    assert!(wildcard("ecs:Describe?asks", "ecs:DescribeTasks"));
    assert!(wildcard("*", ""));
    assert!(!wildcard("", "x"));
}
