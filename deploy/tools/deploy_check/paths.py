"""Where the chart, the examples, the tools and the built binaries are."""
import os
import shutil


# This file is deploy/tools/deploy_check/paths.py: the repository is four levels up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TOOLS = os.path.join(ROOT, ".deploy-tools")
HELM = os.path.join(TOOLS, "bin", "helm")
NODE_MODULES = os.path.join(TOOLS, "npm", "node_modules")
CHART = os.path.join(ROOT, "deploy", "chart")
EXAMPLES = [os.path.join(ROOT, "deploy", "istio"), os.path.join(ROOT, "deploy", "envoy-gateway")]
TARGET = os.path.join(ROOT, "target")
IMAGES = os.path.join(TARGET, "images")
WORK = os.path.join(TARGET, "deploy-check")
ENVOY = os.environ.get("ENVOY_BIN") or os.path.join(ROOT, ".venv", "envoy-1.40.0")
WASM = os.environ.get("KEYSYNC_FILTER_WASM") or os.path.join(
    TARGET, "wasm32-wasip1", "release", "keysync_filter.wasm"
)
# The native filter as `make build-native` builds it (glibc 2.31 symbols, for Envoy's
# images); Envoy finds it by its file name in ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
NATIVE_NAME = "libkeysync_filter_native.so"
NATIVE_DIR = os.path.join(TARGET, "x86_64-unknown-linux-gnu", "native-release")
NATIVE = os.path.join(NATIVE_DIR, NATIVE_NAME)
MUSL = "x86_64-unknown-linux-musl"
STATIC_KEYSYNC = os.path.join(TARGET, MUSL, "release", "keysync")
STATIC_HOOKS = os.path.join(TARGET, MUSL, "release", "keysync-pod-hooks")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# Absolute paths: a container's environment (the manifest's) has no PATH of ours.
UNSHARE, SH, MOUNT, SETPRIV = (shutil.which(n) or f"/usr/bin/{n}" for n in ("unshare", "sh", "mount", "setpriv"))
# The mount path the chart gives plugin.wasm, and the image the Envoy container names.
CHART_WASM_PATH = "/etc/keysync/wasm/plugin.wasm"
RELEASE, NAMESPACE = "keysync", "keysync"
