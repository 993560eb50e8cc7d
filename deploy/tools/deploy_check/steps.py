"""The step runner: a check's failure, its log, its timed steps, commands and polls."""
import contextlib
import subprocess
import time


class CheckError(Exception):
    pass


def log(message):
    print(message, flush=True)


@contextlib.contextmanager
def step(name):
    started = time.monotonic()
    log(f"== {name}")
    yield
    log(f"   ok ({time.monotonic() - started:.1f}s)")


def run(cmd, *, input=None, env=None, cwd=None, timeout=600):
    result = subprocess.run(
        cmd, input=input, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise CheckError(
            f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def poll(what, deadline_s, probe, interval=0.2):
    """probe() returns a truthy value when done; raises CheckError at the deadline."""
    deadline = time.monotonic() + deadline_s
    last = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the last failure is reported
            last = e
        if time.monotonic() >= deadline:
            raise CheckError(f"{what}: not within {deadline_s}s (last: {last!r})")
        time.sleep(interval)
