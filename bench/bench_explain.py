"""What the inside view costs: POST /explain against /predict, in one run, for each shipped network.

    python bench/bench_explain.py [--n 200]

1. In process: model.explain.explain (trace, backward pass, occlusion batch, first-layer pictures) on n
   canvas drawings' 28x28 inputs, beside the network's own single-image forward pass.
2. Through a real uvicorn server (1 worker) on 127.0.0.1: the same canvas PNGs posted one at a time to
   /explain and to /predict, alternating, each version activated in turn; latency percentiles and the
   response's size. Target (issue 21): <= 30 ms of server time for the shipped CNN's explanation, and
   a response well under ~100 KB.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from servers import uvicorn_server  # noqa: E402

from model.drawings import canvas_set  # noqa: E402
from model.explain import explain  # noqa: E402
from model.images import open_image, read  # noqa: E402
from model.weights import load  # noqa: E402

TOKEN = "bench-explain-token"
VERSIONS = ("seed", "default", "cnn")


def _ms(times: list[float]) -> str:
    t = sorted(1000 * s for s in times)
    return f"median {statistics.median(t):6.2f} ms, p90 {t[int(0.9 * (len(t) - 1))]:6.2f}, max {t[-1]:6.2f}"


def in_process(pngs: list[bytes]) -> None:
    inputs = [read(open_image(p))[0].reshape(-1) for p in pngs]
    print(f"in process, {len(inputs)} canvas drawings:")
    for name in VERSIONS:
        net, _ = load(ROOT / "weights" / f"{name}.npz")
        forward, whole = [], []
        for x in inputs:
            started = time.perf_counter()
            net.predict_proba(x[None])
            forward.append(time.perf_counter() - started)
            started = time.perf_counter()
            explain(net, x)
            whole.append(time.perf_counter() - started)
        print(f"  {name:8} forward pass  {_ms(forward)}")
        print(f"  {name:8} explanation   {_ms(whole)}")


def served(pngs: list[bytes]) -> None:
    print(f"\nthrough uvicorn (1 worker), {len(pngs)} canvas PNGs, one request at a time:")
    with (
        uvicorn_server(Path(tempfile.mkdtemp()) / "var", workers=1, token=TOKEN) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        for name in VERSIONS:
            r = client.post(f"/models/{name}/activate", headers={"Authorization": f"Bearer {TOKEN}"})
            r.raise_for_status()
            time.sleep(1.2)  # the worker follows the pointer within a second
            times: dict[str, list[float]] = {"/predict": [], "/explain": []}
            size = 0
            for png in pngs:
                body = {"image": "data:image/png;base64," + base64.b64encode(png).decode()}
                for path in times:
                    started = time.perf_counter()
                    r = client.post(path, json=body)
                    times[path].append(time.perf_counter() - started)
                    r.raise_for_status()
                    if path == "/explain":
                        assert r.json()["prediction"]["model_version"] == name
                        size = max(size, len(r.content))
            for path, t in times.items():
                print(f"  {name:8} {path:9} {_ms(t)}")
            print(f"  {name:8} largest /explain response {size / 1000:.1f} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    pngs = [d.png for _, d in zip(range(args.n), canvas_set(per_digit=args.n // 10 + 1, seed=21), strict=False)]
    in_process(pngs)
    served(pngs)


if __name__ == "__main__":
    main()
