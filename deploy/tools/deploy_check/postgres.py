"""A real PostgreSQL for the pods, started and stopped by the checks."""
import os
import shutil
import signal
import subprocess
import tempfile

from .network import free_port
from .paths import WORK
from .processes import stop_process
from .steps import CheckError, poll, run


def postgres_parent():
    """Where a throwaway cluster's data lives: /dev/shm when it is a tmpfs with room, as
    the end-to-end tests do (e2e/src/postgres.rs), else the system's temp folder. Never
    under the checkout: run as root, initdb runs as the postgres user, who cannot enter
    a checkout in a 0700 folder such as /root."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free >= 1 << 30:
        return shm
    return tempfile.gettempdir()


class Postgres:
    """A throwaway PostgreSQL on 127.0.0.1 (as the postgres user when run as root); its
    data under postgres_parent(), its log in `work`."""

    def __init__(self, work):
        bins = sorted(
            (d for d in (os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql"))
             if os.path.exists(os.path.join(d, "initdb"))),
            key=lambda d: int(d.split("/")[-2]),
        ) if os.path.isdir("/usr/lib/postgresql") else []
        if not bins:
            raise CheckError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (make deps)")
        self.bin = bins[-1]
        self.dir = tempfile.mkdtemp(prefix="keysync-pg-", dir=postgres_parent())
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        data = os.path.join(self.dir, "data")
        run(self.as_user + [os.path.join(self.bin, "initdb"), "-D", data, "-U", "postgres",
                            "--auth=trust", "--no-sync", "-E", "UTF8"], timeout=120)
        self.log = open(os.path.join(work, "postgres.log"), "w")
        self.process = subprocess.Popen(
            self.as_user + [os.path.join(self.bin, "postgres"), "-D", data, "-p", str(self.port),
                            "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        poll("PostgreSQL accepting connections", 30, lambda: self.psql("SELECT 1"))
        self.psql("CREATE DATABASE keysync")

    def psql(self, sql):
        run(self.as_user + [os.path.join(self.bin, "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql], timeout=30)
        return True

    @property
    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/keysync"

    def stop(self):
        stop_process(self.process, self.log, signal.SIGINT, grace=20)  # a fast shutdown
        subprocess.run(["rm", "-rf", self.dir])


def postgres_from_private_checkout():
    """The pods' PostgreSQL starts from a checkout that the postgres user cannot enter
    (a clone under /root, or in any 0700 folder): its work folder here is one."""
    private = tempfile.mkdtemp(prefix="private-checkout-", dir=WORK)
    os.chmod(private, 0o700)
    postgres = None
    try:
        postgres = Postgres(private)
        postgres.psql("SELECT 1")
    finally:
        if postgres:
            postgres.stop()
        shutil.rmtree(private, ignore_errors=True)
