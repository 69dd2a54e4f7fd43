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
