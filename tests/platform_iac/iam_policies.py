"""The collector's IAM policies as Terraform would render them, read from the parsed HCL (python-hcl2, as checkov
parses it) for tests/tests/iam.rs: the discovery policy (terraform/modules/discovery-policy) and the ECS task role's
ledger login (terraform/modules/ecs/postgres.tf, rds-db:connect) with the postgres:// URL the collector is given.

No AWS provider runs here, so the expressions are evaluated by this script: string templates over the inputs
below, `local.regions`, and `[for r in local.regions : "template"]`. Anything else stops it with the expression
it could not evaluate, so a refactor of the Terraform fails the test instead of passing unchecked.

    python iam_policies.py <repo root> <region> <account id> <db resource id> <db iam user> <db host>

Prints JSON: {"discovery": [statement...], "rds_connect": [statement...], "db_url": "postgres://..."}, each
statement {"sid", "effect", "actions", "resources", "conditions": [{"test", "variable", "values"}]}.
"""

import json
import os
import re
import sys

import hcl2

root, region, account, db_resource_id, db_user, db_host = sys.argv[1:7]
scope = {
    "local.partition": "aws",
    "local.region": region,
    "local.regions": [region],
    "local.account_id": account,
    "var.db_iam_user": db_user,
    "aws_db_instance.ledger[0].resource_id": db_resource_id,
    "aws_db_instance.ledger[0].address": db_host,
    "aws_db_instance.ledger[0].port": "5432",
    "aws_db_instance.ledger[0].db_name": "gpucost",
}


def fail(text):
    sys.exit(f"iam_policies.py: {text}")


def load(*path):
    with open(os.path.join(root, "terraform", *path)) as f:
        return hcl2.load(f)


def one(value):
    """python-hcl2 wraps every attribute's value in a one-element list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def template(text, names):
    def lookup(m):
        value = names.get(m.group(1))
        if not isinstance(value, str):
            fail(f"cannot evaluate ${{{m.group(1)}}} in {text!r}")
        return value

    return re.sub(r"\$\{([^{}]+)\}", lookup, text)


def evaluate(value):
    """A list of strings: an attribute that is a list literal, `local.regions`, or a for expression over it."""
    value = one(value)
    if isinstance(value, list):
        return [template(v, scope) for v in value]
    whole = re.fullmatch(r"\$\{(.*)\}", value, re.S)
    if whole and isinstance(scope.get(whole.group(1)), list):
        return scope[whole.group(1)]
    loop = whole and re.fullmatch(r'\[for (\w+) in local\.regions : "(.*)"\]', whole.group(1), re.S)
    if loop:
        var, body = loop.groups()
        return [template(body, {**scope, var: r}) for r in scope["local.regions"]]
    return [template(value, scope)]


def statements(path, name):
    for entry in load(*path).get("data", []):
        doc = entry.get("aws_iam_policy_document", {}).get(name)
        if doc is None:
            continue
        return [
            {
                "sid": one(st.get("sid", "")),
                "effect": one(st.get("effect", "Allow")),
                "actions": evaluate(st["actions"]),
                "resources": evaluate(st["resources"]),
                "conditions": [
                    {"test": one(c["test"]), "variable": one(c["variable"]), "values": evaluate(c["values"])}
                    for c in st.get("condition", [])
                ],
            }
            for st in doc["statement"]
        ]
    fail(f"no data.aws_iam_policy_document.{name} in terraform/{'/'.join(path)}")


def db_url():
    """The IAM branch of the ledger secret's `url`: the URL the collector gets as GPUCOST_DB with db_iam_user set."""
    postgres = load("modules", "ecs", "postgres.tf")
    db_tls = next((one(e["db_tls"]) for e in postgres.get("locals", []) if "db_tls" in e), None)
    for entry in postgres.get("resource", []):
        version = entry.get("aws_secretsmanager_secret_version", {}).get("db")
        if version is None:
            continue
        m = re.search(r'local\.db_iam \? "(postgres://[^"]*)"', one(version["secret_string"]))
        if m is None:
            fail("the ledger secret's url has no `local.db_iam ? \"postgres://...\"` branch")
        return template(m.group(1), {**scope, "local.db_tls": db_tls})
    fail("no aws_secretsmanager_secret_version.db in terraform/modules/ecs/postgres.tf")


print(
    json.dumps(
        {
            "discovery": statements(("modules", "discovery-policy", "main.tf"), "discovery"),
            "rds_connect": statements(("modules", "ecs", "postgres.tf"), "rds_connect"),
            "db_url": db_url(),
        }
    )
)
