"""`repro`: both images built again from fresh storage must keep their digests."""
import json
import os
import shutil
import tempfile

from .images import IMAGE_SPECS, build_images, build_static_keysync, sha256_of
from .paths import IMAGES, MUSL, NATIVE_NAME, ROOT, TARGET
from .steps import CheckError, log, run, step


# The native filter as `make build-native` builds it (zig links it against glibc 2.31).
NATIVE_BUILD = ["cargo", "zigbuild", "--locked", "--profile", "native-release", "-p",
                "keysync-filter-native", "--target", "x86_64-unknown-linux-gnu.2.31"]

# The filter as `make build-filter` builds it (the same crates, so the same features).
FILTER_BUILD = ["cargo", "build", "--locked", "--release", "-p", "keysync-filter",
                "-p", "keysync-bench-empty-filter", "-p", "keysync-bench-contract-calls-filter",
                "--target", "wasm32-wasip1"]


def repro():
    """A second build of the same commit: keysync and the filter compiled again in
    another target directory, both images built again from fresh storage."""
    with open(os.path.join(IMAGES, "digests.json"), encoding="utf-8") as f:
        first = json.load(f)
    again = os.path.join(TARGET, "deploy-repro")
    with step(f"keysync and the filter compiled again in {os.path.relpath(again, ROOT)}"):
        build_static_keysync(again)
        run(FILTER_BUILD, env=dict(os.environ, CARGO_TARGET_DIR=again), cwd=ROOT, timeout=3600)
        venv_bin = os.path.join(ROOT, ".venv", "bin")
        run(NATIVE_BUILD, env=dict(os.environ, CARGO_TARGET_DIR=again,
                                   PATH=venv_bin + os.pathsep + os.environ.get("PATH", "")),
            cwd=ROOT, timeout=3600)
        sources = {
            "keysync": os.path.join(again, MUSL, "release", "keysync"),
            "keysync-pod-hooks": os.path.join(again, MUSL, "release", "keysync-pod-hooks"),
            "plugin.wasm": os.path.join(again, "wasm32-wasip1", "release", "keysync_filter.wasm"),
            NATIVE_NAME: os.path.join(again, "x86_64-unknown-linux-gnu", "native-release", NATIVE_NAME),
        }
        for name, path in sources.items():
            log(f"   {name}: sha256 {sha256_of(path)}")
    with step("both images built again from fresh buildah storage"):
        again_dir = tempfile.mkdtemp(prefix="keysync-images-again-", dir=TARGET)
        try:
            second = build_images(again_dir, sources)
        finally:
            shutil.rmtree(again_dir, ignore_errors=True)
        for name in IMAGE_SPECS:
            log(f"   {name}: {first[name]} then {second[name]}")
            if first[name] != second[name]:
                raise CheckError(f"{name}: two builds of the same commit gave two digests")
