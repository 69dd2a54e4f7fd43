"""The training service's whole lifecycle, with tiny configurations that take seconds."""

import errno
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import STROKE, TOKEN

from app.infra.settings import Settings
from app.services.job_store import JobStore, worker_name
from app.services.registry import INITIAL_VERSION, Registry
from app.services.training_job import run_job
from model import weights
from model.config import PRESETS, preset

TINY = {"preset": "tiny"}
# Long enough to catch it running (thousands of small steps), short enough to finish in seconds.
SLOW = {"preset": "tiny", "epochs": 150, "train_size": 20_000}


def wait_for(client, job_id, statuses, timeout=90, admin=None):
    admin = admin or {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/train/{job_id}", headers=admin).json()
        seen.append(job)
        if job["status"] in statuses:
            return job, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {seen[-1]['status']} after {timeout} s: {seen[-1]}")


def wait_running(client, job_id, admin):
    job, _ = wait_for(client, job_id, {"running", "succeeded", "failed"}, admin=admin)
    assert job["status"] == "running", job
    deadline = time.monotonic() + 60
    while client.get(f"/train/{job_id}", headers=admin).json()["progress"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return client.get(f"/train/{job_id}", headers=admin).json()


def served_within(client, version, seconds):
    """The training process switches the pointer; each worker's watcher follows it within a second."""
    deadline = time.monotonic() + seconds
    while client.post("/predict", json={"pixels": STROKE}).json()["model_version"] != version:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def versions(client):
    return {v["version"] for v in client.get("/models").json()["versions"]}


def test_a_job_runs_to_success_and_registers_a_version(client, admin):
    before = versions(client)
    r = client.post("/train", json=TINY, headers=admin)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["config"]["layers"] == [784, 32, 10]
    done, seen = wait_for(client, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    steps = [j["progress"]["step"] for j in seen if j["progress"]]
    assert steps == sorted(steps)
    assert done["progress"]["step"] == done["progress"]["total_steps"]
    assert done["version"] and done["version"] not in before
    assert versions(client) == before | {done["version"]}
    meta = next(v for v in client.get("/models").json()["versions"] if v["version"] == done["version"])["metadata"]
    assert 0 < meta["test"]["accuracy"] < 1 and len(meta["test"]["confusion"]) == 10
    assert meta["canvas"]["n"] == 300 and 0 <= meta["canvas"]["accuracy"] <= 1
    assert meta["job_id"] == job["id"]
    assert done["result"]["test_accuracy"] == meta["test"]["accuracy"]
    # A tiny network does not beat the shipped one: registered, not promoted.
    assert done["promoted"] is False and client.get("/models").json()["active"] == INITIAL_VERSION
    history = client.get("/train", headers=admin).json()["jobs"]
    assert history[0]["id"] == job["id"] and history[0]["duration_s"] > 0


def test_progress_events_stream_forward_until_the_end(client, admin):
    job = client.post("/train", json={**TINY, "epochs": 3}, headers=admin).json()
    events = []
    with client.stream("GET", f"/train/{job['id']}/events", headers=admin) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = {}
        for line in r.iter_lines():
            if not line:
                if event:
                    events.append(event)
                event = {}
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line.startswith("id: "):
                event["id"] = int(line[4:])
    assert events[0]["event"] == "status"
    assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "succeeded"
    progress = [e for e in events if e["event"] == "progress"]
    steps = [e["data"]["step"] for e in progress]
    assert steps == sorted(steps) and steps[-1] == 3 * 16
    assert [e["id"] for e in progress] == sorted(e["id"] for e in progress)
    epochs_with_val = [e["data"]["epoch"] for e in progress if e["data"]["val_acc"] is not None]
    assert epochs_with_val == [1, 2, 3]
    assert all({"loss", "train_acc", "samples_per_s", "eta_s"} <= set(e["data"]) for e in progress)


def test_one_job_at_a_time_and_cancel(client, admin):
    before = versions(client)
    job = client.post("/train", json=SLOW, headers=admin).json()
    r = client.post("/train", json=TINY, headers=admin)
    assert r.status_code == 409 and job["id"] in r.json()["detail"]
    wait_running(client, job["id"], admin)
    r = client.post(f"/train/{job['id']}/cancel", headers=admin)
    assert r.status_code == 200 and r.json()["cancel_requested"]
    done, _ = wait_for(client, job["id"], {"cancelled", "succeeded", "failed"}, timeout=10)
    assert done["status"] == "cancelled"
    assert done["progress"]["step"] < done["progress"]["total_steps"]
    assert versions(client) == before  # nothing registered
    assert client.post(f"/train/{job['id']}/cancel", headers=admin).status_code == 409
    assert client.post("/train", json=TINY, headers=admin).status_code == 202  # free again
    assert client.post("/train/nope/cancel", headers=admin).status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_training_routes_need_the_admin_token(client, headers):
    for method, path in [
        ("post", "/train"),
        ("get", "/train"),
        ("get", "/train/x"),
        ("post", "/train/x/cancel"),
        ("get", "/train/x/events"),
    ]:
        r = getattr(client, method)(path, headers=headers, **({"json": TINY} if method == "post" else {}))
        assert r.status_code == 401, (method, path)
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/train", headers={"Authorization": f"Bearer {TOKEN}"}).json()["jobs"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"preset": "tiny", "epochs": 201}, "epochs"),
        ({"preset": "tiny", "layers": [784, 5000, 10]}, "4096"),
        ({"preset": "tiny", "layers": [100, 10]}, "start with 784"),
        ({"preset": "tiny", "lr": -1}, "lr"),
        ({"preset": "huge"}, "preset"),
        ({"preset": "tiny", "optimizer": "lbfgs"}, "optimizer"),
        ({"preset": "tiny", "dropout": 0.5}, "dropout"),
        ({"preset": "tiny", "train_size": 60_000}, "at most 60000"),  # issue 22.4: was 202, then a failed job
        ({"preset": "tiny", "train_size": 58_000, "val_size": 5_000}, "at most 60000"),
        # issue 22.4: 4096-unit layers at full batch reached 4.4 GB in 20 s; the CNN at batch 59,000, 9.1 GB
        ({"preset": "default", "layers": [784, 4096, 4096, 4096, 10], "batch_size": 0}, "GB"),
        ({"preset": "cnn", "batch_size": 59_000, "augment_elastic": 2.0}, "a smaller batch_size"),
    ],
)
def test_out_of_bounds_settings_are_refused(client, admin, body, message):
    r = client.post("/train", json=body, headers=admin)
    assert r.status_code == 422 and message in json.dumps(r.json()["detail"])


def test_every_preset_fits_the_default_memory_bound(client):
    limit = client.app.state.services.settings.max_train_memory_bytes
    for name, config in PRESETS.items():
        assert config.memory_estimate() < limit / 4, name  # room to spare: the bound stops only outliers
    big = PRESETS["default"].replace(layers=[784, 4096, 4096, 10], batch_size=0)
    assert 10e9 < big.memory_estimate() < 14e9  # 59,000 x 3 x 16,394 float32 (dense and ReLU outputs), and more


def test_a_cancel_is_honoured_in_bounded_time_even_inside_one_long_step(make_client, settings, admin):
    """Issue 22, 4: a cancel was not honoured within 25 s because one step was longer. A full batch of a
    wide network takes about a minute a step here; the job must read cancelled within the grace."""
    client = make_client(settings.model_copy(update={
        "cancel_grace_s": 1.0, "heartbeat_s": 0.5, "max_train_memory_bytes": 8 * 1024**3,
    }))  # fmt: skip
    body = {"preset": "tiny", "layers": [784, 4096, 4096, 10], "batch_size": 0, "train_size": 20_000, "epochs": 2}
    before = versions(client)
    job = client.post("/train", json=body, headers=admin).json()
    running, _ = wait_for(client, job["id"], {"running", "failed"}, admin=admin)
    assert running["status"] == "running", running
    pid = client.app.state.services.jobs.get(job["id"]).pid
    # Into the first step, which takes 15-60 s here: "running" is set when the training process starts,
    # and its set-up (imports, MNIST, a 20M-weight network) took over 3 s once in CI, so a cancel sent
    # 2 s in was honoured before the first step, which is not what this test is about.
    time.sleep(6)
    asked = time.monotonic()
    assert client.post(f"/train/{job['id']}/cancel", headers=admin).status_code == 200
    done, _ = wait_for(client, job["id"], {"cancelled", "succeeded", "failed"}, timeout=30, admin=admin)
    took = time.monotonic() - asked
    assert done["status"] == "cancelled" and "inside a step" in done["error"], done
    assert took < 1.0 + 2 * 0.5 + 3, took  # the grace, a heartbeat or two, and slack
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, "the training process is still running"
        time.sleep(0.1)
    assert versions(client) == before


def test_a_job_past_the_memory_cap_fails_with_out_of_memory_and_the_site_serves_on(make_client, settings, admin):
    """Issue 22, 4: the estimate admits this job (1.1 GB, under the 4 GiB bound), but the training process
    may use only 400 MB: the kernel refuses the allocation, and the job fails with a message instead of
    the host running out of memory. The web workers are not capped."""
    client = make_client(settings.model_copy(update={"train_memory_cap_bytes": 400 * 1024**2}))
    body = {"preset": "tiny", "layers": [784, 4096, 4096, 10], "batch_size": 0, "train_size": 5_000, "epochs": 1}
    before = versions(client)
    job = client.post("/train", json=body, headers=admin)
    assert job.status_code == 202, job.text
    done, _ = wait_for(client, job.json()["id"], {"failed", "succeeded", "cancelled"}, timeout=60, admin=admin)
    assert done["status"] == "failed" and "out of memory" in done["error"] and "0.39 GiB" in done["error"], done
    assert versions(client) == before
    assert client.post("/predict", json={"pixels": STROKE}).json()["model_version"] == INITIAL_VERSION
    ok = client.post("/train", json=TINY, headers=admin).json()  # a job within the cap still trains
    assert wait_for(client, ok["id"], {"failed", "succeeded"}, admin=admin)[0]["status"] == "succeeded"


def test_a_killed_training_process_fails_and_registers_nothing(client, admin):
    before = versions(client)
    job = client.post("/train", json=SLOW, headers=admin).json()
    running = wait_running(client, job["id"], admin)
    row = client.app.state.services.jobs.get(job["id"])
    # One BLAS thread, from the environment the process started with (OpenBLAS reads it at load).
    raw = Path(f"/proc/{row.pid}/environ").read_bytes()
    environ = dict(v.split(b"=", 1) for v in raw.split(b"\0") if b"=" in v)
    assert environ[b"OPENBLAS_NUM_THREADS"] == b"1" and environ[b"OMP_NUM_THREADS"] == b"1"
    os.kill(row.pid, signal.SIGKILL)
    done, _ = wait_for(client, job["id"], {"failed", "succeeded", "cancelled"}, timeout=15)
    assert done["status"] == "failed" and "SIGKILL" in done["error"]
    assert running["progress"]["step"] > 0
    assert versions(client) == before
    assert client.post("/predict", json={"pixels": STROKE}).json()["model_version"] == INITIAL_VERSION


def test_restart_marks_running_jobs_interrupted(make_client, settings, admin):
    # A server that stops while its job runs: the job is told, and says 'interrupted'.
    c1 = make_client(settings)
    job = c1.post("/train", json=SLOW, headers=admin).json()
    wait_running(c1, job["id"], admin)
    c1.__exit__(None, None, None)
    store = JobStore(settings.runtime_dir / "jobs.sqlite")
    assert store.get(job["id"]).status == "interrupted"
    # A server and its worker that died without a word: the next start-up finds the orphan (its worker
    # has been silent for longer than the timeout).
    orphan = store.create("tiny", {}, "if_better")
    store.claim(worker_name(2**22 + 12345), pid=2**22 + 12345)  # no such process
    store.db.engine.dispose()
    with store.db.write() as conn:
        conn.execute(sa.text("UPDATE jobs SET heartbeat = heartbeat - :s"), {"s": settings.worker_timeout_s + 1})
    c2 = make_client(settings)
    j = c2.get(f"/train/{orphan.id}", headers=admin).json()
    assert j["status"] == "failed" and "stopped answering" in j["error"]
    assert c2.post("/train", json=TINY, headers=admin).status_code == 202


def test_promotion_gate_both_ways_and_rollback(client, admin):
    # Against the seed network (83.6%), one epoch of the quick preset wins and is promoted.
    assert client.post("/models/seed/activate", headers=admin).status_code == 200
    job = client.post("/train", json={"preset": "quick", "epochs": 1}, headers=admin).json()
    done, _ = wait_for(client, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded" and done["promoted"] is True
    assert done["result"]["compared_with"] == {"version": "seed", "test_accuracy": pytest.approx(0.8359, abs=1e-4)}
    assert client.get("/models").json()["active"] == done["version"]
    assert served_within(client, done["version"], seconds=1.0)
    # Against that, a tiny network loses and is not promoted...
    job = client.post("/train", json=TINY, headers=admin).json()
    lost, _ = wait_for(client, job["id"], {"succeeded", "failed"})
    assert lost["promoted"] is False and client.get("/models").json()["active"] == done["version"]
    # ...unless the request asks for it.
    job = client.post("/train", json={**TINY, "activate": "always"}, headers=admin).json()
    forced, _ = wait_for(client, job["id"], {"succeeded", "failed"})
    assert forced["promoted"] is True and client.get("/models").json()["active"] == forced["version"]
    # Rollback is activation of an earlier version.
    assert client.post("/models/default/activate", headers=admin).status_code == 200
    assert client.post("/predict", json={"pixels": STROKE}).json()["model_version"] == "default"


def _claimed_tiny_job(tmp_path):
    """A job store and registry on a fresh runtime folder, and a tiny job claimed as a worker would."""
    settings = Settings(runtime_dir=tmp_path / "var", admin_token="t")
    store = JobStore(settings.runtime_dir / "jobs.sqlite")
    registry = Registry(store.db, settings.runtime_dir, settings.weights_dir)
    registry.ensure()
    store.create("tiny", preset("tiny").as_dict(), "always")
    return store, registry, store.claim("test", os.getpid())


def test_a_failed_weights_write_registers_nothing(tmp_path, monkeypatch):
    store, registry, job = _claimed_tiny_job(tmp_path)
    real_savez = weights.np.savez

    def disk_full(f, **arrays):
        real_savez(f, **{k: v for k, v in list(arrays.items())[:1]})  # a partial write, then:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(weights.np, "savez", disk_full)
    assert run_job(job, store, registry, None, should_stop=lambda: False) == "failed"
    row = store.get(job.id)
    assert row.status == "failed" and "No space left on device" in row.error
    assert registry.versions() == ["cnn", "default", "seed"]
    assert list(registry.cache.iterdir()) == []  # no temp files: nothing was served here, so nothing cached
    assert registry.active_version() == INITIAL_VERSION


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 512 KiB tmpfs: room for a small model, not for a 784-256-10 one (800 KB)."""
    mountpoint = tmp_path / "cache"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_real_full_disk_fails_the_job_and_keeps_serving(tmp_path, tiny_filesystem, make_client, admin):
    weights_dir = tmp_path / "committed"
    weights_dir.mkdir()
    shutil.copy(Settings().weights_dir / "seed.npz", weights_dir / "default.npz")  # 38 KB: it fits
    runtime = tmp_path / "var"
    runtime.mkdir()
    (runtime / "cache").symlink_to(tiny_filesystem)  # where a new version's file is written first
    client = make_client(Settings(runtime_dir=runtime, weights_dir=weights_dir, admin_token=TOKEN))
    job = client.post("/train", json={**TINY, "layers": [784, 256, 10], "activate": "always"}, headers=admin).json()
    done, _ = wait_for(client, job["id"], {"succeeded", "failed"})
    assert done["status"] == "failed" and "No space left on device" in done["error"]
    registry = client.app.state.services.registry
    assert registry.versions() == ["default"]  # nothing registered
    served = registry.path("default").name
    assert sorted(p.name for p in tiny_filesystem.iterdir()) == sorted([served, "served"])  # no partial file
    assert client.get("/models").json()["active"] == "default"
    assert client.post("/predict", json={"pixels": STROKE}).json()["model_version"] == "default"


def test_a_cnn_job_trains_in_the_background_and_its_version_is_served(client, admin):
    """The `cnn` preset through the same service as any job: progress, a registered version whose card
    describes its layers, activation, answers from it. One short epoch on 1,000 images, no detector."""
    body = {"preset": "cnn", "epochs": 1, "train_size": 1000, "detector_epochs": 0, "activate": "always"}
    job = client.post("/train", json=body, headers=admin).json()
    assert job["config"]["layers"][0] == {"type": "conv", "filters": 16, "size": 5}
    done, seen = wait_for(client, job["id"], {"succeeded", "failed"}, timeout=240)
    assert done["status"] == "succeeded", done["error"]
    assert any(j["progress"] for j in seen) and done["promoted"] is True
    listed = next(v for v in client.get("/models").json()["versions"] if v["version"] == done["version"])
    assert listed["architecture"].startswith("16C5-P2-BN-64C5-P2-BN-") and listed["active"]
    assert listed["metadata"]["layers"] == job["config"]["layers"] and listed["metadata"]["calibration"]
    assert served_within(client, done["version"], 5)
    r = client.post("/predict", json={"pixels": STROKE})
    assert r.status_code == 200 and r.json()["model_version"] == done["version"]


def test_a_shutdown_signal_during_a_database_call_still_reads_interrupted(tmp_path, monkeypatch):
    # SIGTERM's handler raises Interrupted wherever the process is; raised while SQLAlchemy prepares a
    # statement (as seen in a CI run), it arrives wrapped in a StatementError.
    from app.services.training_job import Interrupted

    store, registry, job = _claimed_tiny_job(tmp_path)
    context = store.db.engine.dialect.execution_ctx_cls
    real_create_cursor = context.create_cursor
    fired = []

    def signal_arrives(self):
        statement = str(getattr(self, "compiled", None) or "")
        if statement.startswith("INSERT INTO progress") and not fired:
            fired.append(statement)  # a progress point, written while the job trains
            raise Interrupted("the server shut down while the job ran")
        return real_create_cursor(self)

    monkeypatch.setattr(context, "create_cursor", signal_arrives)
    assert run_job(job, store, registry, None, should_stop=lambda: False) == "interrupted"
    assert fired and store.get(job.id).status == "interrupted"
    assert registry.versions() == ["cnn", "default", "seed"]
