"""The delivery artefacts, checked field by field:

  taskdef   deploy/ecs/collector-task-definition.json: what ECS needs, what the collector image provides (user,
            health check script, entrypoint secrets), and the same container as terraform/modules/ecs registers
            (ledger = "postgres", the defaults), placeholders all filled by the CI workflow.
  workflow  .github/workflows/ci.yml: parses, has the jobs issue 8 asks for doing what they say, pins every action
            to a commit SHA with its release in a comment, gives OIDC only to the jobs that assume the AWS role.

Prints one line per problem, naming the file; exits 1 when there is any.

    python check_delivery.py <repo root> taskdef|workflow
"""

import json
import os
import re
import sys

import hcl2
import yaml

ROOT, WHAT = sys.argv[1], sys.argv[2]
problems = []
TASKDEF = "deploy/ecs/collector-task-definition.json"
WORKFLOW = ".github/workflows/ci.yml"
ECS_MODULE = "terraform/modules/ecs"


def problem(path, text):
    problems.append(f"{path}: {text}")


def read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def norm(value):
    """python-hcl2 wraps attribute values in one-element lists; unwrap them (blocks stay lists of dicts)."""
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


def hcl(rel, raw=False):
    """The parsed file; raw keeps python-hcl2's shape, which leaves object literals (locals) as written."""
    with open(os.path.join(ROOT, rel)) as f:
        doc = hcl2.load(f)
    return doc if raw else norm(doc)


def variable_defaults(folder):
    out = {}
    for name in sorted(os.listdir(os.path.join(ROOT, folder))):
        if name.endswith(".tf"):
            for entry in hcl(f"{folder}/{name}").get("variable", []):
                for var, body in entry.items():
                    if "default" in body:
                        out[var] = body["default"]
    return out


def dockerfile_facts():
    text = read("docker/collector.Dockerfile")
    stages = re.split(r"(?m)^FROM ", text)
    final = stages[-1]
    user = re.findall(r"(?m)^USER\s+(\S+)", final)
    copies = re.findall(r"(?m)^COPY\s+(?:--\S+\s+)*(\S+)\s+(\S+)", final)
    return final, (user[-1] if user else None), {dst: src for src, dst in copies}


