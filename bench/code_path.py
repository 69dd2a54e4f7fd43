"""Which of the project's files a training job's path runs through, in every process it uses.

A real server (`uvicorn app.main:app`, one worker, SQLite) is started with a `sitecustomize` that
records every call into a function of `app/`, `model/` or `digits/` (module bodies, i.e. imports, are
not counted) in each Python process, the server's and any it starts. The server's record is cleared
(SIGUSR1) just before `POST /train` and written (SIGUSR2) when the job has finished, so what the
server did to start up is not counted; other processes count from birth to exit. Prints the files,
the processes, and the number of (caller file -> callee file) hops between files.

    python bench/code_path.py [--preset seed]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import ROOT, uvicorn_server

SITECUSTOMIZE = textwrap.dedent(
    """
    import atexit, json, os, signal, sys, threading
    ROOT = os.environ["CODE_PATH_ROOT"] + "/"
    OUT = os.environ["CODE_PATH_OUT"]
    KEEP = tuple(ROOT + d + "/" for d in ("app", "model", "digits"))
    files, hops = set(), set()

    def profile(frame, event, arg):
        if event != "call":
            return
        name = frame.f_code.co_filename
        if not name.startswith(KEEP) or frame.f_code.co_name == "<module>":
            return
        files.add(name[len(ROOT):])
        caller = frame.f_back
        if caller is not None and caller.f_code.co_filename.startswith(KEEP) and caller.f_code.co_filename != name:
            hops.add((caller.f_code.co_filename[len(ROOT):], name[len(ROOT):]))

    def dump(*_):
        path = f"{OUT}/{os.getpid()}.json"
        with open(path, "w") as f:
            json.dump({"argv": sys.argv, "files": sorted(files), "hops": sorted(hops)}, f)

    def clear(*_):
        files.clear(); hops.clear()

    sys.setprofile(profile)
    threading.setprofile(profile)
    atexit.register(dump)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, clear)
        signal.signal(signal.SIGUSR2, dump)
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="seed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "site").mkdir()
        (tmp / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        out = tmp / "out"
        out.mkdir()
        env = {
            "PYTHONPATH": f"{tmp / 'site'}{os.pathsep}{ROOT}",
            "CODE_PATH_ROOT": str(ROOT),
            "CODE_PATH_OUT": str(out),
        }
        headers = {"Authorization": "Bearer e2e-token"}
        with uvicorn_server(tmp / "var", env=env, timeout_s=120) as server:
            server_pid = server.process.pid
            time.sleep(1)
            os.kill(server_pid, signal.SIGUSR1)
            body = {"preset": args.preset, "epochs": 1, "train_size": 2000, "activate": "always"}
            r = httpx.post(server.url + "/train", json=body, headers=headers, timeout=30)
            r.raise_for_status()
            job = r.json()["id"]
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                status = httpx.get(f"{server.url}/train/{job}", headers=headers, timeout=10).json()["status"]
                if status not in ("queued", "running"):
                    break
                time.sleep(0.5)
            time.sleep(1.5)  # the job's own processes exit and write their records
            os.kill(server_pid, signal.SIGUSR2)
            time.sleep(0.5)
            print(f"job {job}: {status}")
        records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
        records = [r for r in records if r["files"]]
    files = sorted({f for r in records for f in r["files"]})
    hops = {tuple(h) for r in records for h in r["hops"]}
    for r in records:
        print(f"process {' '.join(Path(a).name for a in r['argv'][:3])}: {len(r['files'])} files")
    print("\n".join(f"  {f}" for f in files))
    print(f"{len(files)} files in {len(records)} processes; {len(hops)} distinct hops between files")


if __name__ == "__main__":
    main()
