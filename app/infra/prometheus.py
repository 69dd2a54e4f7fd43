"""Prometheus metrics, correct across several uvicorn workers.

prometheus_client's multiprocess mode keeps each process's values in files under one folder and
sums them when /metrics is scraped, so every worker's requests count wherever the scrape lands.
prometheus_client picks that mode when it is first imported, from PROMETHEUS_MULTIPROC_DIR, so
`setup` sets the variable (from the Settings' runtime folder unless it is set already) and only
then imports it. A process has one set of metrics: the first `setup` makes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.infra.asgi import HTTPMiddleware

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("digits.metrics")
_PID_FILE = re.compile(r"_(\d+)\.db$")


class Metrics:
    def __init__(self, folder: Path) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.folder = folder
        labels = ["method", "route", "status"]
        self.requests: Counter = Counter("digits_http_requests_total", "HTTP requests", labels)
        self.latency: Histogram = Histogram(
            "digits_http_request_duration_seconds",
            "HTTP request latency",
            labels,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.predictions: Counter = Counter("digits_predictions_total", "Digits predicted", ["digit"])
        self.batch_size: Histogram = Histogram(
            "digits_forward_batch_size",
            "Images per forward pass of /predict's micro-batches",
            ["route"],
            buckets=(1, 2, 4, 8, 16, 32),
        )  # fmt: skip  (labelled: its value files are made on first use, not in a read-only folder at start)
        self.refused: Counter = Counter(
            "digits_requests_refused_total", "Costly requests refused with 503: the worker was busy", ["path"]
        )
        self.active_model: Gauge = Gauge(
            "digits_active_model_info",
            "1 for the model version a worker serves",
            ["version"],
            multiprocess_mode="livemax",
        )
        self._served_version: str | None = None
        self._write_failed = False

    def count_prediction(self, digit: int) -> None:
        with self.never_failing():
            self.predictions.labels(digit=str(digit)).inc()

    def observe_batch(self, size: int) -> None:
        with self.never_failing():
            self.batch_size.labels(route="/predict").observe(size)

    def count_refused(self, path: str) -> None:
        with self.never_failing():
            self.refused.labels(path=path).inc()

    @contextlib.contextmanager
    def never_failing(self) -> Iterator[None]:
        """A metrics write must never cost an answer: the folder may be full or read-only."""
        try:
            yield
        except OSError as e:
            if not self._write_failed:
                log.error("cannot write metrics; answering without them", extra={"error": str(e)})
            self._write_failed = True

    def set_active_version(self, version: str) -> None:
        with self.never_failing():
            if self._served_version is not None and self._served_version != version:
                self.active_model.labels(version=self._served_version).set(0)
            self.active_model.labels(version=version).set(1)
        self._served_version = version

    def remove_dead_process_files(self) -> None:
        """Drop the value files of processes that are gone (an earlier run, a restarted worker)."""
        from prometheus_client import multiprocess

        for f in self.folder.glob("*.db"):
            m = _PID_FILE.search(f.name)
            if not m:
                continue
            pid = int(m.group(1))
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                with self.never_failing():
                    f.unlink(missing_ok=True)
                    multiprocess.mark_process_dead(pid)
            except PermissionError:
                pass

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


_metrics: Metrics | None = None


SHARED_MEMORY = Path("/dev/shm")


def default_folder(runtime_dir: Path) -> Path:
    """Where a server's metrics live unless $PROMETHEUS_MULTIPROC_DIR says: in shared memory, one folder per
    runtime folder, when the machine has it; else runtime_dir/metrics.

    Not on the runtime folder's disk: prometheus_client memory-maps its files and grows them as label sets
    appear, and touching a grown page that the file system has no block for kills the process with
    SIGBUS. A full data disk took every web worker down that way; a full disk should cost only the
    writes that need it (corrections, versions), which answer 503."""
    runtime_dir = runtime_dir.resolve()
    if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK):
        key = hashlib.sha256(str(runtime_dir).encode()).hexdigest()[:16]
        return SHARED_MEMORY / f"digits-metrics-{key}"
    return runtime_dir / "metrics"


def setup(runtime_dir: Path) -> Metrics:
    """This process's metrics, kept under $PROMETHEUS_MULTIPROC_DIR or else default_folder(runtime_dir)."""
    global _metrics
    if _metrics is None:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(default_folder(runtime_dir))
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        _metrics = Metrics(folder)
    return _metrics


class MetricsMiddleware(HTTPMiddleware):
    """Counts and times every HTTP request by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            labels = (scope["method"], template, str(status))
            with self.metrics.never_failing():
                self.metrics.requests.labels(*labels).inc()
                self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
