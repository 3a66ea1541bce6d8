"""A throwaway PostgreSQL server for the tests: Debian's postgresql-15 binaries, a fresh
cluster in a temporary folder, password authentication on loopback, stopped and deleted at
the end. initdb refuses to run as root, so as root the cluster belongs to the postgres user."""

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cold_assets.tools.webserver import free_port

PG_BIN = Path(os.environ.get("COLD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str) -> str:
        """SQLAlchemy URL (dagster-postgres and pyiceberg's SqlCatalog need psycopg2's scheme)."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@contextmanager
def throwaway_postgres(databases: tuple[str, ...]) -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists():
        raise PostgresUnavailable(f"no PostgreSQL server binaries in {PG_BIN} (Debian: apt-get install postgresql-15)")
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="cold-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    password = secrets.token_urlsafe(16)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if owner:
        shutil.chown(root, owner)
        shutil.chown(sockets, owner)
        shutil.chown(pwfile, owner)
    user = "cold"
    port = free_port()
    run = lambda cmd: subprocess.run(_as_owner(cmd, owner), check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run([str(PG_BIN / "initdb"), "-D", str(data), "-U", user, "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"])
        run([
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start",
            "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
        ])
        env = {**os.environ, "PGPASSWORD": password}
        for database in databases:
            subprocess.run(
                [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database],
                check=True, capture_output=True, env=env,
            )
        yield Postgres("127.0.0.1", port, user, password)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], owner), capture_output=True)
            time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)
