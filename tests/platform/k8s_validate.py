"""Kubernetes manifests through kubernetes-validate (PyPI), for tests/tests/platform_k8s.rs. Runs in the venv
scripts/test installs it into (~/.cache/gpucost/k8s-venv).

  python k8s_validate.py validate --versions 1.28.0,newest --crd-out crds.json --json-out docs.json FILE...
      Every document of every FILE against the strict schemas of each Kubernetes version ("newest": the newest the
      installed kubernetes-validate ships). Documents of the CRD groups below are not built into Kubernetes, so
      kubernetes-validate has no schema for them (it would only warn): they go to --crd-out for check.mjs, which
      validates them against their own CRDs. Any other kind without a schema is an error: a removed or misspelt
      apiVersion must not pass as a warning.
  python k8s_validate.py to-json [--any] FILE...
      The documents as JSON ([{file, index, doc}]) on one line, for the Rust tests (which have no YAML parser).
      --any also takes documents that are not Kubernetes objects (values files, Prometheus rules files).
  python k8s_validate.py newest
      The newest Kubernetes version the installed kubernetes-validate has schemas for.

Problems are printed one a line, `FILE#INDEX kind/name: ...`; the exit status is 1 when there is any.
"""

import argparse
import json
import sys

import yaml
from kubernetes_validate import utils

CRD_GROUPS = ("argoproj.io/", "monitoring.coreos.com/")


def documents(files, any_doc=False):
    out, problems = [], []
    for f in files:
        try:
            with open(f) as fh:
                docs = list(yaml.safe_load_all(fh))
        except Exception as e:  # noqa: BLE001 - any parse error is the file's problem
            problems.append(f"{f}: not YAML: {e}")
            continue
        for i, d in enumerate(docs):
            if d is None:
                continue
            if not any_doc and (not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d):
                problems.append(f"{f}#{i}: not a Kubernetes object (no apiVersion/kind)")
                continue
            out.append({"file": f, "index": i, "doc": d})
    return out, problems


def name(d):
    return f"{d['file']}#{d['index']} {d['doc']['kind']}/{(d['doc'].get('metadata') or {}).get('name', '?')}"


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--versions", default="1.28.0,newest")
    v.add_argument("--crd-out")
    v.add_argument("--json-out")
    v.add_argument("files", nargs="+")
    t = sub.add_parser("to-json")
    t.add_argument("--any", action="store_true")
    t.add_argument("files", nargs="+")
    sub.add_parser("newest")
    a = ap.parse_args()

    if a.cmd == "newest":
        print(utils.latest_version())
        return 0
    docs, problems = documents(a.files, getattr(a, "any", False))
    if a.cmd == "to-json":
        print(json.dumps(docs, default=str))
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0

    newest = utils.latest_version()
    versions = [newest if x == "newest" else x for x in a.versions.split(",")]
    crds, checked = [], 0
    for d in docs:
        if d["doc"]["apiVersion"].startswith(CRD_GROUPS):
            crds.append(d)
            continue
        for version in versions:
            checked += 1
            try:
                utils.validate(d["doc"], version, strict=True)
            except utils.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top)"
                problems.append(f"{name(d)}: Kubernetes {e.version} strict schema: {path}: {e.message}")
            except utils.SchemaNotFoundError:
                problems.append(
                    f"{name(d)}: Kubernetes {version} has no {d['doc']['apiVersion']} {d['doc']['kind']} "
                    "(removed, misspelt, or a CRD kind this check does not know)"
                )
    if a.crd_out:
        with open(a.crd_out, "w") as fh:
            json.dump(crds, fh)
    if a.json_out:
        with open(a.json_out, "w") as fh:
            json.dump(docs, fh)
    for p in problems:
        print(p)
    print(
        f"kubernetes-validate: {checked} checks of {len(docs) - len(crds)} objects against Kubernetes "
        f"{', '.join(versions)} (newest shipped: {newest}); {len(crds)} CRD objects left to their CRD schemas"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
