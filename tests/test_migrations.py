"""Schema migrations: a database made by the previous release upgrades in place, data kept."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import sqlalchemy as sa
from conftest import TOKEN
from servers import ROOT

from app.infra.db import Db

ADMIN = {"Authorization": f"Bearer {TOKEN}"}

# The SQLite schema release 0.1 made (before Alembic), as its stores created it.
RELEASE_0_1 = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, preset TEXT NOT NULL, config TEXT NOT NULL, activate TEXT NOT NULL,
    created REAL NOT NULL, started REAL, finished REAL, pid INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress TEXT, error TEXT, version TEXT, promoted INTEGER, result TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_job ON jobs ((status IN ('queued', 'running')))
    WHERE status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS progress (
    job_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, created REAL NOT NULL, client TEXT NOT NULL,
    label INTEGER NOT NULL, status TEXT NOT NULL, model_version TEXT NOT NULL, predicted INTEGER NOT NULL,
    probabilities TEXT NOT NULL, claimed_version TEXT, claimed_digit INTEGER, media_type TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0, original BLOB NOT NULL, input_png BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_status ON feedback (status, created);
CREATE TABLE IF NOT EXISTS holdout_scores (
    version TEXT NOT NULL, checksum TEXT NOT NULL, n INTEGER NOT NULL, accuracy REAL NOT NULL,
    per_class TEXT NOT NULL, evaluated REAL NOT NULL, PRIMARY KEY (version, checksum)
);
"""


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (28, 28), 0).save(buf, "PNG")
    return buf.getvalue()


def test_a_release_0_1_sqlite_database_upgrades_in_place(make_client, settings):
    settings.runtime_dir.mkdir(parents=True)
    old = sqlite3.connect(settings.runtime_dir / "jobs.sqlite")
    old.executescript(RELEASE_0_1)
    now = time.time()
    old.execute(
        "INSERT INTO jobs (id, status, preset, config, activate, created, started, finished, version, promoted, result)"
        " VALUES ('oldjob', 'succeeded', 'tiny', '{}', 'if_better', ?, ?, ?, 'v-old', 0, ?)",
        (now - 60, now - 59, now - 50, json.dumps({"test_accuracy": 0.9})),
    )
    old.execute("INSERT INTO progress VALUES ('oldjob', 1, ?)", (json.dumps({"epoch": 1, "step": 1, "seq": 1}),))
    old.execute(
        "INSERT INTO feedback (id, sha256, created, client, label, status, model_version, predicted, probabilities,"
        " media_type, bytes, original, input_png) VALUES ('fb1', 'abc', ?, 'c', 3, 'pending', 'default', 5, ?,"
        " 'image/png', 3, x'010203', ?)",
        (now, json.dumps([0.1] * 10), _png()),
    )
    old.commit()
    old.close()

    client = make_client(settings)  # start-up migrates
    assert Db(f"sqlite:///{settings.runtime_dir / 'jobs.sqlite'}").revision() == "0004"
    job = client.get("/train/oldjob", headers=ADMIN).json()
    assert job["status"] == "succeeded" and job["version"] == "v-old" and job["worker"] is None
    assert job["result"]["test_accuracy"] == 0.9
    items = client.get("/feedback", headers=ADMIN).json()["items"]
    assert [(it["id"], it["label"], it["predicted"]) for it in items] == [("fb1", 3, 5)]
    # The partial unique index of release 0.1 still holds: one active job at a time.
    assert client.post("/train", json={"preset": "tiny", "epochs": 50}, headers=ADMIN).status_code == 202
    assert client.post("/train", json={"preset": "tiny"}, headers=ADMIN).status_code == 409
    engine = sa.create_engine(f"sqlite:///{settings.runtime_dir}/jobs.sqlite")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("jobs")}
    assert {"worker", "heartbeat", "progress", "result"} <= columns
    indexes = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("feedback")}
    assert indexes["feedback_by_client"] == ["client", "status"]  # 0003: each client's quota, counted fast
    assert indexes["feedback_queue"][0] == "created"  # 0004: the review queue paged from an index
    assert indexes["feedback_bytes"] == ["bytes"]  # and the store's size summed from one
    with engine.connect() as conn:  # 0004 filled in the confidence of the rows it found: probabilities[predicted]
        assert conn.execute(sa.text("SELECT confidence FROM feedback WHERE id = 'fb1'")).scalar() == 0.1


def test_digits_db_upgrade_on_sqlite_then_start(tmp_path):
    env = {"DIGITS_RUNTIME_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "digits", "db", *a], env=env, cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert run("current").startswith("schema: none (sqlite:///")
    assert run("upgrade").startswith("schema: none -> 0004")
    assert run("current").startswith("schema: 0004 (")


def test_a_postgres_database_at_0001_upgrades_in_place(pg_url):
    db = Db(pg_url)
    db.upgrade("0001")
    assert db.revision() == "0001"
    with db.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO jobs (id, status, preset, config, activate, created)"
            " VALUES ('j1', 'queued', 'tiny', '{}', 'if_better', 1)"
        ))  # fmt: skip
    db.upgrade()
    assert db.revision() == "0004"
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, worker, heartbeat FROM jobs")).all() == [("j1", None, None)]
        assert conn.execute(sa.text("SELECT count(*) FROM model_versions")).scalar() == 0


def test_a_runtime_folder_of_files_from_before_is_adopted(make_client, tmp_path, caplog):
    """The previous release kept the registry as files (`models/<version>.npz`, the `active` pointer) and
    the generated admin token and the clients' salt as files; a server of this release takes them into
    the database once: the same version is served, the old token still works, the same client hashes."""
    import logging
    import shutil

    from app.infra.settings import Settings
    from model.paths import WEIGHTS_DIR

    runtime = tmp_path / "var"
    (runtime / "models").mkdir(parents=True)
    for name in ("cnn", "default", "seed"):
        shutil.copy(WEIGHTS_DIR / f"{name}.npz", runtime / "models" / f"{name}.npz")
    shutil.copy(WEIGHTS_DIR / "seed.npz", runtime / "models" / "20261101-120000-abcdef.npz")  # one it trained
    (runtime / "active").write_text("20261101-120000-abcdef\n")
    (runtime / "admin_token").write_text("a-token-the-old-server-generated\n")
    (runtime / "feedback_salt").write_bytes(b"s" * 32)
    with caplog.at_level(logging.WARNING, logger="digits.auth"):
        client = make_client(Settings(runtime_dir=runtime, admin_token=None))
    assert not [r for r in caplog.records if "generated an admin token" in r.getMessage()]
    models = client.get("/models").json()
    assert models["active"] == models["serving"] == "20261101-120000-abcdef"
    assert {v["version"] for v in models["versions"]} == {"cnn", "default", "seed", "20261101-120000-abcdef"}
    old = {"Authorization": "Bearer a-token-the-old-server-generated"}
    assert client.post("/models/cnn/activate", headers=old).status_code == 200
    import hashlib

    assert (
        client.app.state.services.feedback.client_id("1.2.3.4")
        == hashlib.sha256(b"s" * 32 + b"1.2.3.4").hexdigest()[:16]
    )
