"""/predict latency at 16 connections, idle and while a training job runs, in the same run.

    python bench/bench_training_load.py [--seconds 10] [--preset default --epochs 3]

Starts a real server (2 workers), measures POST /predict with wrk while nothing else runs, then
starts a training job through POST /train and measures again while it trains. Prints p50 and p99 of
both and their ratio. Target (issue 4): p99 during training <= 3x the idle p99.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import LUA, TOKEN, canvas_png, describe, ensure_wrk, run_wrk, uvicorn_server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--epochs", type=int, default=3, help="enough to outlast the measurement")
    args = ap.parse_args()
    wrk = ensure_wrk()
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory(prefix="digits-bench-") as tmp:
        tmp = Path(tmp)
        script = tmp / "post_png.lua"
        script.write_text(LUA)
        png = canvas_png(tmp)
        with uvicorn_server(tmp / "var", workers=2, token=TOKEN) as server:
            run_wrk(wrk, server.url, script, png, args.connections, 2)  # warm-up
            idle = run_wrk(wrk, server.url, script, png, args.connections, args.seconds)
            job = httpx.post(
                f"{server.url}/train", json={"preset": args.preset, "epochs": args.epochs}, headers=admin, timeout=10
            ).json()
            deadline = time.monotonic() + 60
            while httpx.get(f"{server.url}/train/{job['id']}", headers=admin).json()["progress"] is None:
                if time.monotonic() > deadline:
                    sys.exit("the training job did not start")
                time.sleep(0.2)
            busy = run_wrk(wrk, server.url, script, png, args.connections, args.seconds)
            state = httpx.get(f"{server.url}/train/{job['id']}", headers=admin).json()
            httpx.post(f"{server.url}/train/{job['id']}/cancel", headers=admin)
    print(
        f"training job: preset {args.preset}, {args.epochs} epochs; still {state['status']} after the "
        f"measurement, at step {state['progress']['step']} of {state['progress']['total_steps']}, "
        f"{state['progress']['samples_per_s']:,.0f} samples/s"
    )
    print(describe("idle          ", idle))
    print(describe("during training", busy))
    ratio = busy["p99_ms"] / idle["p99_ms"]
    print(f"p99 during training / idle p99: {ratio:.2f} (target <= 3); p50 ratio {busy['p50_ms'] / idle['p50_ms']:.2f}")


if __name__ == "__main__":
    main()
