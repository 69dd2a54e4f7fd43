"""The web side of training: jobs wait in the queue (app.services.job_store) for a training worker.

With `DIGITS_TRAINING=local` (the default on one host) the server starts a worker process itself
when a job is queued, and one at start-up if jobs are waiting; that worker exits when the queue is
empty. With `workers`, `digits worker` processes on any host claim the jobs. Either way this side
also gives up on jobs whose worker is gone (`reap`), and on shutdown stops the workers it started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys

from app.infra.blas import ONE_BLAS_THREAD_ENV
from app.infra.settings import Settings
from app.services.job_store import JobStatus, JobStore, worker_name
from app.services.training_worker import MODULE
from model.paths import REPO_ROOT

log = logging.getLogger("digits.training")
SHUTDOWN_GRACE_S = 10


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the training process was killed by {name}"
    return f"the training process exited with code {code}"


class TrainingQueue:
    def __init__(self, jobs: JobStore, settings: Settings) -> None:
        self.jobs, self.settings = jobs, settings
        self.local = not settings.uses_workers
        self.processes: dict[int, subprocess.Popen] = {}
        self._monitors: set[asyncio.Task] = set()

    def reap(self) -> list[str]:
        """Give up on the jobs of workers that are gone (see JobStore.reap)."""
        given_up = self.jobs.reap(self.settings.worker_timeout_s)
        if given_up:
            log.warning("gave up on the jobs of gone training workers", extra={"jobs": given_up})
        return given_up

    def job_queued(self) -> None:
        """A job is waiting: on one host, start a worker for it (one that finds the queue empty, because
        another took the job first, just exits)."""
        if not self.local:
            return
        env = {**os.environ, **self.settings.as_environment(), **ONE_BLAS_THREAD_ENV}
        cmd = [sys.executable, "-m", MODULE, "--until-idle"]
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, start_new_session=True)  # no terminal signals
        self.processes[proc.pid] = proc
        task = asyncio.get_running_loop().create_task(self._monitor(proc))
        self._monitors.add(task)
        task.add_done_callback(self._monitors.discard)

    async def _monitor(self, proc: subprocess.Popen) -> None:
        code = await asyncio.to_thread(proc.wait)
        self.processes.pop(proc.pid, None)
        if code == 0:
            return
        # The worker sets its job's final status; if it could not (a crash, a kill), say why here.
        for job_id in self.jobs.give_up(worker_name(proc.pid), JobStatus.FAILED, describe_exit(code)):
            log.error("training worker died", extra={"job": job_id, "exit": code})

    async def start(self) -> None:
        """At start-up: jobs that wait get a worker."""
        if self.local and any(j.status == JobStatus.QUEUED for j in self.jobs.active_jobs()):
            self.job_queued()

    async def shutdown(self) -> None:
        for proc in list(self.processes.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the worker marks its job interrupted
        try:
            await asyncio.wait_for(asyncio.gather(*self._monitors), timeout=SHUTDOWN_GRACE_S)
        except TimeoutError:
            for proc in self.processes.values():
                os.killpg(proc.pid, signal.SIGKILL)
