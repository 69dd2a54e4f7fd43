"""The registry over HTTP: listing, activation and rollback, admin auth, health, readiness, metrics."""

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import STROKE

from app.infra.settings import Settings
from app.services.registry import INITIAL_VERSION

ROOT = Path(__file__).resolve().parent.parent


def _digit(client, pixels):
    return client.post("/predict", json={"pixels": pixels}).json()


def test_models_lists_committed_versions_with_metadata(client):
    r = client.get("/models")
    assert r.status_code == 200
    body = r.json()
    assert body["active"] == INITIAL_VERSION == "cnn" and body["serving"] == INITIAL_VERSION
    versions = {v["version"]: v for v in body["versions"]}
    assert {"cnn", "default", "seed"} <= set(versions)
    assert versions["cnn"]["active"] and not versions["seed"]["active"] and not versions["default"]["active"]
    assert versions["seed"]["metadata"]["layers"] == [784, 10, 10] and versions["seed"]["architecture"] == "784-10-10"
    assert versions["default"]["metadata"]["test"]["accuracy"] >= 0.992
    assert versions["cnn"]["metadata"]["test"]["accuracy"] >= 0.996
    assert versions["cnn"]["architecture"] == "16C5-P2-BN-64C5-P2-BN-D0.3-256-BN-D0.3-10"


