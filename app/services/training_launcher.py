"""The web side of training: launch the training process, watch it, and clean up after it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.infra.settings import Settings
from app.services.job_store import JobStatus, JobStore
from model.paths import REPO_ROOT

log = logging.getLogger("digits.training")
ORPHAN_QUEUED_AFTER_S = 60  # a queued job whose process never started
PROCESS_MODULE = "app.services.training_process"
# One BLAS thread, set before the child's NumPy loads (OpenBLAS sizes its pool then): see that module.
ONE_BLAS_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def _is_trainer(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return PROCESS_MODULE.encode() in cmdline


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the training process was killed by {name}"
    return f"the training process exited with code {code}"


class TrainingLauncher:
    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.processes: dict[str, subprocess.Popen] = {}
        self._monitors: set[asyncio.Task] = set()

    def recover(self) -> list[str]:
        """At start-up: jobs left queued or running by a server that is gone become 'interrupted'."""
        marked = []
        for job in self.store.active_jobs():
            orphan = (
                not _is_trainer(job.pid)
                if job.status == JobStatus.RUNNING
                else time.time() - job.created > ORPHAN_QUEUED_AFTER_S
            )
            error = "the server restarted while it ran"
            if orphan and self.store.finish(job.id, JobStatus.INTERRUPTED, error=error):
                marked.append(job.id)
        if marked:
            log.warning("marked interrupted training jobs", extra={"jobs": marked})
        return marked

    def start(self, job_id: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            PROCESS_MODULE,
            "--job",
            job_id,
            "--runtime-dir",
            str(Path(self.settings.runtime_dir).resolve()),
            "--data-dir",
            str(Path(self.settings.data_dir).resolve()),
        ]
        if self.settings.database_url:
            cmd += ["--database-url", self.settings.database_url]
        env = {**os.environ, **ONE_BLAS_THREAD}
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, start_new_session=True)  # no terminal signals
        self.processes[job_id] = proc
        task = asyncio.get_running_loop().create_task(self._monitor(job_id, proc))
        self._monitors.add(task)
        task.add_done_callback(self._monitors.discard)

    async def _monitor(self, job_id: str, proc: subprocess.Popen) -> None:
        code = await asyncio.to_thread(proc.wait)
        self.processes.pop(job_id, None)
        # The process sets its own final status; if it could not (a crash, a kill), say why here.
        if self.store.finish(job_id, JobStatus.FAILED, error=_describe_exit(code)):
            log.error("training process died", extra={"job": job_id, "exit": code})

    async def shutdown(self) -> None:
        for proc in list(self.processes.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the process marks its job interrupted
        for task in list(self._monitors):
            try:
                await asyncio.wait_for(task, timeout=10)
            except TimeoutError:
                for proc in self.processes.values():
                    os.killpg(proc.pid, signal.SIGKILL)


class WorkerQueue:
    """With training workers configured (`digits worker`), the web side only queues jobs: any worker,
    on any host, claims them. What it keeps doing is giving up on jobs whose worker went silent."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def recover(self) -> list[str]:
        failed = self.store.reap(self.settings.worker_timeout_s)
        if failed:
            log.warning("marked failed the jobs of a silent training worker", extra={"jobs": failed})
        return failed

    def start(self, job_id: str) -> None:
        pass  # a worker claims it

    async def shutdown(self) -> None:
        pass


def make_launcher(store: JobStore, settings: Settings) -> TrainingLauncher | WorkerQueue:
    return WorkerQueue(store, settings) if settings.uses_workers else TrainingLauncher(store, settings)