# ---------------------------------------------------------------------------------------------------------------
def check_taskdef():
    try:
        td = json.loads(read(TASKDEF))
    except (OSError, ValueError) as e:
        problem(TASKDEF, f"does not parse as JSON: {e}")
        return
    for key in ("family", "requiresCompatibilities", "networkMode", "cpu", "memory", "executionRoleArn", "taskRoleArn", "containerDefinitions"):
        if key not in td:
            problem(TASKDEF, f"no {key}")
    if "FARGATE" not in td.get("requiresCompatibilities", []):
        problem(TASKDEF, "requiresCompatibilities lacks FARGATE")
    if td.get("networkMode") != "awsvpc":
        problem(TASKDEF, "networkMode must be awsvpc (Fargate)")
    if td.get("executionRoleArn") == td.get("taskRoleArn"):
        problem(TASKDEF, "the execution role and the task role must differ")
    cds = td.get("containerDefinitions", [])
    if len(cds) != 1 or cds[0].get("name") != "gpucost-collector":
        problem(TASKDEF, "containerDefinitions must hold exactly the container gpucost-collector")
        return
    c = cds[0]

    # What the image provides.
    final, image_user, copies = dockerfile_facts()
    for key in ("image", "essential", "user", "portMappings", "healthCheck", "logConfiguration", "secrets", "readonlyRootFilesystem"):
        if key not in c:
            problem(TASKDEF, f"gpucost-collector has no {key}")
    if c.get("essential") is not True:
        problem(TASKDEF, "gpucost-collector must be essential")
    uid = str(c.get("user", "")).split(":")[0]
    if uid in ("", "0", "root"):
        problem(TASKDEF, f"gpucost-collector runs as root (user {c.get('user')!r})")
    if image_user and c.get("user") != image_user:
        problem(TASKDEF, f"user {c.get('user')!r} differs from docker/collector.Dockerfile's USER {image_user}")
    if c.get("readonlyRootFilesystem") is not True:
        problem(TASKDEF, "the root filesystem must be read-only")
    if c.get("privileged"):
        problem(TASKDEF, "gpucost-collector must not be privileged")
    drop = ((c.get("linuxParameters") or {}).get("capabilities") or {}).get("drop", [])
    if "ALL" not in drop:
        problem(TASKDEF, "linuxParameters.capabilities.drop must be [\"ALL\"]")
    ports = {(p.get("containerPort"), p.get("protocol")) for p in c.get("portMappings", [])}
    for port in (8080, 50051):
        if (port, "tcp") not in ports:
            problem(TASKDEF, f"no tcp portMapping for {port}")
    hc = c.get("healthCheck") or {}
    cmd = hc.get("command") or []
    if not cmd or cmd[0] not in ("CMD", "CMD-SHELL"):
        problem(TASKDEF, "healthCheck.command must start with CMD or CMD-SHELL")
    elif cmd[0] == "CMD" and cmd[1] not in copies:
        problem(TASKDEF, f"healthCheck runs {cmd[1]}, which docker/collector.Dockerfile does not install")
    for key in ("interval", "timeout", "retries", "startPeriod"):
        if key not in hc:
            problem(TASKDEF, f"healthCheck has no {key}")
    log = c.get("logConfiguration") or {}
    if log.get("logDriver") != "awslogs":
        problem(TASKDEF, "logConfiguration.logDriver must be awslogs")
    for key in ("awslogs-group", "awslogs-region", "awslogs-stream-prefix"):
        if key not in (log.get("options") or {}):
            problem(TASKDEF, f"logConfiguration.options has no {key}")
    volumes = {v.get("name") for v in td.get("volumes", [])}
    mounts = {m.get("containerPath"): m.get("sourceVolume") for m in c.get("mountPoints", [])}
    for path, vol in mounts.items():
        if vol not in volumes:
            problem(TASKDEF, f"mountPoint {path} uses volume {vol!r}, which volumes does not declare")
    if "/tmp" not in mounts:
        problem(TASKDEF, "nothing writable at /tmp (the root is read-only; the entrypoint writes the secrets' files there)")

    # Secrets only from Secrets Manager, and none in the plain environment.
    entrypoint = read("docker/collector-entrypoint.sh")
    for s in c.get("secrets", []):
        ref = s.get("valueFrom", "")
        if not re.match(r"^(arn:aws[a-z-]*:secretsmanager:[^:]+:\d{12}:secret:[^:]+|\$\{[A-Z_]+_SECRET_ARN\})(:[^:]*:[^:]*:[^:]*)?$", ref):
            problem(TASKDEF, f"secret {s.get('name')} does not come from Secrets Manager ({ref!r})")
        if s.get("name", "").endswith(("_PEM", "_TOML")) and s.get("name") not in entrypoint:
            problem(TASKDEF, f"secret {s.get('name')} is not turned into a file by docker/collector-entrypoint.sh")
    secret_names = {s.get("name") for s in c.get("secrets", [])}
    for need in ("GPUCOST_DB", "GPUCOST_AUTH_TOML", "GPUCOST_TLS_CERT_PEM", "GPUCOST_TLS_KEY_PEM"):
        if need not in secret_names:
            problem(TASKDEF, f"secret {need} is missing (the collector needs its ledger URL, tokens and gRPC TLS)")
    for e in c.get("environment", []):
        if re.search(r"TOKEN|SECRET|PASSWORD|_PEM|_TOML|GPUCOST_DB$|GPUCOST_AUTH$", e.get("name", "")):
            problem(TASKDEF, f"{e.get('name')} is in the plain environment; it must be a secret")
        if e.get("name") == "GPUCOST_INSECURE":
            problem(TASKDEF, "GPUCOST_INSECURE must not be set in production")

    # Placeholders: each one a repository variable Terraform outputs and the workflow fills.
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", read(TASKDEF))) - {"COLLECTOR_IMAGE"}
    outputs = read("terraform/outputs.tf")
    workflow = read(WORKFLOW)
    for ph in sorted(placeholders):
        if not re.search(rf"(?m)^\s*{ph}\s*=", outputs):
            problem(TASKDEF, f"placeholder ${{{ph}}} is not in terraform output github_variables")
        if f"${{{ph}}}" not in workflow:
            problem(TASKDEF, f"placeholder ${{{ph}}} is not filled by {WORKFLOW} (envsubst list)")

    check_same_as_terraform(td, c)


def resolve(text, variables, locals_):
    def sub(m):
        expr = m.group(1)
        if expr.startswith("var.") and expr[4:] in variables:
            return str(variables[expr[4:]])
        if expr.startswith("local.") and isinstance(locals_.get(expr[6:]), str):
            return locals_[expr[6:]]
        return m.group(0)

    return re.sub(r"\$\{([a-z_.]+)\}", sub, text) if isinstance(text, str) else text


