"""Stopping the processes the checks start, and quoting their shell commands."""
import contextlib
import os
import signal
import subprocess


def stop_process(process, log_file, signal_first=signal.SIGTERM, grace=15):
    """Stops a process this check started (its whole process group), then its log."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal_first)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log_file.close()


def shlex_quote(text):
    import shlex

    return shlex.quote(str(text))
