"""What issue 8 asks of terraform/, checked on the parsed HCL (python-hcl2, as checkov parses it).

terraform validate cannot run offline (no AWS provider 5.x here), so this reads the configuration itself: the
version pins, the modules and how the root wires them, the resources each module must have and their safety
settings, the example tfvars against the declared variables. Prints one line per problem, naming the file;
exits 1 when there is any.

    python check_terraform.py <repo root>
"""

import glob
import os
import re
import sys

import hcl2

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
TF = os.path.join(ROOT, "terraform")
problems = []


def problem(path, text):
    problems.append(f"{os.path.relpath(path, ROOT)}: {text}")


def norm(value):
    """python-hcl2 wraps every attribute's value in a one-element list; nested blocks are lists of dicts. Unwrap the
    former (keeping blocks as lists of dicts) and drop its __start_line__/__end_line__ keys."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k.startswith("__"):
                continue
            if isinstance(v, list) and len(v) == 1 and not isinstance(v[0], dict):
                v = v[0]
            out[k] = norm(v)
        return out
    if isinstance(value, list):
        return [norm(v) for v in value]
    return value


def load(path):
    with open(path) as f:
        return norm(hcl2.load(f))


def module_files(folder):
    return sorted(glob.glob(os.path.join(folder, "*.tf")))


def blocks(folder, kind):
    """(file, type, name, body) for every `kind` (resource, data) block in a folder's .tf files."""
    out = []
    for path in module_files(folder):
        for entry in load(path).get(kind, []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    out.append((path, rtype, name, body))
    return out


def named_blocks(folder, kind):
    """(file, name, body) for variable, output, module blocks."""
    out = []
    for path in module_files(folder):
        for entry in load(path).get(kind, []):
            for name, body in entry.items():
                out.append((path, name, body))
    return out


def one(value):
    """hcl2 wraps nested blocks in lists."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def find(folder, rtype, name=None, kind="resource"):
    return [(p, n, b) for p, t, n, b in blocks(folder, kind) if t == rtype and (name is None or n == name)]


def need(folder, rtype, name=None, why=""):
    found = find(folder, rtype, name)
    if not found:
        problem(folder, f"no {rtype}{'.' + name if name else ''} ({why})")
    return found


def check_versions(folder, extra_providers=()):
    path = os.path.join(folder, "versions.tf")
    if not os.path.exists(path):
        problem(folder, "no versions.tf pinning Terraform and the AWS provider")
        return
    terraform = one(load(path).get("terraform", [{}]))
    rv = terraform.get("required_version", "")
    if not re.search(r">=\s*1\.5(\.\d+)?\b", rv):
        problem(path, f"required_version {rv!r} must be >= 1.5")
    providers = one(terraform.get("required_providers", [{}]))
    aws = one(providers.get("aws"))
    if not aws:
        problem(path, "required_providers has no aws")
        return
    if aws.get("source") != "hashicorp/aws":
        problem(path, f"aws provider source {aws.get('source')!r} is not hashicorp/aws")
    constraints = [c.strip() for c in aws.get("version", "").split(",")]
    if "~> 5.0" not in constraints:
        problem(path, f"aws provider version {aws.get('version')!r} must include '~> 5.0' (AWS provider 5.x)")
    for name in extra_providers:
        if name not in providers:
            problem(path, f"required_providers has no {name}")


# --- versions: the root and every module -------------------------------------------------------------------

check_versions(TF, extra_providers=("random", "tls"))
modules_dir = os.path.join(TF, "modules")
for m in ("networking", "eks", "ecs", "discovery-policy"):
    folder = os.path.join(modules_dir, m)
    if not os.path.isdir(folder):
        problem(modules_dir, f"module {m}/ is missing")
        continue
    check_versions(folder)

# --- the root wires the modules ------------------------------------------------------------------------------

mods = {name: body for _, name, body in named_blocks(TF, "module")}
for m in ("networking", "eks", "ecs"):
    if m not in mods:
        problem(os.path.join(TF, "main.tf"), f"module {m!r} is not called")
    elif mods[m].get("source") != f"./modules/{m}":
        problem(os.path.join(TF, "main.tf"), f"module {m!r} source {mods[m].get('source')!r} != ./modules/{m}")
if "ecs" in mods:
    for arg, expected in (("subnet_ids", "private_subnet_ids"), ("grpc_target_group_arn", "grpc_target_group_arn")):
        if expected not in str(mods["ecs"].get(arg, "")):
            problem(os.path.join(TF, "main.tf"), f"module ecs: {arg} is not wired to module.networking.{expected}")
if "eks" in mods and "private_subnet_ids" not in str(mods["eks"].get("subnet_ids", "")):
    problem(os.path.join(TF, "main.tf"), "module eks: nodes must go into module.networking.private_subnet_ids")

provider = [b for p in module_files(TF) for e in load(p).get("provider", []) for n, b in e.items() if n == "aws"]
if not provider or "default_tags" not in provider[0]:
    problem(os.path.join(TF, "versions.tf"), "the aws provider sets no default_tags (every resource must be tagged)")

# --- networking ----------------------------------------------------------------------------------------------

net = os.path.join(modules_dir, "networking")
need(net, "aws_vpc", why="the VPC")
for tier in ("public", "private"):
    for p, n, b in need(net, "aws_subnet", tier, why=f"{tier} subnets"):
        if "count" not in b and "for_each" not in b:
            problem(p, f"aws_subnet.{tier} is a single subnet; it must span the availability zones")
        if tier == "public" and b.get("map_public_ip_on_launch") is not False:
            problem(p, "aws_subnet.public must set map_public_ip_on_launch = false")
need(net, "aws_nat_gateway", why="egress for the private subnets")
need(net, "aws_flow_log", why="VPC flow logs")
for p, n, b in need(net, "aws_lb", why="the collector's ALB"):
    if b.get("load_balancer_type") != "application":
        problem(p, f"aws_lb.{n} is not an application load balancer")
    if b.get("drop_invalid_header_fields") is not True:
        problem(p, f"aws_lb.{n} must drop invalid header fields")
    if "deletion_protection" not in str(b.get("enable_deletion_protection", "")):
        problem(p, f"aws_lb.{n}: enable_deletion_protection must follow a deletion-protection variable")
    if not b.get("access_logs"):
        problem(p, f"aws_lb.{n} has no access logs")

tgs = {n: b for _, n, b in find(net, "aws_lb_target_group")}
grpc_tgs = [n for n, b in tgs.items() if b.get("protocol_version") == "GRPC"]
if not grpc_tgs:
    problem(net, "no target group with protocol_version = \"GRPC\" for the agents")
for n in grpc_tgs:
    if tgs[n].get("target_type") != "ip":
        problem(net, f"aws_lb_target_group.{n}: Fargate tasks need target_type = \"ip\"")
http_tgs = [n for n, b in tgs.items() if one(b.get("health_check", [{}])).get("path") == "/readyz"]
if not http_tgs:
    problem(net, "no target group health-checking the collector's /readyz")

listeners = find(net, "aws_lb_listener")
https = [(p, n, b) for p, n, b in listeners if b.get("protocol") == "HTTPS"]
if len(https) < 2:
    problem(net, f"{len(https)} HTTPS listener(s); need one for the HTTP API and one for gRPC")
for p, n, b in listeners:
    if b.get("protocol") != "HTTPS":
        problem(p, f"aws_lb_listener.{n} is {b.get('protocol')}, not HTTPS")
    if "certificate_arn" not in str(b.get("certificate_arn", "")):
        problem(p, f"aws_lb_listener.{n} takes no ACM certificate variable")
    if "ssl_policy" not in b:
        problem(p, f"aws_lb_listener.{n} has no ssl_policy")
    target = str(one(b.get("default_action", [{}])).get("target_group_arn", ""))
    if str(b.get("port")) == "443" and not any(f"aws_lb_target_group.{t}." in target for t in http_tgs):
        problem(p, f"aws_lb_listener.{n} on 443 must forward to the /readyz (HTTP API) target group")
    if str(b.get("port")) != "443" and not any(f"aws_lb_target_group.{t}." in target for t in grpc_tgs):
        problem(p, f"aws_lb_listener.{n} on {b.get('port')} must forward to the GRPC target group")

# --- no 0.0.0.0/0 ingress but the ALB's 443 (every module) ---------------------------------------------------

variables_all = {}
for folder in [TF] + [os.path.join(modules_dir, m) for m in os.listdir(modules_dir)]:
    for p, n, b in named_blocks(folder, "variable"):
        variables_all[(folder, n)] = (p, b)
    for p, n, b in find(folder, "aws_vpc_security_group_ingress_rule"):
        cidr = str(b.get("cidr_ipv4", ""))
        port = str(b.get("from_port", ""))
        open_world = "0.0.0.0/0" in cidr
        if cidr.startswith("${each.value}"):  # resolved from a list; check the list's sources below
            open_world = False
        if open_world and port != "443":
            problem(p, f"aws_vpc_security_group_ingress_rule.{n} opens port {port} to 0.0.0.0/0")
    for p, n, b in find(folder, "aws_security_group"):
        for rule in b.get("ingress", []) or []:
            if "0.0.0.0/0" in str(rule.get("cidr_blocks", "")) and str(rule.get("from_port")) != "443":
                problem(p, f"aws_security_group.{n} opens port {rule.get('from_port')} to 0.0.0.0/0")
for (folder, n), (p, b) in variables_all.items():
    if n.endswith("ingress_cidrs") and "0.0.0.0/0" in str(b.get("default", "")):
        if n != "api_ingress_cidrs":
            problem(p, f"variable {n} defaults to 0.0.0.0/0: only the ALB's 443 (api_ingress_cidrs) may be open")

# --- EKS ------------------------------------------------------------------------------------------------------

eks = os.path.join(modules_dir, "eks")
for p, n, b in need(eks, "aws_eks_cluster", why="the cluster"):
    if not b.get("encryption_config"):
        problem(p, "aws_eks_cluster: Kubernetes secrets are not encrypted with a KMS key")
    if len(b.get("enabled_cluster_log_types", [])) < 5:
        problem(p, "aws_eks_cluster: enable all five control plane log types")
    vpc = one(b.get("vpc_config", [{}]))
    if vpc.get("endpoint_private_access") is not True:
        problem(p, "aws_eks_cluster: the private API endpoint must be on")
eks_vars = {n: b for (f, n), (_, b) in variables_all.items() if f == eks}
if eks_vars.get("endpoint_public_access", {}).get("default") is not False:
    problem(os.path.join(eks, "variables.tf"), "endpoint_public_access must default to false")
need(eks, "aws_eks_node_group", "system", why="the system node group")
for p, n, b in need(eks, "aws_eks_node_group", "gpu", why="GPU node groups from a list variable"):
    if "for_each" not in b:
        problem(p, "aws_eks_node_group.gpu must be one node group per entry of gpu_node_groups (for_each)")
    taints = b.get("taint", [])
    ok = any(t.get("key") == "nvidia.com/gpu" and t.get("value") == "true" and t.get("effect") == "NO_SCHEDULE" for t in taints)
    if not ok:
        problem(p, "aws_eks_node_group.gpu lacks the taint nvidia.com/gpu=true:NoSchedule")
    if "nvidia.com/gpu.present" not in str(b.get("labels", "")):
        problem(p, "aws_eks_node_group.gpu lacks the nvidia.com/gpu.present label")
if "gpu_node_groups" not in eks_vars or "list(" not in str(eks_vars["gpu_node_groups"].get("type", "")):
    problem(os.path.join(eks, "variables.tf"), "gpu_node_groups must be a list variable")
eks_locals = {}
for path in module_files(eks):
    for entry in load(path).get("locals", []):
        eks_locals.update(entry)
addons = set(eks_locals.get("addons", []))
for a in ("vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent"):
    if a not in addons:
        problem(os.path.join(eks, "main.tf"), f"add-on {a} is not installed (local.addons)")
need(eks, "aws_eks_addon", why="the add-ons")
for who in ("agent", "collector"):
    need(eks, "aws_eks_pod_identity_association", who, why=f"IAM for the {who}'s pods")
for p, n, b in find(eks, "aws_launch_template"):
    md = one(b.get("metadata_options", [{}]))
    if md.get("http_tokens") != "required":
        problem(p, f"aws_launch_template.{n}: IMDSv2 (http_tokens = required) is not enforced")
    ebs = one(one(b.get("block_device_mappings", [{}])).get("ebs", [{}]))
    if ebs.get("encrypted") is not True:
        problem(p, f"aws_launch_template.{n}: root volumes are not encrypted")

# --- the discovery policy: exactly the calls the collector makes (tests/tests/iam.rs proves it) ------------

disc = os.path.join(modules_dir, "discovery-policy")
if not find(disc, "aws_iam_policy_document", "discovery", kind="data"):
    problem(disc, "no data.aws_iam_policy_document.discovery")
for folder in (eks, os.path.join(modules_dir, "ecs")):
    if '"../discovery-policy"' not in "".join(open(f).read() for f in module_files(folder)):
        problem(folder, "does not use modules/discovery-policy for the collector's discovery role")

# --- ECS ------------------------------------------------------------------------------------------------------

ecs = os.path.join(modules_dir, "ecs")
ecs_vars = {n: (p, b) for (f, n), (p, b) in variables_all.items() if f == ecs}
need(ecs, "aws_ecs_cluster", why="the Fargate cluster")
for p, n, b in need(ecs, "aws_ecs_task_definition", "collector", why="the collector's task definition"):
    if b.get("requires_compatibilities") != ["FARGATE"] or b.get("network_mode") != "awsvpc":
        problem(p, "the collector's task definition must be FARGATE / awsvpc")
    if "aws_iam_role.execution" not in str(b.get("execution_role_arn")) or "aws_iam_role.task" not in str(b.get("task_role_arn")):
        problem(p, "the task definition needs its own execution role and task role")
for p, n, b in need(ecs, "aws_ecs_service", "collector", why="the collector's service"):
    lbs = b.get("load_balancer", [])
    if len(lbs) != 2:
        problem(p, f"aws_ecs_service.collector has {len(lbs)} load_balancer blocks; it must sit behind both target groups")
    if not b.get("deployment_circuit_breaker"):
        problem(p, "aws_ecs_service.collector has no deployment circuit breaker")
    if one(b.get("network_configuration", [{}])).get("assign_public_ip") is not False:
        problem(p, "aws_ecs_service.collector tasks must not get public IPs")
dc = ecs_vars.get("desired_count")
if not dc or not re.search(r">=\s*2", str(dc[1].get("validation", ""))) or (dc[1].get("default") or 0) < 2:
    problem(os.path.join(ecs, "variables.tf"), "desired_count must default to >= 2 and validate >= 2")
led = ecs_vars.get("ledger")
if not led or led[1].get("default") != "postgres" or "sqlite-efs" not in str(led[1].get("validation", "")):
    problem(os.path.join(ecs, "variables.tf"), "ledger must default to \"postgres\" and accept \"sqlite-efs\"")
for p, n, b in need(ecs, "aws_db_instance", "ledger", why="the RDS for PostgreSQL ledger"):
    for key, want in (("storage_encrypted", True), ("publicly_accessible", False), ("skip_final_snapshot", False), ("engine", "postgres")):
        if b.get(key) != want:
            problem(p, f"aws_db_instance.ledger: {key} must be {want!r}")
    for key in ("multi_az", "deletion_protection", "kms_key_id"):
        if key not in b:
            problem(p, f"aws_db_instance.ledger sets no {key}")
for p, n, b in need(ecs, "aws_db_instance", "ledger", why="the RDS for PostgreSQL ledger"):
    if b.get("iam_database_authentication_enabled") is not True:
        problem(p, "aws_db_instance.ledger: IAM database authentication must be enabled (db_iam_user)")
pg_tf = os.path.join(ecs, "postgres.tf")
pg_text = open(pg_tf).read() if os.path.exists(pg_tf) else ""
for want in ("sslmode=verify-full", "sslrootcert=/etc/ssl/certs/rds-global-bundle.pem", "auth=rds-iam"):
    if want not in pg_text:
        problem(pg_tf, f"the collector's URL must carry {want} (verify RDS's certificate; IAM login with db_iam_user)")
pdocs = [(p, b) for p, n, b in find(ecs, "aws_iam_policy_document", "rds_connect", kind="data")]
if not pdocs:
    problem(os.path.join(ecs, "postgres.tf"), "no data.aws_iam_policy_document.rds_connect (rds-db:connect for db_iam_user)")
for p, b in pdocs:
    st = one(b.get("statement", [{}]))
    res = str(st.get("resources"))
    if st.get("actions") != ["rds-db:connect"] or ":dbuser:" not in res or "var.db_iam_user" not in res:
        problem(p, "rds_connect must allow rds-db:connect on this database's db_iam_user only")
dockerfile = os.path.join(ROOT, "docker", "collector.Dockerfile")
if not os.path.exists(dockerfile) or "rds-global-bundle.pem" not in open(dockerfile).read():
    problem("docker/collector.Dockerfile", "the collector image must carry the RDS CA bundle the URL names")
for p, n, b in need(ecs, "aws_secretsmanager_secret", "db", why="generated database credentials"):
    if "kms_key_id" not in b:
        problem(p, "aws_secretsmanager_secret.db is not encrypted with the module's KMS key")
for p, n, b in need(ecs, "aws_efs_file_system", "ledger", why="the SQLite-on-EFS alternative"):
    if b.get("encrypted") is not True:
        problem(p, "aws_efs_file_system.ledger is not encrypted")
need(ecs, "aws_efs_access_point", "ledger", why="the SQLite-on-EFS alternative")
need(ecs, "aws_backup_plan", "ledger", why="scheduled backups of the SQLite ledger")
for p, n, b in find(ecs, "aws_cloudwatch_log_group"):
    if "kms_key_id" not in b or "retention_in_days" not in b:
        problem(p, f"aws_cloudwatch_log_group.{n} needs kms_key_id and retention_in_days")

ecs_locals = {}
for path in module_files(ecs):
    for entry in load(path).get("locals", []):
        ecs_locals.update(entry)
c = ecs_locals.get("container")
c = c[0] if isinstance(c, list) else c
main_tf = os.path.join(ecs, "main.tf")
if not isinstance(c, dict):
    problem(main_tf, "no local.container (the collector's container definition)")
else:
    if c.get("readonlyRootFilesystem") is not True:
        problem(main_tf, "the container's root filesystem must be read-only")
    if str(c.get("user", "0")).split(":")[0] in ("0", "root", ""):
        problem(main_tf, "the container must run as a non-root user")
    hc = c.get("healthCheck") or {}
    if not hc.get("command"):
        problem(main_tf, "the container has no healthCheck")
    if (c.get("logConfiguration") or {}).get("logDriver") != "awslogs":
        problem(main_tf, "the container does not log to CloudWatch (awslogs)")
    if "/readyz" not in open(os.path.join(ROOT, "docker", "collector-healthcheck.sh")).read():
        problem(os.path.join(ROOT, "docker", "collector-healthcheck.sh"), "the health check does not ask /readyz")

# --- example tfvars: every key declared, every required variable set ----------------------------------------

root_vars = {n: b for (f, n), (_, b) in variables_all.items() if f == TF}
required = {n for n, b in root_vars.items() if "default" not in b}
for example in ("prod.tfvars", "small-fleet.tfvars"):
    path = os.path.join(TF, "examples", example)
    if not os.path.exists(path):
        problem(os.path.join(TF, "examples"), f"{example} is missing")
        continue
    values = load(path)
    for k in values:
        if k not in root_vars:
            problem(path, f"sets {k!r}, which terraform/variables.tf does not declare")
    for k in sorted(required - set(values)):
        problem(path, f"does not set the required variable {k!r}")
    if example == "small-fleet.tfvars" and values.get("ledger") != "sqlite-efs":
        problem(path, "the small-fleet example must use ledger = \"sqlite-efs\"")
    if example == "prod.tfvars" and values.get("ledger", "postgres") != "postgres":
        problem(path, "the production example must use ledger = \"postgres\"")

for line in problems:
    print(line)
sys.exit(1 if problems else 0)
