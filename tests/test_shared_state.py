"""Several machines' worth of processes on one: web replicas and training workers sharing PostgreSQL.

Real components throughout: a PostgreSQL cluster from Debian's package (tests/pg.py), uvicorn servers on
127.0.0.1 with runtime folders of their own, `digits worker` processes, signals, stopping the database.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import STROKE, TOKEN
from servers import ROOT, uvicorn_server

from app.infra.db import Db
from app.services.job_store import JobStore

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT_S = 3.0  # a silent worker's job is given up on after this long (production default: 20 s)
SLOW = {"preset": "tiny", "epochs": 150, "train_size": 20_000}


def shared_env(url: str) -> dict[str, str]:
    return {
        "DIGITS_DATABASE_URL": url,
        "DIGITS_HEARTBEAT_S": "0.5",
        "DIGITS_WORKER_TIMEOUT_S": str(TIMEOUT_S),
        "DIGITS_WORKER_POLL_S": "0.2",
    }


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def worker(runtime_dir: Path, env: dict[str, str]) -> Iterator[WorkerProcess]:
    runtime_dir.mkdir(parents=True, exist_ok=True)
    log = runtime_dir / "worker.log"
    full_env = {**os.environ, "DIGITS_RUNTIME_DIR": str(runtime_dir), **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digits", "worker"], cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        w = WorkerProcess(proc, log)
        wait_until(lambda: "training worker started" in w.log_text() or proc.poll() is not None, 60, "worker up")
        assert proc.poll() is None, w.log_text()
        yield w
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def admin_client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=ADMIN, timeout=30)


def wait_until(check, timeout_s: float, what: str, every_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(every_s)


def serving(client: httpx.Client) -> str:
    return client.post("/predict", json={"pixels": STROKE}).json()["model_version"]


def job_status(client: httpx.Client, job_id: str) -> dict:
    return client.get(f"/train/{job_id}").json()


def finished(client: httpx.Client, job_id: str, timeout_s: float = 90) -> dict:
    """The job once it has left queued and running."""
    return wait_until(
        lambda: (j := job_status(client, job_id))["status"] not in ("queued", "running") and j, timeout_s, "job done"
    )


def sse_events(client: httpx.Client, path: str) -> list[tuple[str, dict]]:
    """Read a Server-Sent Events stream to its end: [(event, data)]."""
    events, event = [], None
    with client.stream("GET", path, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
    return events


def seven_png() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(img).line([(30, 30), (110, 30), (60, 120)], fill=0, width=12)
    from conftest import png_bytes

    return png_bytes(img)


def test_two_replicas_and_a_worker_share_one_database(pg_url, tmp_path):
    env = shared_env(pg_url)
    with (
        uvicorn_server(tmp_path / "a", env=env, token=TOKEN) as a,
        uvicorn_server(tmp_path / "b", env=env, token=TOKEN) as b,
        worker(tmp_path / "w", env) as w,
        admin_client(a) as A,
        admin_client(b) as B,
    ):
        # One registry: the committed weights went into the database once, both serve the same version.
        models = A.get("/models").json()
        assert models["active"] == "cnn" and B.get("/models").json() == {**models, "serving": "cnn"}
        assert serving(A) == serving(B) == "cnn"
        assert not (b.runtime_dir / "models").exists()  # the weights live in the database, cached by hash
        assert len(list((b.runtime_dir / "cache").glob("*.npz"))) >= 1

        # A job posted to the first runs on the worker; the second shows its progress and its stream.
        job = A.post("/train", json={"preset": "tiny", "epochs": 3}).json()
        assert A.post("/train", json={"preset": "tiny"}).status_code == 409  # one at a time, across replicas
        events = sse_events(B, f"/train/{job['id']}/events")
        kinds = [e for e, _ in events]
        assert kinds[0] == "status" and kinds[-1] == "status" and kinds.count("progress") >= 3
        done = events[-1][1]
        assert done["status"] == "succeeded", done["error"]
        assert done["worker"].endswith(f":{w.pid}")  # the worker ran it, not a web server
        assert not list(a.runtime_dir.glob("**/training*.log")) and "claimed training job" in w.log_text()
        assert [d["epoch"] for e, d in events if e == "progress" and d.get("val_acc") is not None] == [1, 2, 3]
        assert job_status(A, job["id"]) == job_status(B, job["id"]) == {**done, "duration_s": done["duration_s"]}

        # The version it made, activated through the second, is served by the first within 1 s.
        version = done["version"]
        assert version in {v["version"] for v in A.get("/models").json()["versions"]}
        r = B.post(f"/models/{version}/activate")
        assert r.status_code == 200, r.text
        activated = time.monotonic()
        wait_until(lambda: serving(A) == version, 1.0, f"replica A serving {version}", every_s=0.02)
        print(f"activation to replica A serving it: {time.monotonic() - activated:.3f} s")
        assert serving(B) == version

        # A correction sent to one replica is reviewed through the other.
        image = "data:image/png;base64," + base64.b64encode(seven_png()).decode()
        r = A.post("/feedback", json={"image": image, "label": 7})
        assert r.status_code == 201, r.text
        item = r.json()["id"]
        listed = B.get("/feedback", params={"status": "pending"}).json()
        assert [it["id"] for it in listed["items"]] == [item]
        assert B.post("/feedback/review", json={"ids": [item], "action": "accept"}).json() == {"changed": 1}
        assert [it["id"] for it in A.get("/feedback", params={"status": "accepted"}).json()["items"]] == [item]
        export = A.get("/feedback/export")  # streamed from one REPEATABLE READ snapshot on PostgreSQL
        assert export.status_code == 200 and "content-length" not in export.headers
        with np.load(io.BytesIO(export.content), allow_pickle=False) as npz:
            assert npz["x"].shape == (1, 28, 28) and list(npz["y"]) == [7]


def test_a_killed_worker_fails_its_job_and_the_next_runs_on_another(pg_url, tmp_path):
    env = shared_env(pg_url)
    with uvicorn_server(tmp_path / "a", env=env, token=TOKEN) as a, admin_client(a) as A:
        versions_before = {v["version"] for v in A.get("/models").json()["versions"]}
        with worker(tmp_path / "w1", env) as w1:
            job = A.post("/train", json=SLOW).json()
            wait_until(lambda: job_status(A, job["id"])["status"] == "running", 30, "the job running on worker 1")
            wait_until(lambda: (job_status(A, job["id"]).get("progress") or {}).get("step", 0) > 5, 30, "progress")
            os.kill(w1.pid, signal.SIGKILL)
            killed = time.monotonic()
            failed = finished(A, job["id"], TIMEOUT_S + 5)
            waited = time.monotonic() - killed
            print(f"SIGKILLed worker's job failed after {waited:.2f} s (timeout {TIMEOUT_S} s)")
        assert failed["status"] == "failed" and "stopped answering" in failed["error"], failed
        assert failed["version"] is None and TIMEOUT_S - 0.5 <= waited <= TIMEOUT_S + 3, waited
        assert {v["version"] for v in A.get("/models").json()["versions"]} == versions_before  # nothing registered
        with worker(tmp_path / "w2", env) as w2:
            job2 = A.post("/train", json={"preset": "tiny"}).json()
            done = finished(A, job2["id"])
            assert done["status"] == "succeeded" and done["worker"].endswith(f":{w2.pid}"), done


def test_two_workers_racing_for_one_job_exactly_one_runs_it(pg_url):
    store = JobStore(Db(pg_url))
    store.db.upgrade()
    for round_ in range(10):
        job = store.create("tiny", {}, "if_better")
        start = threading.Barrier(8)
        claimed: list[tuple[int, str | None]] = []

        def claim(i, start=start, claimed=claimed):
            start.wait()
            got = store.claim(f"racer-{i}", pid=i)
            claimed.append((i, got.id if got else None))

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, got in claimed if got == job.id]
        assert len(winners) == 1 and len(claimed) == 8, (round_, claimed)
        assert store.get(job.id).worker == f"racer-{winners[0]}"
        store.finish(job.id, "succeeded")


def test_two_worker_processes_one_job(pg_url, tmp_path):
    env = shared_env(pg_url)
    with uvicorn_server(tmp_path / "a", env=env, token=TOKEN) as a, admin_client(a) as A:
        with worker(tmp_path / "w1", env) as w1, worker(tmp_path / "w2", env) as w2:
            time.sleep(2)  # both polling
            job = A.post("/train", json={"preset": "tiny"}).json()
            done = finished(A, job["id"])
            ran = [w for w in (w1, w2) if f'"job": "{job["id"]}"' in w.log_text() and "claimed" in w.log_text()]
        assert done["status"] == "succeeded" and len(ran) == 1
        assert done["worker"].endswith(f":{ran[0].pid}")


def test_postgres_stopped_under_load(pg_cluster, tmp_path):
    url = pg_cluster.new_database()
    port = pg_cluster.port
    env = shared_env(url)
    with (
        uvicorn_server(tmp_path / "a", env=env, token=TOKEN, workers=2) as a,
        admin_client(a) as A,
        worker(tmp_path / "w", env) as w,
    ):
        results: list[int] = []
        stop = threading.Event()

        def load():
            with httpx.Client(base_url=a.url, timeout=10) as c:
                while not stop.is_set():
                    try:
                        results.append(c.post("/predict", json={"pixels": STROKE}).status_code)
                    except httpx.HTTPError as e:
                        results.append(repr(e))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            pg_cluster.stop("immediate")  # a crash, as near as pg_ctl comes
            down, at_stop = time.monotonic(), len(results)
            try:
                time.sleep(1)
                r = A.get("/train")
                assert r.status_code == 503 and "database is unavailable" in r.json()["detail"], r.text
                assert str(port) not in r.text and "127.0.0.1" not in r.text  # the driver's words stay in the log
                assert A.post("/models/seed/activate").status_code == 503
                ready = httpx.get(f"{a.url}/readyz").json()
                assert ready["status"] == "degraded" and "database" in ready["detail"], ready
                assert str(port) not in json.dumps(ready) and "127.0.0.1" not in json.dumps(ready)
                time.sleep(2)
            finally:
                pg_cluster.start()
            outage, during = time.monotonic() - down, len(results) - at_stop
            # Everything recovers without a restart.
            wait_until(lambda: A.get("/train").status_code == 200, 15, "admin routes answering again", every_s=0.2)
            assert A.post("/models/seed/activate").status_code == 200
            wait_until(lambda: serving(A) == "seed", 2, "the activation served")
            wait_until(lambda: httpx.get(f"{a.url}/readyz").json()["status"] == "ready", 5, "ready again")
            # The worker, idle through the outage, reconnected by itself too.
            job = A.post("/train", json={"preset": "tiny"}).json()
            done = finished(A, job["id"])
            assert done["status"] == "succeeded" and done["worker"].endswith(f":{w.pid}"), done
            assert w.log_text().count("database unreachable") == 1 and "reachable again" in w.log_text()
        finally:
            stop.set()
            for t in threads:
                t.join()
    failed = [r for r in results if r != 200]
    print(f"{len(results)} predictions, {len(failed)} failed; {during} while the database was down ({outage:.1f} s)")
    assert failed == [] and during > 50


def test_a_replica_starting_while_the_database_is_away_serves_what_it_served(pg_cluster, tmp_path):
    url = pg_cluster.new_database()
    env = shared_env(url)
    with uvicorn_server(tmp_path / "a", env=env, token=TOKEN):
        pass  # served once: its cache holds the active version
    pg_cluster.stop("fast")
    try:
        with uvicorn_server(tmp_path / "a", env=env, token=TOKEN) as a:
            ready = httpx.get(f"{a.url}/readyz").json()
            assert ready["status"] == "degraded" and ready["model_version"] == "cnn"
            assert httpx.post(f"{a.url}/predict", json={"pixels": STROKE}).status_code == 200
            assert httpx.get(f"{a.url}/train", headers=ADMIN).status_code == 503
    finally:
        pg_cluster.start()
    # A replica with nothing cached has nothing to serve while the database is away: not ready.
    pg_cluster.stop("fast")
    try:
        with pytest.raises(RuntimeError, match="not ready"), uvicorn_server(tmp_path / "fresh", env=env, timeout_s=8):
            pass
    finally:
        pg_cluster.start()


def test_digits_db_upgrade_on_postgres(pg_url, tmp_path):
    env = {**os.environ, "DIGITS_DATABASE_URL": pg_url, "DIGITS_RUNTIME_DIR": str(tmp_path)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "digits", "db", *a], env=env, cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "schema: none (" in run("current")
    assert "schema: none -> 0004" in run("upgrade")
    assert "schema: 0004 -> 0004" in run("upgrade")


def test_cancel_and_shutdown_reach_the_worker(pg_url, tmp_path):
    env = shared_env(pg_url)
    with (
        uvicorn_server(tmp_path / "a", env=env, token=TOKEN) as a,
        uvicorn_server(tmp_path / "b", env=env, token=TOKEN) as b,
        admin_client(a) as A,
        admin_client(b) as B,
        worker(tmp_path / "w", env) as w,
    ):
        job = A.post("/train", json=SLOW).json()
        wait_until(lambda: job_status(A, job["id"])["status"] == "running", 30, "the job running")
        assert B.post(f"/train/{job['id']}/cancel").status_code == 200  # asked of the other replica
        done = finished(A, job["id"], 10)
        assert done["status"] == "cancelled" and done["version"] is None, done
        # A worker told to stop (SIGTERM) says so in its job, and exits.
        job = A.post("/train", json=SLOW).json()
        wait_until(lambda: job_status(A, job["id"])["status"] == "running", 30, "the next job running")
        w.process.terminate()
        assert w.process.wait(timeout=20) == 0
        done = job_status(B, job["id"])
        assert done["status"] == "interrupted" and "asked to stop" in done["error"], done


def test_local_training_on_postgres_registers_in_the_database(pg_url, tmp_path):
    # DIGITS_TRAINING=local: a web server starts its own training worker, with the shared database (no
    # `digits worker` runs here, so the worker that ran the job is the one server A started).
    env = {**shared_env(pg_url), "DIGITS_TRAINING": "local"}
    with (
        uvicorn_server(tmp_path / "a", env=env, token=TOKEN) as a,
        uvicorn_server(tmp_path / "b", env=shared_env(pg_url), token=TOKEN) as b,
        admin_client(a) as A,
        admin_client(b) as B,
    ):
        job = A.post("/train", json={"preset": "tiny", "activate": "always"}).json()
        done = finished(B, job["id"])
        assert done["status"] == "succeeded" and done["worker"] and done["promoted"] is True, done
        wait_until(lambda: serving(B) == done["version"], 1.0, "replica B serving the new version", every_s=0.02)


def test_a_queued_job_with_no_worker_waits_and_can_be_cancelled(pg_url, tmp_path):
    with uvicorn_server(tmp_path / "a", env=shared_env(pg_url), token=TOKEN) as a, admin_client(a) as A:
        job = A.post("/train", json={"preset": "tiny"}).json()
        time.sleep(1.5)  # no worker: the web server does not train it itself
        assert job_status(A, job["id"])["status"] == "queued"
        done = A.post(f"/train/{job['id']}/cancel").json()
        assert done["status"] == "cancelled" and "before it started" in done["error"]
        assert A.post("/train", json={"preset": "tiny"}).status_code == 202  # it no longer holds the queue


def test_digits_evaluate_and_export_read_the_shared_databases_corrections(pg_url, tmp_path):
    import numpy as np

    from app.services.feedback_review import Review, in_holdout
    from app.services.feedback_store import FeedbackStatus, FeedbackStore

    db = Db(pg_url)
    db.upgrade()
    x = np.zeros((12, 28, 28), np.uint8)
    for i in range(12):
        x[i, 4:24, 4 + i] = 255  # twelve different strokes
    review = Review(FeedbackStore(db, max_items=100))
    assert review.import_items(x, np.ones(12, np.uint8), None, FeedbackStatus.ACCEPTED, "test") == 12
    held_out = sum(in_holdout(d) for d in review.accepted()[2])
    env = {**os.environ, "DIGITS_DATABASE_URL": pg_url, "DIGITS_RUNTIME_DIR": str(tmp_path / "empty")}
    out = subprocess.run([sys.executable, "-m", "digits", "evaluate", "weights/seed.npz", "--json"], env=env,
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert held_out > 0 and json.loads(out)["holdout"]["n"] == held_out
    subprocess.run([sys.executable, "-m", "digits", "feedback", "export", str(tmp_path / "c.npz")], env=env, cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip
    assert len(np.load(tmp_path / "c.npz")["y"]) == 12


def test_a_worker_started_in_someone_elses_session_leaves_its_priority_alone(pg_url, tmp_path):
    """`digits worker` typed in a terminal runs in the terminal's session: it takes the idle class for
    itself, and leaves the session's share of the CPU (its autogroup's niceness) as it was."""
    autogroup = Path("/proc/self/autogroup")
    if not autogroup.exists():
        pytest.skip("this kernel has no autogroup scheduling")
    before = autogroup.read_text()
    with worker(tmp_path / "w", shared_env(pg_url)) as w:
        assert os.getsid(w.pid) == os.getsid(0)  # the test's session, as a terminal's command would be
        assert os.sched_getscheduler(w.pid) == os.SCHED_IDLE
        assert autogroup.read_text() == before
