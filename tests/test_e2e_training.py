"""Predictions keep answering while a job trains on the same 2-core machine (real uvicorn, 2 workers)."""

import threading
import time

import httpx
import numpy as np
from servers import uvicorn_server

from model.drawings import draw

TOKEN = "e2e-token"


def test_predictions_never_fail_while_a_job_trains(tmp_path):
    png = draw(3, np.random.default_rng(0), "transparent").png
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with uvicorn_server(tmp_path / "var", workers=2, token=TOKEN) as server:
        job = httpx.post(f"{server.url}/train", json={"preset": "quick", "epochs": 1}, headers=admin, timeout=10).json()
        results: list[tuple[int, float]] = []
        errors: list[str] = []
        stop = threading.Event()

        def client_loop():
            with httpx.Client(base_url=server.url, timeout=10) as c:
                while not stop.is_set():
                    t = time.perf_counter()
                    try:
                        r = c.post("/predict", files={"file": ("d.png", png, "image/png")})
                        results.append((r.status_code, time.perf_counter() - t))
                        if r.status_code != 200 or r.json()["digit"] != 3:
                            errors.append(f"{r.status_code} {r.text[:200]}")
                    except httpx.HTTPError as e:
                        errors.append(repr(e))

        threads = [threading.Thread(target=client_loop) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        status = "queued"
        seen_running = False
        while time.monotonic() < deadline:
            status = httpx.get(f"{server.url}/train/{job['id']}", headers=admin, timeout=10).json()["status"]
            seen_running |= status == "running"
            if status in ("succeeded", "failed", "cancelled", "interrupted"):
                break
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
    latencies = sorted(s for _, s in results)
    print(
        f"\n{len(results)} predictions during training, p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.1f} ms, {len(errors)} errors"
    )
    assert seen_running and status == "succeeded"
    assert errors == []
    assert len(results) > 200
