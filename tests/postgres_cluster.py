"""A throwaway PostgreSQL cluster on loopback, for the tests that need a real server.

Standard library only, so `.ci/run` can start one with the system's python3 before the
project is installed:

    python3 tests/postgres_cluster.py start DIR   # prints postgresql://imgsweep@127.0.0.1:PORT/postgres
    python3 tests/postgres_cluster.py stop DIR

and the tests' `postgres` fixture starts one the same way when no server is given. It uses
the Debian packages' binaries (`apt-get install postgresql`); as root, the server runs as
the `postgres` user (PostgreSQL refuses to run as root). Trust authentication, TCP on
127.0.0.1 only, no Unix socket: a cluster for tests, never for data.
"""

import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

USER = "imgsweep"  # the cluster's superuser


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or Debian's versioned folder."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(versions[-1]).parent if versions else None


def start(folder: Path, port: int | None = None) -> str:
    """initdb in `folder`/data and start the server; returns the superuser's URL."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl): apt-get install postgresql")
    folder = Path(folder).resolve()
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    as_postgres = os.geteuid() == 0
    if as_postgres:  # the server's user must own its files and reach them
        folder.chmod(0o755)
        shutil.chown(folder, "postgres")
    _run(as_postgres, bin_dir / "initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8")
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' "
        "-c fsync=off -c synchronous_commit=off -c max_connections=200"
    )
    _run(
        as_postgres,
        bin_dir / "pg_ctl",
        "-D",
        data,
        "-l",
        folder / "server.log",
        "-o",
        options,
        "-w",
        "-t",
        "60",
        "start",
    )
    (folder / "port").write_text(str(port))
    return url(port)


def stop(folder: Path) -> None:
    bin_dir, data = binaries(), Path(folder).resolve() / "data"
    if bin_dir is not None and (data / "postmaster.pid").exists():
        _run(os.geteuid() == 0, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop")


def url(port: int, database: str = "postgres") -> str:
    return f"postgresql://{USER}@127.0.0.1:{port}/{database}"


def _run(as_postgres: bool, *command) -> None:
    command = [str(c) for c in command]
    if as_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip() or result.stdout}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _version(path: str) -> float:
    try:
        return float(Path(path).parents[1].name)
    except ValueError:
        return 0.0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit(f"usage: {sys.argv[0]} start|stop DIR")
    try:
        print(start(Path(sys.argv[2]))) if sys.argv[1] == "start" else stop(Path(sys.argv[2]))
    except RuntimeError as error:
        sys.exit(f"error: {error}")
