"""A real PostgreSQL 15 with PostGIS for the tests: TEST_DATABASE_URL when set (a database whose
user may CREATE DATABASE and CREATE EXTENSION postgis), else a throwaway cluster started here with
Debian's initdb/pg_ctl (installed by scripts/ci_services.sh, which `make test` runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a free port, owned by the `postgres` user when we are root."""

    def __init__(self):
        from serving.tritonserver import free_port

        self.dir = Path(tempfile.mkdtemp(prefix="methane-seg-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(cmd)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        self.resume()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def halt(self) -> None:
        """Stop the server (fast shutdown: sessions are cut), keeping its data for `resume`."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server on its data folder and port."""
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off")
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts,
                      "-w", "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {exc.stderr}\n{log[-2000:]}") from None

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


_SERVER: dict = {}


def postgres_server_url() -> str:
    """The URL of a PostgreSQL server for the tests (started once per test session)."""
    if "url" in _SERVER:
        return _SERVER["url"]
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        if not (PG_BIN / "initdb").exists():
            reason = (f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): run scripts/ci_services.sh "
                      "(make test does) or set TEST_DATABASE_URL")
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        cluster = PostgresCluster()
        url = cluster.start()
        _SERVER["cluster"] = cluster
    _SERVER["url"] = url
    return url


def stop_postgres_server() -> None:
    cluster = _SERVER.pop("cluster", None)
    _SERVER.pop("url", None)
    if cluster is not None:
        cluster.stop()
