"""Load on a real server: wrk posting a 280x280 canvas PNG to /predict.

    python bench/bench_predict.py [--workers 2] [--connections 16] [--seconds 10]
    python bench/bench_predict.py --versions default cnn default cnn   # alternating, same server, same run

Starts `digits serve --workers N` on 127.0.0.1 with the shipped weights, runs Debian's wrk
(installed with apt-get when missing and running as root), and prints requests/s, latency
percentiles and errors. Target (issue 3): >= 1,000 requests/s with 2 workers, p99 <= 50 ms, 0 errors.
With --versions, it activates each version through the admin API, measures it, and prints each
one's throughput against the first's (issue 12: the CNN >= 70% of the MLP's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from servers import uvicorn_server  # noqa: E402

from model.drawings import draw  # noqa: E402

LUA = r"""
local f = assert(io.open(os.getenv("PNG"), "rb"))
local png = f:read("*a"); f:close()
local b = "----wrkboundary7MA4YWxkTrZu0gW"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. b
wrk.body = "--" .. b .. "\r\n"
  .. 'Content-Disposition: form-data; name="file"; filename="canvas.png"\r\n'
  .. "Content-Type: image/png\r\n\r\n" .. png .. "\r\n--" .. b .. "--\r\n"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%d,"rps":%.1f,"p50_ms":%.2f,"p90_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,'
    .. '"non2xx":%d,"connect_err":%d,"read_err":%d,"write_err":%d,"timeouts":%d}\n',
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: apt-get install wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or sys.exit("wrk did not install")


def canvas_png(folder: Path) -> Path:
    png = folder / "canvas.png"
    png.write_bytes(draw(7, np.random.default_rng(0), "transparent").png)  # 280x280 RGBA, as toDataURL()
    return png


def run_wrk(wrk: str, url: str, script: Path, png: Path, connections: int, seconds: int) -> dict:
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), f"{url}/predict"],
        capture_output=True,
        text=True,
        env={**os.environ, "PNG": str(png)},
        check=True,
    )
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def describe(label: str, r: dict) -> str:
    errors = r["non2xx"] + r["connect_err"] + r["read_err"] + r["write_err"] + r["timeouts"]
    return (
        f"{label}: {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms, "
        f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, {r['requests']} requests, {errors} errors"
    )


TOKEN = "bench-token"


def activate(url: str, version: str) -> None:
    """Activate `version` and wait until every worker serves it (they poll the pointer every 0.25 s)."""
    r = httpx.post(f"{url}/models/{version}/activate", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    r.raise_for_status()
    deadline, seen = time.monotonic() + 10, 0
    while seen < 20:  # 20 answers in a row from the new version: both workers have switched
        served = httpx.get(f"{url}/readyz", timeout=5).json().get("model_version")
        seen = seen + 1 if served == version else 0
        if time.monotonic() > deadline:
            sys.exit(f"workers still serve {served} 10 s after activating {version}")
        time.sleep(0.05)


def compare(results: list[tuple[str, dict]]) -> None:
    """Each measurement, then each version's median throughput against the first version's (a version
    may be measured several times, alternating, since these machines drift within a run)."""
    for version, r in results:
        print(describe(f"POST /predict, {version}", r))
    by_version: dict[str, list[float]] = {}
    for version, r in results:
        by_version.setdefault(version, []).append(r["rps"])
    base_name, base = next(iter(by_version.items()))
    for version, rps in by_version.items():
        med = statistics.median(rps)
        share = med / statistics.median(base)
        print(f"{version}: median {med:,.0f} req/s over {len(rps)} runs, {share:.0%} of {base_name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--http", default=None, help="uvicorn's HTTP implementation (default: what `digits serve` uses)")
    ap.add_argument("--versions", nargs="+", help="measure each of these model versions in turn")
    args = ap.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="digits-bench-") as tmp:
        tmp = Path(tmp)
        script = tmp / "post_png.lua"
        script.write_text(LUA)
        png = canvas_png(tmp)
        print(
            f"canvas PNG {png.stat().st_size} bytes, {args.workers} workers, {args.connections} connections, "
            f"{args.seconds} s, {os.cpu_count()} cores"
        )
        command = [sys.executable, "-m", "digits", "serve", "--workers", str(args.workers), "--no-access-log"]
        if args.http:
            command += ["--http", args.http]
        results = []
        with uvicorn_server(tmp / "var", workers=args.workers, command=command, token=TOKEN) as server:
            for version in args.versions or [None]:
                if version is not None:
                    activate(server.url, version)
                run_wrk(wrk, server.url, script, png, args.connections, 2)  # warm-up
                results.append((version, run_wrk(wrk, server.url, script, png, args.connections, args.seconds)))
    if args.versions:
        compare(results)
        return
    r = results[0][1]
    print(describe("POST /predict (multipart PNG)", r))
    ok = r["rps"] >= 1000 and r["p99_ms"] <= 50 and r["non2xx"] + r["read_err"] + r["connect_err"] == 0
    print(f"target >= 1,000 req/s, p99 <= 50 ms, 0 errors: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