def merge_keys(expr, flags):
    """Keys of a merge({...}, cond ? {...} : {}, var.x) expression as python-hcl2 prints it, for the given truth of
    each condition."""
    body = re.sub(r"\$\{[^{}]*\}", "X", expr[len("${merge("):-2])
    keys = set()
    for cond, inner in re.findall(r"(?:([a-z_.]+) \? )?\{([^{}]*)\}", body):
        if cond and not flags.get(cond, False):
            continue
        keys.update(re.findall(r"'([A-Z_]+)':", inner))
    return keys


def check_same_as_terraform(td, c):
    """The JSON against terraform/modules/ecs: ledger = "postgres", the module's and the root's defaults."""
    tf_main = f"{ECS_MODULE}/main.tf"
    variables = variable_defaults(ECS_MODULE)
    root_vars = variable_defaults("terraform")
    locals_ = {}
    for entry in hcl(tf_main, raw=True).get("locals", []):
        locals_.update({k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in entry.items() if not k.startswith("__")})
    tc = locals_.get("container")
    tc = tc[0] if isinstance(tc, list) else tc
    if not isinstance(tc, dict):
        problem(tf_main, "no local.container to compare the JSON with")
        return

    def differ(what, json_value, tf_value):
        if json_value != tf_value:
            problem(TASKDEF, f"{what} is {json_value!r} here but {tf_value!r} in {tf_main}")

    differ("the container name", c.get("name"), resolve(tc.get("name"), variables, locals_))
    for key in ("user", "readonlyRootFilesystem", "essential", "command", "stopTimeout", "healthCheck", "linuxParameters", "ulimits"):
        differ(key, c.get(key), tc.get(key))
    tports = [{k: (int(resolve(v, variables, locals_)) if k == "containerPort" else v) for k, v in p.items()} for p in tc.get("portMappings", [])]
    differ("portMappings", c.get("portMappings"), tports)
    tlog = tc.get("logConfiguration", {})
    differ("logDriver", c.get("logConfiguration", {}).get("logDriver"), tlog.get("logDriver"))
    jopts, topts = c.get("logConfiguration", {}).get("options", {}), tlog.get("options", {})
    differ("the log options' names", sorted(jopts), sorted(topts))
    for k, v in topts.items():
        if "${" not in str(v):
            differ(f"log option {k}", jopts.get(k), v)

    # The environment and secrets terraform builds for ledger = "postgres" with the defaults.
    flags = {"var.aws_discovery": bool(variables.get("aws_discovery")), "local.postgres": True, "local.sqlite_efs": False}
    env_expr = locals_.get("environment")
    env_expr = env_expr[0] if isinstance(env_expr, list) else env_expr
    sec_expr = locals_.get("secrets")
    sec_expr = sec_expr[0] if isinstance(sec_expr, list) else sec_expr
    differ("the environment's names", sorted(e["name"] for e in c.get("environment", [])), sorted(merge_keys(env_expr, flags)))
    differ("the secrets' names", sorted(s["name"] for s in c.get("secrets", [])), sorted(merge_keys(sec_expr, flags)))
    static_env = dict(re.findall(r"'([A-Z_]+)': '([^'$]*(?:\$\{var\.[a-z_]+\}[^']*)?)'", env_expr))
    for e in c.get("environment", []):
        if e["name"] in static_env:
            differ(f"{e['name']}'s value", e["value"], resolve(static_env[e["name"]], variables, locals_))
    # Each secret: the same JSON key, and the placeholder is the output of the same terraform secret.
    tsec = {n: (res, suffix) for n, res, suffix in re.findall(r"'([A-Z_]+)': '\$\{aws_secretsmanager_secret\.([a-z_]+)(?:\[0\])?\.arn\}([^']*)'", sec_expr)}
    root_outputs = read("terraform/outputs.tf")
    module_outputs = {}
    for entry in hcl(f"{ECS_MODULE}/outputs.tf").get("output", []):
        for name, body in entry.items():
            module_outputs[name] = str(body.get("value", ""))
    for s in c.get("secrets", []):
        if s["name"] not in tsec:
            continue
        res, suffix = tsec[s["name"]]
        m = re.match(r"^\$\{([A-Z_]+)\}(.*)$", s["valueFrom"])
        if not m:
            continue
        differ(f"{s['name']}'s JSON key", m.group(2), suffix)
        out = re.search(rf"(?m)^\s*{m.group(1)}\s*=\s*.*module\.ecs\.([a-z_]+)", root_outputs)
        if not out or f"aws_secretsmanager_secret.{res}" not in module_outputs.get(out.group(1), ""):
            problem(TASKDEF, f"{s['name']} reads ${{{m.group(1)}}}, which terraform/outputs.tf does not map to aws_secretsmanager_secret.{res}")
    tmounts = [m for m in re.findall(r"'containerPath': '([^']+)'", str(tc.get("mountPoints")))]
    differ("the mount points (postgres)", [m["containerPath"] for m in c.get("mountPoints", [])], tmounts[:1])

    # The task.
    task = None
    for entry in hcl(tf_main).get("resource", []):
        task = entry.get("aws_ecs_task_definition", {}).get("collector", task)
    if not task:
        problem(tf_main, "no aws_ecs_task_definition.collector")
        return
    differ("cpu", td.get("cpu"), str(variables.get("cpu")))
    differ("memory", td.get("memory"), str(variables.get("memory")))
    rp = task.get("runtime_platform", [{}])[0]
    differ("runtimePlatform.cpuArchitecture", td.get("runtimePlatform", {}).get("cpuArchitecture"), variables.get("cpu_architecture"))
    differ("runtimePlatform.operatingSystemFamily", td.get("runtimePlatform", {}).get("operatingSystemFamily"), rp.get("operating_system_family"))
    differ("requiresCompatibilities", td.get("requiresCompatibilities"), task.get("requires_compatibilities"))
    tvols = [v.get("name") for v in task.get("volume", [])]
    differ("volumes (postgres)", [v.get("name") for v in td.get("volumes", [])], tvols)
    family = resolve(task.get("family"), {"name": root_vars.get("name")}, {})
    if family != "gpucost-collector":
        problem(tf_main, f"the task family with the root's defaults is {family!r}, expected gpucost-collector")


