"""Find a PostgreSQL server the tests can use, or install and start one.

Prints an admin SQLAlchemy URL (a role that may CREATE DATABASE) on stdout; the tests
create and drop their own throwaway databases through it. Order of preference:
PATCHWARDEN_TEST_POSTGRES_URL, a server already listening locally, a fresh install
from Debian's packages (apt-get install postgresql; pg_ctlcluster start).
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg


def _log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr)


def _usable(url: str) -> bool:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return False


def _candidates() -> list[str]:
    user = getpass.getuser()
    hosts = ["127.0.0.1", "%2Fvar%2Frun%2Fpostgresql"]
    urls = []
    for role in dict.fromkeys(["postgres", user]):
        for host in hosts:
            if host.startswith("%2F"):
                urls.append(f"postgresql+psycopg://{role}@/postgres?host=/var/run/postgresql")
            else:
                urls.append(f"postgresql+psycopg://{role}@{host}:5432/postgres")
    return urls


def _root(cmd: list[str]) -> None:
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise SystemExit(f"need root to run {' '.join(cmd)}; set PATCHWARDEN_TEST_POSTGRES_URL")
        cmd = ["sudo", *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _install_and_start() -> None:
    if not Path("/etc/postgresql").is_dir():
        _log("installing PostgreSQL from Debian packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        _root(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"])
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions:
        raise SystemExit("PostgreSQL is installed but has no cluster under /etc/postgresql")
    _log(f"starting PostgreSQL {versions[-1]} cluster 'main'")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
    )
    for _ in range(30):
        if subprocess.run(["pg_isready", "-q"], check=False).returncode == 0:
            break
        time.sleep(1)
    user = getpass.getuser()
    if user != "postgres":
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "createuser", "--superuser", user],
            check=False,
            stderr=subprocess.DEVNULL,
        )


def main() -> int:
    configured = os.environ.get("PATCHWARDEN_TEST_POSTGRES_URL")
    if configured:
        if _usable(configured):
            print(configured)
            return 0
        _log(f"PATCHWARDEN_TEST_POSTGRES_URL={configured} is not usable; looking further")
    for url in _candidates():
        if _usable(url):
            print(url)
            return 0
    _install_and_start()
    for url in _candidates():
        if _usable(url):
            print(url)
            return 0
    raise SystemExit("could not find or start PostgreSQL; set PATCHWARDEN_TEST_POSTGRES_URL")


if __name__ == "__main__":
    sys.exit(main())
