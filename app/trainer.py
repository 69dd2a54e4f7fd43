"""The training process: `python -m app.trainer --job ID ...`, started by a web worker.

It runs apart from the web workers, with one BLAS thread and a lower CPU priority: on two cores, a
multi-threaded BLAS spin-waits on a partner thread that the web workers keep descheduling, and both
training and predictions collapse. It reports progress to the job database, stops within one step
when cancelled, evaluates, registers and promotes, and never touches the served model on failure.
"""

from __future__ import annotations

import os

# Must precede the NumPy import: OpenBLAS sizes its thread pool when it loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from app.jobs import JobStore  # noqa: E402
from app.logs import setup_logging  # noqa: E402
from app.registry import Registry  # noqa: E402
from model.config import TrainConfig  # noqa: E402
from model.pipeline import train_and_evaluate  # noqa: E402
from model.train import Progress, TrainingCancelled  # noqa: E402

log = logging.getLogger("digits.trainer")
PROGRESS_EVERY_S = 0.25


class Interrupted(Exception):
    """The server that started this job went away (or asked it to stop while shutting down)."""


class _Watch:
    """The per-step checks: a cancel flag in the database, and whether the parent still lives.

    It keeps one connection open: a check runs before every step, and opening a connection each
    time (as JobStore does for its occasional calls) would cost more than reading the flag.
    """

    def __init__(self, db_path: Path, job_id: str) -> None:
        self.db = sqlite3.connect(db_path, timeout=10)
        self.job_id = job_id
        self.parent = os.getppid()

    def should_stop(self) -> bool:
        if os.getppid() != self.parent:
            raise Interrupted("the server that started this job exited")
        row = self.db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (self.job_id,)).fetchone()
        return bool(row and row[0])


def run_job(job_id: str, store: JobStore, registry: Registry, data_dir: Path | None) -> str:
    """Train, evaluate, register and maybe promote one job. Returns its final status."""
    job = store.get(job_id)
    if job is None:
        raise SystemExit(f"no job {job_id}")
    store.mark_running(job_id, os.getpid())
    config = TrainConfig(**job["config"])
    watch = _Watch(store.path, job_id)
    seq = 0
    last_write = 0.0

    def on_progress(p: Progress) -> None:
        nonlocal seq, last_write
        now = time.monotonic()
        # Throttled, except epoch ends (val_acc) and the last step, which the chart always needs.
        if p.val_acc is None and p.step < p.total_steps and now - last_write < PROGRESS_EVERY_S:
            return
        seq += 1
        last_write = now
        store.add_progress(job_id, seq, {**p.as_dict(), "seq": seq})

    try:
        trained = train_and_evaluate(config, data_dir, on_progress=on_progress, should_stop=watch.should_stop)
        trained.metadata["preset"] = job["preset"]
        trained.metadata["job_id"] = job_id
        version = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + job_id[:6]
        registry.register(trained.network, trained.metadata, version)  # atomic: whole file or nothing
    except TrainingCancelled:
        store.finish(job_id, "cancelled", error="cancelled by an admin")
        return "cancelled"
    except Interrupted as e:
        store.finish(job_id, "interrupted", error=str(e))
        return "interrupted"
    except OSError as e:
        store.finish(job_id, "failed", error=f"could not write the weights: {e}")
        return "failed"
    except Exception as e:
        log.error("training failed", extra={"job": job_id, "trace": traceback.format_exc()})
        store.finish(job_id, "failed", error=f"{type(e).__name__}: {e}")
        return "failed"

    new_acc = trained.metadata["test"]["accuracy"]
    active = registry.active_version()
    active_acc = None
    if active is not None:
        active_acc = (registry.metadata(active).get("test") or {}).get("accuracy")
    promote = job["activate"] == "always" or active_acc is None or new_acc > active_acc
    if promote:
        registry.activate(version)
    result = {
        "test_accuracy": new_acc,
        "canvas_accuracy": trained.metadata["canvas"]["accuracy"],
        "val_accuracy": trained.metadata["training"]["val_accuracy"],
        "seconds": trained.metadata["training"]["seconds"],
        "compared_with": {"version": active, "test_accuracy": active_acc},
    }
    store.finish(job_id, "succeeded", version=version, promoted=int(promote), result=result)
    log.info("training job finished", extra={"job": job_id, "version": version, "promoted": promote, **result})
    return "succeeded"


def lower_priority() -> str:
    """Predictions first. SCHED_IDLE runs this process only on cycles nobody else wants, and the
    scheduler preempts it the moment a web worker wakes; nice 19 is the fallback elsewhere.

    This process leads a session of its own (so a Ctrl-C meant for the server's terminal does not hit
    it), and Linux's autogroup scheduling shares the CPU fairly between sessions before it looks at
    any process's priority: without lowering the session's own niceness too, this process would get
    as much CPU as the whole web server (measured: p99 of /predict x5.3 instead of x3 or less).
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text("19")
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)
        return "nice 19"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run one training job (started by the web server).")
    ap.add_argument("--job", required=True)
    ap.add_argument("--runtime-dir", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    lower_priority()

    def on_sigterm(signum, frame):  # the server is shutting down
        raise Interrupted("the server shut down while the job ran")

    signal.signal(signal.SIGTERM, on_sigterm)
    store = JobStore(args.runtime_dir / "jobs.sqlite")
    registry = Registry(args.runtime_dir)
    try:
        status = run_job(args.job, store, registry, args.data_dir)
    except Interrupted as e:  # raised outside the training loop's own handling
        store.finish(args.job, "interrupted", error=str(e))
        status = "interrupted"
    return 0 if status in ("succeeded", "cancelled", "interrupted") else 1


if __name__ == "__main__":
    raise SystemExit(main())
