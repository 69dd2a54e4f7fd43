"""Prometheus metrics, correct across several uvicorn workers.

prometheus_client's multiprocess mode keeps each process's values in files under one folder and
sums them when /metrics is scraped, so every worker's requests count wherever the scrape lands.
The folder must be known before prometheus_client is imported, hence the order below.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from app.settings import get_settings

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str((get_settings().runtime_dir / "metrics").resolve())
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
METRICS_DIR.mkdir(parents=True, exist_ok=True)

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

REQUESTS = Counter("digits_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "digits_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PREDICTIONS = Counter("digits_predictions_total", "Digits predicted", ["digit"])
ACTIVE_MODEL = Gauge(
    "digits_active_model_info", "1 for the model version a worker serves", ["version"], multiprocess_mode="livemax"
)

_PID_FILE = re.compile(r"_(\d+)\.db$")


def remove_dead_process_files() -> None:
    """Drop the value files of processes that are gone (an earlier run, a restarted worker)."""
    for f in METRICS_DIR.glob("*.db"):
        m = _PID_FILE.search(f.name)
        if not m:
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)
            multiprocess.mark_process_dead(pid)
        except PermissionError:
            pass


_served_version: str | None = None


def set_active_version(version: str) -> None:
    global _served_version
    if _served_version is not None and _served_version != version:
        ACTIVE_MODEL.labels(version=_served_version).set(0)
    ACTIVE_MODEL.labels(version=version).set(1)
    _served_version = version


def render() -> tuple[bytes, str]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - started)
