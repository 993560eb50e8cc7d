"""`images`: the keysync and compat wasm images built with buildah and their shape checked."""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

from .oci_layout import oci_blob, oci_digest, oci_json
from .paths import IMAGES, MUSL, NATIVE, NATIVE_NAME, ROOT, STATIC_HOOKS, STATIC_KEYSYNC, TARGET, WASM
from .steps import CheckError, log, run, step


IMAGE_SPECS = {
    "keysync": {
        "containerfile": "deploy/images/keysync.Containerfile",
        "files": {"keysync": (STATIC_KEYSYNC, 0o755), "keysync-pod-hooks": (STATIC_HOOKS, 0o755),
                  "plugin.wasm": (WASM, 0o644), NATIVE_NAME: (NATIVE, 0o644)},
        "annotations": {},
    },
    "keysync-filter": {
        "containerfile": "deploy/images/filter.Containerfile",
        "files": {"plugin.wasm": (WASM, 0o644)},
        "annotations": {"module.wasm.image/variant": "compat"},
    },
}


def buildah(storage):
    return ["buildah", "--root", os.path.join(storage, "root"), "--runroot",
            os.path.join(storage, "run"), "--storage-driver", "vfs"]


def build_static_keysync(target_dir=None):
    """keysync and keysync-pod-hooks for musl, static, with the build paths mapped to
    fixed ones so that the binaries do not depend on where the repository was cloned."""
    rustflags = " ".join([
        f"--remap-path-prefix={ROOT}=/src",
        f"--remap-path-prefix={os.path.expanduser('~/.cargo')}=/cargo",
        "-C", "target-feature=+crt-static",
    ])
    env = dict(os.environ, RUSTFLAGS=rustflags)
    if target_dir:
        env["CARGO_TARGET_DIR"] = target_dir
    run(["cargo", "build", "--release", "--locked", "-p", "keysync", "-p", "keysync-pod-hooks",
         "--target", MUSL], env=env, cwd=ROOT, timeout=3600)


def build_image(name, out_dir, storage, sources=None):
    spec = IMAGE_SPECS[name]
    with tempfile.TemporaryDirectory(prefix=f"keysync-image-{name}-") as context:
        for file_name, (source, mode) in spec["files"].items():
            source = (sources or {}).get(file_name, source)
            if not os.path.exists(source):
                raise CheckError(f"{source} is missing: run make build-filter / the musl build first")
            destination = os.path.join(context, file_name)
            shutil.copyfile(source, destination)
            os.chmod(destination, mode)
        cmd = buildah(storage) + ["build", "--quiet", "--timestamp", "0", "--format", "oci",
                                  "-f", os.path.join(ROOT, spec["containerfile"]), "-t", f"localhost/{name}:build"]
        for key, value in spec["annotations"].items():
            cmd += ["--annotation", f"{key}={value}"]
        run(cmd + [context])
    layout = os.path.join(out_dir, name)
    shutil.rmtree(layout, ignore_errors=True)
    run(buildah(storage) + ["push", "--quiet", "--compression-format", "gzip",
                            f"localhost/{name}:build", f"oci:{layout}:latest"])
    return oci_digest(layout)


def build_images(out_dir, sources=None):
    os.makedirs(out_dir, exist_ok=True)
    storage = tempfile.mkdtemp(prefix="keysync-buildah-", dir=TARGET)
    try:
        return {name: build_image(name, out_dir, storage, sources) for name in IMAGE_SPECS}
    finally:
        subprocess.run(buildah(storage) + ["rm", "--all"], capture_output=True)
        subprocess.run(["rm", "-rf", storage])


def image_size(layout):
    manifest = oci_json(layout, oci_digest(layout))
    return sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]