# ---------------------------------------------------------------------------------------------------------------
PIN = re.compile(r"^[\w.-]+/[\w./-]+@([0-9a-f]{40})\s+#\s*v\d+\.\d+\.\d+\b")


def check_workflow():
    try:
        text = read(WORKFLOW)
        wf = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as e:
        problem(WORKFLOW, f"does not parse as YAML: {e}")
        return
    if not isinstance(wf, dict) or "jobs" not in wf:
        problem(WORKFLOW, "has no jobs")
        return
    on = wf.get(True, wf.get("on")) or {}  # YAML 1.1 reads the key `on` as true
    if "main" not in str((on.get("push") or {}).get("branches", [])):
        problem(WORKFLOW, "does not run on pushes to main")
    if "pull_request" not in on:
        problem(WORKFLOW, "does not run on pull requests")
    if (wf.get("permissions") or {}) != {"contents": "read"}:
        problem(WORKFLOW, "top-level permissions must be exactly contents: read")

    # Every action pinned to a commit, with its release in a comment.
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", line)
        if not m:
            continue
        ref = m.group(1) + m.group(2)
        if m.group(1).startswith("./"):
            continue
        if not PIN.match(ref.strip()):
            problem(WORKFLOW, f"line {n}: {m.group(1)} is not pinned to a full commit SHA with '# vX.Y.Z'")

    jobs = wf["jobs"]

    def steps(job):
        return (jobs.get(job) or {}).get("steps", []) or []

    def runs(job):
        return "\n".join(str(s.get("run", "")) for s in steps(job))

    def uses(job, action):
        return [s for s in steps(job) if str(s.get("uses", "")).startswith(action + "@")]

    expect = {
        "fmt": lambda: "cargo fmt" in runs("fmt") and "--check" in runs("fmt"),
        "clippy": lambda: "cargo clippy" in runs("clippy") and "-D warnings" in runs("clippy"),
        "test": lambda: "bash .ci/run" in runs("test"),
        "terraform-validate": lambda: "validate" in runs("terraform-validate") and "init -backend=false" in runs("terraform-validate"),
        "trivy-fs": lambda: any((s.get("with") or {}).get("scan-type") == "fs" for s in uses("trivy-fs", "aquasecurity/trivy-action")),
        "images": lambda: any((s.get("with") or {}).get("scan-type") == "image" for s in uses("images", "aquasecurity/trivy-action"))
        and uses("images", "aws-actions/configure-aws-credentials")
        and uses("images", "aws-actions/amazon-ecr-login")
        and "docker push" in runs("images"),
        "deploy-collector": lambda: uses("deploy-collector", "aws-actions/amazon-ecs-render-task-definition")
        and uses("deploy-collector", "aws-actions/amazon-ecs-deploy-task-definition")
        and TASKDEF in runs("deploy-collector"),
        "bump-agent": lambda: "argocd/values/gpucost-agent.yaml" in runs("bump-agent") and ".image.tag" in runs("bump-agent") and "git push" in runs("bump-agent"),
    }
    what = {
        "fmt": "run cargo fmt --check",
        "clippy": "run cargo clippy with -D warnings",
        "test": "run bash .ci/run",
        "terraform-validate": "init (without backend) and validate the Terraform on a networked runner",
        "trivy-fs": "scan the repository with trivy-action (scan-type fs)",
        "images": "build, scan (trivy-action scan-type image) and push the images to ECR through OIDC",
        "deploy-collector": f"render {TASKDEF} and deploy it with the amazon-ecs actions",
        "bump-agent": "set image.tag in argocd/values/gpucost-agent.yaml and push the commit",
    }
    for job, ok in expect.items():
        if job not in jobs:
            problem(WORKFLOW, f"no job {job!r} (it must {what[job]})")
        elif not ok():
            problem(WORKFLOW, f"job {job!r} does not {what[job]}")

    # OIDC only where the AWS role is assumed; releases only from main.
    for name, job in jobs.items():
        perms = job.get("permissions") or {}
        assumes = any(str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@") for s in job.get("steps", []) or [])
        if assumes:
            if perms.get("id-token") != "write":
                problem(WORKFLOW, f"job {name!r} assumes the AWS role without permissions id-token: write")
            for s in job.get("steps", []) or []:
                if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@") and "role-to-assume" not in (s.get("with") or {}):
                    problem(WORKFLOW, f"job {name!r} configures AWS credentials without role-to-assume (OIDC)")
        elif perms.get("id-token"):
            problem(WORKFLOW, f"job {name!r} asks for id-token but assumes no AWS role")
        if "secrets.AWS_" in json.dumps(job):
            problem(WORKFLOW, f"job {name!r} uses stored AWS keys; assume the role through OIDC")
    for job in ("deploy-collector", "bump-agent"):
        cond = str((jobs.get(job) or {}).get("if", ""))
        if "refs/heads/main" not in cond or "push" not in cond:
            problem(WORKFLOW, f"job {job!r} must run only on pushes to main")
    needs = lambda job: set([(jobs.get(job) or {}).get("needs")] if isinstance((jobs.get(job) or {}).get("needs"), str) else (jobs.get(job) or {}).get("needs") or [])
    if not {"fmt", "clippy", "test", "terraform-validate", "trivy-fs"} <= needs("images"):
        problem(WORKFLOW, "job 'images' must wait for fmt, clippy, test, terraform-validate and trivy-fs")
    if "images" not in needs("deploy-collector"):
        problem(WORKFLOW, "job 'deploy-collector' must wait for the images")
    if not needs("bump-agent") & {"images", "deploy-collector"}:
        problem(WORKFLOW, "job 'bump-agent' must wait for the images")

    # What the jobs name exists.
    for inc in ((jobs.get("images") or {}).get("strategy") or {}).get("matrix", {}).get("include", []):
        if "dockerfile" in inc and not os.path.exists(os.path.join(ROOT, inc["dockerfile"])):
            problem(WORKFLOW, f"the images matrix builds {inc['dockerfile']}, which does not exist")
    for s in uses("deploy-collector", "aws-actions/amazon-ecs-render-task-definition"):
        name = (s.get("with") or {}).get("container-name")
        td = json.loads(read(TASKDEF))
        if name not in [c.get("name") for c in td.get("containerDefinitions", [])]:
            problem(WORKFLOW, f"render's container-name {name!r} is not a container of {TASKDEF}")
    values = os.path.join(ROOT, "argocd/values/gpucost-agent.yaml")
    if not os.path.exists(values):
        problem(WORKFLOW, "job 'bump-agent' edits argocd/values/gpucost-agent.yaml, which does not exist")
    else:
        with open(values) as f:
            doc = yaml.safe_load(f) or {}
        if not isinstance((doc.get("image") or {}).get("tag"), str):
            problem("argocd/values/gpucost-agent.yaml", "has no string image.tag for the CI to bump")


{"taskdef": check_taskdef, "workflow": check_workflow}[WHAT]()
for line in problems:
    print(line)
sys.exit(1 if problems else 0)
