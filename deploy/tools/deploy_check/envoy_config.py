"""Envoy configurations: their files laid out as in a container, `envoy --mode validate`, skeletons."""
import os
import re
import shutil
import subprocess
import tempfile

import yaml

from .paths import CHART_WASM_PATH, ENVOY, NATIVE, NATIVE_DIR, WASM
from .pki import test_pki
from .steps import CheckError


# The paths inside the gateway container that the chart's Envoy configuration names
# besides plugin.wasm: files of its own Secret (/etc/envoy), the token's Secret, the CA
# of keysync's certificate, and Envoy's client certificate.
CONTAINER_DIRS = ("/etc/envoy/", "/etc/keysync/")


def envoy_files(config, root, token="validation-token-0123456789", extra=None):
    """Writes an Envoy configuration into root with the paths it names under /etc/envoy
    and /etc/keysync moved there, and makes those files: `config` is the configuration's
    text, or the chart's Envoy Secret (file name to text, mounted at /etc/envoy);
    `extra` more files (container path to text); a named token file gets `token`, named
    certificates a test CA's. Returns the configuration's path."""
    files = config if isinstance(config, dict) else {"envoy.yaml": config}
    extra = dict(extra or {})

    def rebased(text):
        text = text.replace(CHART_WASM_PATH, WASM)
        for directory in CONTAINER_DIRS:
            text = text.replace(directory, root + directory)
        return text

    for path, text in [("/etc/envoy/" + name, text) for name, text in files.items()] + list(extra.items()):
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        with open(root + path, "w", encoding="utf-8") as f:
            f.write(rebased(text))
    written = {"/etc/envoy/" + name for name in files} | set(extra)
    named = set(re.findall(r"(/etc/keysync/[A-Za-z0-9_./-]+)", "\n".join(list(files.values()) + list(extra.values()))))
    named -= written | {CHART_WASM_PATH}
    pki = test_pki(os.path.join(root, "pki"), "keysync.invalid") if named else {}
    for path in named:
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        name = os.path.basename(path)
        if path.startswith("/etc/keysync/grpc-tls/") and name == "ca.crt":
            shutil.copyfile(pki["ca.crt"], root + path)
        elif path.startswith("/etc/keysync/grpc-client-tls/"):
            shutil.copyfile(pki["client"][0 if name == "tls.crt" else 1], root + path)
        elif path.startswith("/etc/keysync/grpc-token/"):
            with open(root + path, "w", encoding="utf-8") as f:
                f.write(token)
        else:
            raise CheckError(f"the Envoy configuration names {path}, unknown to this check")
    return root + "/etc/envoy/envoy.yaml"


def envoy_validate(config, source, extra=None):
    """envoy --mode validate, with the chart's wasm path pointed at the built filter and
    the dynamic modules' search path at the built native filter (validation loads the
    plugins and the module: their configurations are checked by the filter), and the
    files the configuration names made (envoy_files)."""
    if not os.path.exists(WASM):
        raise CheckError(f"{WASM} is missing: make build-filter")
    if not os.path.exists(NATIVE):
        raise CheckError(f"{NATIVE} is missing: make build-native")
    with tempfile.TemporaryDirectory(prefix="keysync-validate-") as tmp:
        try:
            path = envoy_files(config, os.path.join(tmp, "root"), extra=extra)
        except CheckError as e:
            raise CheckError(f"{source}: {e}")
        result = subprocess.run(
            [ENVOY, "--mode", "validate", "-c", path, "--log-level", "error"],
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=NATIVE_DIR),
        )
        if result.returncode != 0:
            raise CheckError(f"{source}: envoy --mode validate failed:\n{result.stdout}{result.stderr}")


def envoy_configs_of(docs):
    """The chart's Envoy Secrets: envoy.yaml and the files beside it."""
    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"].endswith("-envoy"):
            yield dict(doc["stringData"])


# A bootstrap around pieces of a configuration that lives inside someone else's
# bootstrap (Istio's, Envoy Gateway's): a listener with the HTTP filters, the rest given.
def deep_merge(base, patch):
    """An EnvoyFilter MERGE as Istio applies it: maps merged key by key, lists appended."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list):
        return base + patch
    return patch


def skeleton(http_filters=(), clusters=(), bootstrap_extensions=(), port=0, admin_port=0, hcm_patch=None):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "skeleton",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
        "http_filters": list(http_filters) + [{
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }],
    }
    hcm = deep_merge(hcm, hcm_patch or {})
    return yaml.safe_dump({
        # Istio and Envoy Gateway name the node; SDS from a file needs one.
        "node": {"id": "skeleton", "cluster": "skeleton"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "bootstrap_extensions": list(bootstrap_extensions),
        "static_resources": {
            "listeners": [{"name": "skeleton", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": list(clusters),
        },
    })