def check_filter_image(layout):
    import tarfile

    manifest = oci_json(layout, oci_digest(layout))
    if manifest.get("annotations", {}).get("module.wasm.image/variant") != "compat":
        raise CheckError("the filter image lacks module.wasm.image/variant=compat")
    layers = manifest["layers"]
    if len(layers) != 1 or layers[0]["mediaType"] != "application/vnd.oci.image.layer.v1.tar+gzip":
        raise CheckError(f"the filter image must have one tar+gzip layer, not {layers}")
    with tarfile.open(oci_blob(layout, layers[0]["digest"]), "r:gz") as tar:
        members = tar.getmembers()
        names = [m.name.lstrip("./") for m in members]
        if names != ["plugin.wasm"]:
            raise CheckError(f"the filter image's layer holds {names}, not plugin.wasm alone")
        data = tar.extractfile(members[0]).read()
    with open(WASM, "rb") as f:
        if data != f.read():
            raise CheckError("the filter image's plugin.wasm is not the built filter")


def check_keysync_image(layout):
    import tarfile

    manifest = oci_json(layout, oci_digest(layout))
    config = oci_json(layout, manifest["config"]["digest"])["config"]
    if config.get("User") != "65532:65532":
        raise CheckError(f"the keysync image runs as {config.get('User')!r}, not 65532:65532")
    if config.get("Entrypoint") != ["/keysync"] or config.get("Cmd") != ["serve"]:
        raise CheckError(f"the keysync image's entrypoint is {config.get('Entrypoint')} {config.get('Cmd')}")
    if len(manifest["layers"]) != 1:
        raise CheckError("the keysync image must be one layer on an empty base")
    expected = {name: source for name, (source, _) in IMAGE_SPECS["keysync"]["files"].items()}
    with tarfile.open(oci_blob(layout, manifest["layers"][0]["digest"]), "r:gz") as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        if sorted(members) != sorted(expected):
            raise CheckError(f"the keysync image holds {sorted(members)}, not {sorted(expected)}")
        for name, source in expected.items():
            with open(source, "rb") as f:
                if tar.extractfile(members[name]).read() != f.read():
                    raise CheckError(f"the keysync image's {name} is not {source}")
    for binary in (STATIC_KEYSYNC, STATIC_HOOKS):
        with open(binary, "rb") as f:
            elf = f.read(1 << 16)
        if b"/lib64/ld-linux" in elf or b"ld-musl" in elf:
            raise CheckError(f"{binary} asks for a dynamic loader: not static")


def images(skip_binary=False):
    if not skip_binary:
        with step(f"keysync for {MUSL} (static, cargo build --release --locked)"):
            build_static_keysync()
    with step("images with buildah (--timestamp 0) into target/images"):
        digests = build_images(IMAGES)
        check_filter_image(os.path.join(IMAGES, "keysync-filter"))
        check_keysync_image(os.path.join(IMAGES, "keysync"))
        log(f"   keysync binary: sha256 {sha256_of(STATIC_KEYSYNC)} ({os.path.getsize(STATIC_KEYSYNC)} bytes); "
            f"keysync-pod-hooks: {os.path.getsize(STATIC_HOOKS)} bytes; "
            f"plugin.wasm: sha256 {sha256_of(WASM)} ({os.path.getsize(WASM)} bytes); "
            f"{NATIVE_NAME}: sha256 {sha256_of(NATIVE)} ({os.path.getsize(NATIVE)} bytes)")
        for name, digest in digests.items():
            layout = os.path.join(IMAGES, name)
            log(f"   {name}: {digest} ({image_size(layout)} bytes compressed) oci:{os.path.relpath(layout, ROOT)}:latest")
        log(f"   pin {digests['keysync-filter']} in the Istio WasmPlugin (url @digest and sha256) and in "
            "Envoy Gateway's EnvoyExtensionPolicy (image url @digest and sha256, without 'sha256:'): "
            "both check the image's digest, not plugin.wasm's")
        with open(os.path.join(IMAGES, "digests.json"), "w", encoding="utf-8") as f:
            json.dump(digests, f, indent=2)
    log("publish: skopeo copy oci:target/images/keysync:latest docker://REGISTRY/keysync:TAG "
        "(and keysync-filter likewise)")
    return digests


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
