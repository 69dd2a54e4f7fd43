"""Several web replicas on one PostgreSQL: /predict throughput of two against one, and how long an
activation takes to reach the last replica.

    python bench/bench_replicas.py [--seconds 10] [--connections 16] [--rounds 3] [--activations 20]

A throw-away PostgreSQL cluster (Debian's package, tests/pg.py), replicas started as `digits serve
--workers 1` with runtime folders of their own, and deploy/nginx.conf run by Debian's nginx in front
of them: wrk posts a 280x280 canvas PNG through the proxy, to one replica and then to two, alternating
`--rounds` times in the same run (these machines drift; same-run comparisons only). Then it activates
versions through the first replica `--activations` times and times, from the activation's answer,
until every replica's /predict answers with the new version (polled every 10 ms by one thread each).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_predict import LUA, TOKEN, canvas_png, describe, ensure_wrk, run_wrk  # noqa: E402
from conftest import STROKE  # noqa: E402
from pg import Cluster, _pg_bin  # noqa: E402
from servers import nginx_proxy, uvicorn_server  # noqa: E402

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def serving(url: str) -> str:
    return httpx.post(f"{url}/predict", json={"pixels": STROKE}, timeout=5).json()["model_version"]


def time_to_last_replica(urls: list[str], version: str) -> float:
    """Activate through the first replica; seconds until each replica serves it (from the 200)."""
    r = httpx.post(f"{urls[0]}/models/{version}/activate", headers=ADMIN, timeout=30)
    r.raise_for_status()
    t0 = time.monotonic()
    seen = [0.0] * len(urls)

    def watch(i: int) -> None:
        while serving(urls[i]) != version:
            if time.monotonic() - t0 > 10:
                raise RuntimeError(f"replica {i} not serving {version} after 10 s")
            time.sleep(0.01)
        seen[i] = time.monotonic() - t0

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--activations", type=int, default=20)
    args = ap.parse_args()
    wrk = ensure_wrk()
    bindir = _pg_bin() or sys.exit("PostgreSQL is not installed: apt-get install postgresql")
    cluster = Cluster(bindir)
    cluster.start()
    try:
        with tempfile.TemporaryDirectory(prefix="digits-bench-") as tmp:
            run(args, wrk, cluster.new_database(), Path(tmp))
    finally:
        cluster.remove()


def run(args, wrk: str, url: str, tmp: Path) -> None:
    script = tmp / "post_png.lua"
    script.write_text(LUA)
    png = canvas_png(tmp)
    env = {"DIGITS_DATABASE_URL": url}
    command = [sys.executable, "-m", "digits", "serve", "--workers", "1", "--no-access-log"]
    print(f"{os.cpu_count()} cores; replicas of 1 worker each behind deploy/nginx.conf; wrk {args.connections}"
          f" connections, {args.seconds} s per measurement; canvas PNG {png.stat().st_size} bytes")  # fmt: skip
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(uvicorn_server(tmp / "a", env=env, command=command, token=TOKEN))
        b = stack.enter_context(uvicorn_server(tmp / "b", env=env, command=command, token=TOKEN))
        hosts = [s.url.removeprefix("http://") for s in (a, b)]
        one = stack.enter_context(nginx_proxy(hosts[:1], tmp / "nginx1"))
        two = stack.enter_context(nginx_proxy(hosts, tmp / "nginx2"))
        rps: dict[str, list[float]] = {"1 replica": [], "2 replicas": []}
        for _ in range(args.rounds):
            for label, proxy in (("1 replica", one), ("2 replicas", two)):
                run_wrk(wrk, proxy, script, png, args.connections, 2)  # warm-up
                r = run_wrk(wrk, proxy, script, png, args.connections, args.seconds)
                print(describe(f"POST /predict, {label}", r))
                rps[label].append(r["rps"])
        base, both = statistics.median(rps["1 replica"]), statistics.median(rps["2 replicas"])
        print(f"median: 1 replica {base:,.0f} req/s, 2 replicas {both:,.0f} req/s: x{both / base:.2f}")

        urls = [a.url, b.url]
        versions = ["default", "cnn"]
        lasts = sorted(time_to_last_replica(urls, versions[i % 2]) for i in range(args.activations))
        median_ms, max_ms = statistics.median(lasts) * 1e3, lasts[-1] * 1e3
        print(
            f"activation -> last replica serving it, {len(lasts)} activations: median {median_ms:.0f} ms,"
            f" max {max_ms:.0f} ms (target <= 1000 ms; replicas poll the active row every 250 ms)"
        )


if __name__ == "__main__":
    main()
