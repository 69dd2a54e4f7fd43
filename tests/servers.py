"""A real uvicorn server on 127.0.0.1 for end-to-end tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    runtime_dir: Path
    log: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def uvicorn_server(
    runtime_dir: Path,
    workers: int = 1,
    token: str = "e2e-token",
    env: dict | None = None,
    timeout_s: float = 60,
    cwd: Path = ROOT,
    command: list[str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[Server]:
    """A server on a free port of 127.0.0.1; `command` replaces `uvicorn app.main:app` (the port is appended).

    Its output goes to server.log in `log_dir` (default: the runtime folder)."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (log_dir or runtime_dir) / "server.log"
    full_env = {
        **os.environ,
        "DIGITS_RUNTIME_DIR": str(runtime_dir),
        "PROMETHEUS_MULTIPROC_DIR": str(runtime_dir / "metrics"),
        "ADMIN_TOKEN": token,
        **(env or {}),
    }
    cmd = command or [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        "127.0.0.1",
        "--workers",
        str(workers),
        "--no-access-log",
    ]
    cmd = [*cmd, "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout_s} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield Server(url, runtime_dir, log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@contextlib.contextmanager
def nginx_proxy(upstreams: list[str], work_dir: Path) -> Iterator[str]:
    """deploy/nginx.conf itself, run by Debian's nginx on a free port of 127.0.0.1 in front of
    `upstreams` ("127.0.0.1:PORT") instead of the Compose services; yields its URL."""
    import re
    import shutil

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = re.findall(r"^\s*server web\d+:8000[^;]*;\n", conf, re.M)
    assert len(servers) == 2, "deploy/nginx.conf names its two replicas"
    options = servers[0].split(":8000", 1)[1]
    conf = conf.replace("".join(servers), "".join(f"        server {u}{options}" for u in upstreams))
    port = free_port()
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "logs").mkdir(exist_ok=True)
    (work_dir / "nginx.conf").write_text(conf)
    globals_ = f"pid {work_dir}/nginx.pid; error_log {work_dir}/logs/error.log; daemon off;"
    if os.geteuid() == 0:
        globals_ += " user root;"  # its temp folders are root's here
    proc = subprocess.Popen(
        [nginx, "-p", str(work_dir), "-c", str(work_dir / "nginx.conf"), "-g", globals_],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {proc.stderr.read().decode(errors='replace')}")
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def registry_of(runtime_dir: Path):
    """The model registry of a server on one host (SQLite in its runtime folder), from outside it."""
    from app.infra.db import open_db
    from app.infra.settings import SQLITE_FILE
    from app.services.registry import Registry

    return Registry(open_db(runtime_dir / SQLITE_FILE), runtime_dir / "test-cache")
