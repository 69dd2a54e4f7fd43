"""The learning loop at full size (issue 10): a measured gain from corrections, through a real server.

    python bench/bench_feedback.py [--corrections 300] [--preset default]

Starts `digits serve` on 127.0.0.1 with the shipped weights; measures the served model on drawings in
ways MNIST lacks (model.drawings.UNUSUAL: a continental 1, a slashed zero, a crossed 7); sends that
many such drawings as corrections through POST /feedback, accepts them through the admin API, trains
the preset with them through POST /train, and measures the new version on *other* drawings of those
ways, and on MNIST's test set.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from servers import uvicorn_server  # noqa: E402
from unusual_drawings import unusual_set  # noqa: E402

TOKEN = "bench-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def measure(c: httpx.Client, drawings) -> tuple[str, float, float]:
    """(version, accuracy, share answered and right) of the served model, through /predict/batch."""
    files = [("files", (f"{i}.png", d.png, "image/png")) for i, d in enumerate(drawings)]
    right = answered = 0
    version = ""
    for start in range(0, len(files), 200):
        body = c.post("/predict/batch", files=files[start : start + 200]).json()
        version = body["model_version"]
        for it, d in zip(body["items"], drawings[start : start + 200], strict=True):
            r = it["result"]
            right += r["digit"] == d.label
            answered += r["digit"] == d.label and not r["uncertain"] and not r["not_a_digit"]
    return version, right / len(drawings), answered / len(drawings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corrections", type=int, default=300)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--weight", type=int, default=3, help="feedback_weight: how often each correction counts")
    args = ap.parse_args()
    others = list(unusual_set(600, seed=2028))  # never sent
    env = {"DIGITS_FEEDBACK_RATE": "100000/minute"}
    with tempfile.TemporaryDirectory() as tmp, uvicorn_server(Path(tmp) / "var", token=TOKEN, env=env) as s:
        c = httpx.Client(base_url=s.url, timeout=120)
        version, acc, answered = measure(c, others)
        print(f"before: {version}: {acc:.1%} right, {answered:.1%} answered and right, on {len(others)} drawings")
        ids = []
        for d in unusual_set(args.corrections, seed=2029):
            image = "data:image/png;base64," + base64.b64encode(d.png).decode()
            ids.append(c.post("/feedback", json={"image": image, "label": d.label}).json()["id"])
        c.post("/feedback/review", json={"ids": ids, "action": "accept"}, headers=ADMIN).raise_for_status()
        t = time.time()
        body = {"preset": args.preset, "feedback": "include", "feedback_weight": args.weight}
        job = c.post("/train", json=body, headers=ADMIN).json()
        while (done := c.get(f"/train/{job['id']}", headers=ADMIN).json())["status"] in ("queued", "running"):
            time.sleep(5)
        result = done["result"]
        print(f"trained {args.preset} with {result['corrections']} in {time.time() - t:.0f} s: {done['status']}, "
              f"promoted {done['promoted']}, holdout gate {result['holdout']}")  # fmt: skip
        if not done["promoted"]:
            c.post(f"/models/{done['version']}/activate", headers=ADMIN).raise_for_status()
        time.sleep(1)
        version, acc, answered = measure(c, others)
        print(f"after: {version}: {acc:.1%} right, {answered:.1%} answered and right; "
              f"MNIST test {result['test_accuracy']:.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
