"""The review queue at scale: GET /feedback and its export with many corrections stored (issue 22, 6).

    python bench/bench_review.py [--items 100000] [--accepted 50000]

Fills a SQLite runtime folder with corrections (inserted straight into the table, each with a
distinct 28x28 image and a 2 KB original, a few clients sending bursts), starts the server on it
and prints: the time of `GET /feedback?limit=1`, of a page deep in the queue and of a filtered
page; the export's time, size and the worker's memory (RSS) before and after it. Issue 22 measured
1.0 s for `?limit=1` with 100,000 items, and a 52 MB export of 50,000 leaving the worker 100 MB larger.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from servers import uvicorn_server  # noqa: E402

from app.infra.db import Db, feedback  # noqa: E402

TOKEN = "bench-token"


def _png(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((rng.random((28, 28)) < 0.2).astype(np.uint8) * 255, mode="L").save(buf, "PNG")
    return buf.getvalue()


def fill(db: Db, items: int, accepted: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    original = bytes(rng.integers(0, 256, 2048, dtype=np.uint8))
    now = time.time()
    with db.write() as conn:
        for start in range(0, items, 2000):
            rows = []
            for i in range(start, min(items, start + 2000)):
                label, predicted = int(rng.integers(10)), int(rng.integers(10))
                probs = np.full(10, 0.02)
                probs[predicted] = 0.82 if rng.random() < 0.5 else 0.95
                png = _png(rng)
                row = dict(
                    id=uuid.uuid4().hex[:12], sha256=hashlib.sha256(png + i.to_bytes(4, "big")).hexdigest(),
                    created=now - (items - i), client=f"client{i % 300:03d}" if i < items - 40 else "burst",
                    label=label, status="accepted" if i < accepted else "pending", model_version="cnn",
                    predicted=predicted, probabilities=json.dumps(probs.tolist()), media_type="image/png",
                    bytes=len(original), original=original, input_png=png,
                )  # fmt: skip
                if "confidence" in feedback.c:
                    row["confidence"] = float(probs[predicted])
                rows.append(row)
            conn.execute(feedback.insert(), rows)


def timed(client: httpx.Client, path: str, params: dict, n: int = 5) -> tuple[float, httpx.Response]:
    runs, r = [], None
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path, params=params)
        runs.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    return statistics.median(runs) * 1e3, r


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--accepted", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Path(tmp) / "var"
        runtime.mkdir()
        db = Db(f"sqlite:///{runtime / 'jobs.sqlite'}")
        db.upgrade()
        started = time.perf_counter()
        fill(db, args.items, args.accepted)
        took = time.perf_counter() - started
        print(f"{args.items:,} corrections ({args.accepted:,} accepted) stored in {took:.1f} s")
        env = {"DIGITS_MAX_FEEDBACK_ITEMS": str(args.items + 1000)}
        with uvicorn_server(runtime, token=TOKEN, env=env) as server:
            client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300)
            for label, params in (
                ("GET /feedback?limit=1", {"limit": 1}),
                ("GET /feedback?limit=100&offset=90000", {"limit": 100, "offset": min(90_000, args.items - 100)}),
                ("GET /feedback?status=pending&label=3", {"status": "pending", "label": 3}),
            ):
                ms, r = timed(client, "/feedback", params)
                body = r.json()
                print(f"{label}: {ms:.1f} ms median of 5 (total {body['total']:,}, {len(body['items'])} items)")
            posts = []
            for k in range(20):  # within the rate limit of one client
                png = _png(np.random.default_rng(10_000 + k))
                t = time.perf_counter()
                r = client.post("/feedback", json={"image": "data:image/png;base64," + base64.b64encode(png).decode(),
                                                   "label": 3})  # fmt: skip
                posts.append(time.perf_counter() - t)
                assert r.status_code == 201, r.text
            print(f"POST /feedback: {statistics.median(posts) * 1e3:.1f} ms median of 20, max {max(posts) * 1e3:.1f}")
            children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
            worker = int(children[0]) if children else server.process.pid  # uvicorn's one worker process
            before = rss_mb(worker)
            t = time.perf_counter()
            with client.stream("GET", "/feedback/export") as r:
                size = sum(len(chunk) for chunk in r.iter_bytes())
                chunked = r.headers.get("transfer-encoding") == "chunked"
            took = time.perf_counter() - t
            after = rss_mb(worker)
            print(
                f"GET /feedback/export: {took:.1f} s, {size / 1e6:.1f} MB, streamed: {chunked}; "
                f"worker RSS {before:.0f} MB before, {after:.0f} MB after (+{after - before:.0f} MB)"
            )


if __name__ == "__main__":
    main()
