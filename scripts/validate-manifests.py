#!/usr/bin/env python3
"""Strict validation of rendered Kubernetes manifests, offline.

Built-in kinds are checked against the Kubernetes OpenAPI schemas bundled with
kubernetes-validate; custom resources against the structural schema of their CRD (--crd).
Unknown fields are errors, and so is a kind that has no schema at all: a typo in `kind`
must not pass as "skipped".

usage: validate-manifests.py [--crd FILE]... [-k VERSION] MANIFEST...
Exit status 0 when every document is valid, 1 otherwise (one line per problem on stdout).
"""

import argparse
import sys

import jsonschema
import yaml
from kubernetes_validate import utils


def strict(schema):
    """A CRD structural schema as JSON Schema, rejecting fields it does not declare."""
    out = {}
    kind = schema.get("type")
    if kind:
        out["type"] = [kind, "null"] if schema.get("nullable") else kind
    for key in ("required", "enum"):
        if key in schema:
            out[key] = schema[key]
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
    if "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        out["additionalProperties"] = strict(extra) if isinstance(extra, dict) else extra
    elif "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if "items" in schema:
        out["items"] = strict(schema["items"])
    return out


def load_crds(files):
    crds = {}
    for name in files:
        with open(name) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    api = f"{spec['group']}/{version['name']}"
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    crds[(api, spec["names"]["kind"])] = schema
    return crds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crd", action="append", default=[])
    parser.add_argument("-k", "--kubernetes-version", default=utils.latest_version())
    parser.add_argument("manifests", nargs="+")
    args = parser.parse_args()
    crds = load_crds(args.crd)
    problems = 0
    for name in args.manifests:
        with open(name) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for doc in docs:
            what = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            try:
                if key in crds:
                    jsonschema.validate(doc, crds[key])
                else:
                    utils.validate(doc, args.kubernetes_version, strict=True)
                print(f"ok {what}")
            except jsonschema.ValidationError as e:
                path = "/".join(str(p) for p in e.absolute_path)
                print(f"ERROR {what}: {path}: {e.message}")
                problems += 1
            except utils.ValidationError as e:
                print(f"ERROR {what}: {e.message}")
                problems += 1
            except utils.SchemaNotFoundError:
                print(f"ERROR {what}: no schema for {key[0]} {key[1]} (a typo, or pass its CRD with --crd)")
                problems += 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
