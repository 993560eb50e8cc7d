"""keysync's deployment checks, all offline (no cluster, no container engine).

  lint    (in `make test`) the generated files are current; `helm lint --strict`; the
          default values and every ci/*-values.yaml rendered by `helm template` and each
          object validated against the Kubernetes schemas (kubernetes-validate, strict)
          for the versions its header names; every ci/refused/*.yaml refused with its
          message; names valid with the longest release names; what the examples must
          say (digests, versions, listener settings, /health, tokens); custom resources
          of the chart and of deploy/istio and deploy/envoy-gateway validated against
          their published schemas; every Envoy configuration they carry through
          `envoy --mode validate`.
  images  (make images) the static keysync binary and the compat wasm image, built with
          buildah into OCI layouts under target/images; their shape checked.
  repro   both images built again from fresh storage: the digests must not change.
  pod     the pod without a cluster: the rendered Deployment's containers started from
          the unpacked images with the manifest's own command, arguments, environment,
          volumes and user, against a real PostgreSQL; then a printed key gets 200, no
          key 401, a revoked key 403, every probe answers where the manifest says, and
          the metrics parse (keysync's as OpenMetrics, Envoy's with promtool); a
          rolling update under load answers every request 200; a gRPC token rotation
          in central + wasm keeps every gateway authenticated and every answer 200; the
          Istio examples' Envoy configurations run against keysync with its token.
  rotation  the token rotation alone (part of pod).
  rules   promtool check rules on the alerts; the dashboard's and the alerts' metric
          names exist in what the pod check scraped.

Every wait polls with a deadline; every process it starts is stopped at the end.
"""
import argparse
import os
import sys
import time

from .alert_rules import rules
from .images import images
from .istio import istio_ext_authz_token, istio_store_sharing
from .lint import lint
from .paths import WORK
from .pod_check import POD_VALUES, pod
from .postgres import postgres_from_private_checkout
from .repro import repro
from .rotation import token_rotation
from .steps import CheckError, log, step


def pods_and_rules(values_names=None):
    os.makedirs(WORK, exist_ok=True)
    with step("PostgreSQL starts from a checkout the postgres user cannot enter (a 0700 folder)"):
        postgres_from_private_checkout()
    names = os.path.join(WORK, "scraped-metric-names.json")
    for values_name in values_names or POD_VALUES:
        log(f"---- the pod without a cluster: ci/{values_name}")
        first = values_name == POD_VALUES[0]
        pod(values_name, metrics_out=names if first else None, rollout=first)
    log("---- a gRPC token rotation, central + wasm, without a cluster")
    token_rotation()
    with step("Istio's wasm example: the WasmPlugin's filter and the bootstrap's sync service share the store"):
        istio_store_sharing()
    with step("Istio's ext_authz example: the EnvoyFilter sends keysync's token on every Check"):
        istio_ext_authz_token()
    rules(names)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["lint", "images", "repro", "pod", "rotation", "all-heavy"])
    parser.add_argument("--skip-binary", action="store_true", help="images: reuse the built musl binary")
    parser.add_argument("--values", action="append", help="pod: ci values files to run (default: %s)" % ", ".join(POD_VALUES))
    args = parser.parse_args(argv[1:])
    started = time.monotonic()
    try:
        if args.command == "lint":
            lint()
        elif args.command == "images":
            images(args.skip_binary)
        elif args.command == "repro":
            repro()
        elif args.command == "pod":
            pods_and_rules(args.values)
        elif args.command == "rotation":
            os.makedirs(WORK, exist_ok=True)
            token_rotation()
        elif args.command == "all-heavy":
            images(args.skip_binary)
            repro()
            pods_and_rules(args.values)
    except CheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log(f"deploy check {args.command}: passed in {time.monotonic() - started:.1f}s")
    return 0