def test_activate_and_roll_back(client, admin, mnist_test):
    pixels = mnist_test.x[0].tolist()
    assert _digit(client, pixels)["model_version"] == INITIAL_VERSION
    r = client.post("/models/seed/activate", headers=admin)
    assert r.status_code == 200 and r.json()["version"] == "seed" and r.json()["active"]
    assert _digit(client, pixels)["model_version"] == "seed"
    assert client.get("/models").json()["active"] == "seed"
    r = client.post("/models/default/activate", headers=admin)
    assert r.status_code == 200 and r.json()["architecture"] == "784-1024-1024-10"
    assert _digit(client, pixels)["model_version"] == "default"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer "}],
)
def test_admin_routes_need_the_token(client, headers):
    r = client.post("/models/seed/activate", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "admin token" in r.json()["detail"]
    assert client.get("/models").json()["active"] == INITIAL_VERSION


def test_unknown_and_invalid_versions_are_404(client, admin):
    assert client.post("/models/nope/activate", headers=admin).status_code == 404
    assert client.post("/models/..%2Fetc/activate", headers=admin).status_code == 404


def test_corrupt_version_is_refused_and_never_served(client, admin, settings, caplog):
    registry = client.app.state.services.registry
    good = registry.path("default").read_bytes()
    registry.add("broken", good[: len(good) // 3])
    r = client.post("/models/broken/activate", headers=admin)
    assert r.status_code == 422 and "failed validation" in r.json()["detail"]
    assert client.get("/models").json()["active"] == INITIAL_VERSION
    # Even an active row edited by hand to a bad version leaves the served model in place.
    with registry.db.write() as conn:
        conn.execute(sa.text("UPDATE active_model SET version = 'broken'"))
    holder = client.app.state.services.holder
    with caplog.at_level(logging.ERROR, logger="digits.serving"):
        assert holder.refresh() is False
    assert holder.current.version == INITIAL_VERSION
    assert any("refused to load" in rec.getMessage() for rec in caplog.records)
    assert client.post("/predict", json={"pixels": STROKE}).json()["model_version"] == INITIAL_VERSION


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["model_version"] == INITIAL_VERSION


def test_not_ready_without_a_valid_model(make_client, tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    client = make_client(Settings(runtime_dir=tmp_path / "var", weights_dir=empty, admin_token="t"))
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "no model loaded"
    r = client.post("/predict", json={"pixels": STROKE})
    assert r.status_code == 503 and "no valid model" in r.json()["detail"]


def test_metrics_count_requests_predictions_and_the_active_version(client, mnist_test):
    for i in range(3):
        client.post("/predict", json={"pixels": mnist_test.x[i].tolist()})
    client.post("/predict", json={"pixels": [1]})
    text = client.get("/metrics").text
    ok = re.search(r'digits_http_requests_total\{method="POST",route="/predict",status="200"\} (\d+)', text)
    bad = re.search(r'digits_http_requests_total\{method="POST",route="/predict",status="422"\} (\d+)', text)
    assert ok and int(float(ok.group(1))) >= 3 and bad
    assert 'digits_http_request_duration_seconds_bucket{le="0.1",method="POST",route="/predict",status="200"}' in text
    assert re.search(r'digits_predictions_total\{digit="7"\} [1-9]', text)
    assert re.search(r'digits_active_model_info\{version="cnn"\} 1', text)


def test_generated_admin_token_is_shared_and_never_a_default(make_client, tmp_path, caplog):
    s = Settings(runtime_dir=tmp_path / "var", admin_token=None)
    with caplog.at_level(logging.WARNING, logger="digits.auth"):
        c1 = make_client(s)
        c2 = make_client(s)  # a second worker on the same runtime folder
    logged = [r for r in caplog.records if "generated an admin token" in r.getMessage()]
    assert len(logged) == 1  # logged once, by the process that made it
    token = logged[0].admin_token
    assert len(token) >= 24
    for c in (c1, c2):
        assert c.post("/models/seed/activate", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.post("/models/seed/activate").status_code == 401
    other = tmp_path / "other"
    with caplog.at_level(logging.WARNING, logger="digits.auth"):
        c3 = make_client(Settings(runtime_dir=other, admin_token=None))
    token3 = [r for r in caplog.records if "generated an admin token" in r.getMessage()][-1].admin_token
    assert token3 != token  # random, not built in
    assert c3.post("/models/seed/activate", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_logs_are_json_lines_with_fields():
    from app.infra.logs import JsonFormatter

    fmt = JsonFormatter()
    record = logging.LogRecord("digits.serving", logging.ERROR, __file__, 1, "refused %s", ("x",), None)
    record.version = "broken"
    entry = json.loads(fmt.format(record))
    assert entry["msg"] == "refused x" and entry["level"] == "error" and entry["version"] == "broken"
    access = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", "/predict", "1.1", 200),
        None,
    )
    entry = json.loads(fmt.format(access))
    assert entry["method"] == "POST" and entry["path"] == "/predict" and entry["status"] == 200


def test_a_model_expecting_other_input_is_never_served(client, admin, tmp_path):
    from model import weights as weights_io
    from model.spec import INPUT_SPEC

    registry = client.app.state.services.registry
    net, card = weights_io.load(registry.path("seed"))
    card = card.replace(input_normalisation=dataclasses.replace(INPUT_SPEC, preprocess="resize-whole-canvas"))
    registry.add("other", weights_io.save(tmp_path / "other.npz", net, card).read_bytes())
    r = client.post("/models/other/activate", headers=admin)
    assert r.status_code == 422 and "resize-whole-canvas" in r.json()["detail"]
    assert client.get("/models").json()["active"] == INITIAL_VERSION


def test_changed_committed_weights_are_reported_not_swapped_in(tmp_path, make_client, caplog):
    seed_dir = tmp_path / "weights"
    seed_dir.mkdir()
    shutil.copy(Settings().weights_dir / "seed.npz", seed_dir / "default.npz")
    s = Settings(runtime_dir=tmp_path / "var", weights_dir=seed_dir, admin_token="t")
    registered = make_client(s).app.state.services.registry.path("default").read_bytes()
    shutil.copy(Settings().weights_dir / "default.npz", seed_dir / "default.npz")
    with caplog.at_level(logging.WARNING, logger="digits.registry"):
        again = make_client(s)
    assert again.app.state.services.registry.path("default").read_bytes() == registered
    assert any("committed weights differ" in r.getMessage() for r in caplog.records)


def test_promotion_policy():
    from app.services.registry import Promotion, promotion
    from model.card import ModelCard
    from model.evaluation import Evaluation

    def card(acc):
        return ModelCard([784, 10, 10], test=Evaluation(acc, [acc] * 10, [[0] * 10] * 10, 10) if acc else None)

    assert promotion(card(0.99), "old", card(0.98), "if_better").promote
    assert promotion(card(0.9791), "old", card(0.98), "if_better").promote  # within 0.1 point on MNIST
    assert not promotion(card(0.9789), "old", card(0.98), "if_better").promote  # past it
    assert promotion(card(0.5), "old", card(0.98), "always") == Promotion(True, "old", 0.98)
    assert promotion(card(0.5), None, None, "if_better").promote  # nothing active yet
    assert promotion(card(0.5), "old", card(None), "if_better").promote  # the active one does not say
    # The real-drawing holdout counts from 50 drawings: no worse there, or no promotion.
    worse_on_drawings = promotion(card(0.99), "old", card(0.98), "if_better", holdout=(50, 0.90, 0.92))
    assert not worse_on_drawings.promote and worse_on_drawings.holdout == {"n": 50, "candidate": 0.9, "active": 0.92}
    assert promotion(card(0.99), "old", card(0.98), "if_better", holdout=(49, 0.90, 0.92)).promote  # too few yet
    assert promotion(card(0.98), "old", card(0.98), "if_better", holdout=(80, 0.95, 0.92)).promote


def test_admin_form_offers_what_the_api_accepts(client):
    from app.api.schemas import MAX_EPOCHS
    from model.config import MAX_SHIFT, PRESETS
    from model.optimizers import OPTIMIZERS, SCHEDULES

    page = client.get("/admin").text
    for name in (*OPTIMIZERS, *SCHEDULES):
        assert f"<option>{name}</option>" in page
    for name in PRESETS:
        assert f'<option value="{name}"' in page
    assert f'name="augment_shift" type="number" min="0" max="{MAX_SHIFT}"' in page
    assert f'name="epochs" type="number" min="1" max="{MAX_EPOCHS}"' in page
    assert 'data-active-states="queued,running"' in page


def test_metrics_folder_follows_the_settings_given_to_create_app(tmp_path):
    """Without PROMETHEUS_MULTIPROC_DIR, the app keeps its metrics in the folder of the runtime folder it
    is given (in shared memory, off the data disk: issue 22, 1), not of the one the environment names."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["DIGITS_RUNTIME_DIR"] = str(tmp_path / "from-env")
    code = (
        "from fastapi.testclient import TestClient\n"
        "from app.infra.settings import Settings\n"
        "from app.main import create_app\n"
        f"with TestClient(create_app(Settings(runtime_dir={str(tmp_path / 'given')!r}))) as c:\n"
        "    c.post('/predict', json={'pixels': [0] * 300 + [255] * 20 + [0] * 464})\n"
        "    assert 'digits_predictions_total' in c.get('/metrics').text\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    from app.infra.prometheus import default_folder

    given, from_env = default_folder(tmp_path / "given"), default_folder(tmp_path / "from-env")
    assert given != from_env and str(given).startswith("/dev/shm/")  # this machine has shared memory
    try:
        assert any(given.glob("*.db"))
        assert not from_env.exists()
    finally:
        shutil.rmtree(given, ignore_errors=True)
