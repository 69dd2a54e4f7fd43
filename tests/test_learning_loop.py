"""The loop closed (issue 10): corrections sent, reviewed, learnt from, measured on real drawings.

A small version of bench/bench_feedback.py: the `quick` preset trained without and with 150 accepted
corrections of a way of writing MNIST lacks, measured on other drawings of that way.
"""

import base64

import numpy as np
import pytest
from test_training_service import wait_for
from unusual_drawings import unusual_set

from model import weights
from model.images import normalise_bytes

pytestmark = pytest.mark.slow


def _send(client, drawings, label_of=lambda d: d.label) -> list[str]:
    ids = []
    for d in drawings:
        r = client.post("/feedback", json={"image": "data:image/png;base64," + base64.b64encode(d.png).decode(),
                                           "label": label_of(d)})  # fmt: skip
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def _accuracy(registry, version: str, drawings) -> float:
    net, _ = weights.load(registry.path(version))
    x = np.stack([normalise_bytes(d.png).reshape(-1) for d in drawings])
    return float((net.predict(x) == np.array([d.label for d in drawings])).mean())


def test_accepted_corrections_teach_a_new_way_of_writing(make_client, settings, admin):
    client = make_client(settings.model_copy(update={"feedback_rate": "100000/minute"}))
    accepted = _send(client, list(unusual_set(210, seed=1)))
    client.post("/feedback/review", json={"ids": accepted, "action": "accept"}, headers=admin)
    # Wrong labels that nobody accepted, and some an admin rejected: none of them may reach training.
    pending = _send(client, list(unusual_set(60, seed=2)), label_of=lambda d: (d.label + 5) % 10)
    rejected = _send(client, list(unusual_set(60, seed=3)), label_of=lambda d: (d.label + 3) % 10)
    client.post("/feedback/review", json={"ids": rejected, "action": "reject"}, headers=admin)
    assert len(pending) == 60

    runs = {}
    for feedback in ("exclude", "include"):
        body = {"preset": "quick", "epochs": 3, "feedback": feedback, "feedback_weight": 10, "activate": "always"}
        job = client.post("/train", json=body, headers=admin).json()
        done, _ = wait_for(client, job["id"], {"succeeded", "failed"}, timeout=300)
        assert done["status"] == "succeeded", done
        runs[feedback] = done

    listed = client.get("/feedback", params={"status": "accepted", "limit": 500}, headers=admin).json()["items"]
    pool = [it for it in listed if not it["holdout"]]
    used = runs["include"]["result"]["corrections"]
    assert used["n"] == len(pool) and used["weight"] == 10  # the accepted pool, never pending or rejected items
    assert runs["exclude"]["result"]["corrections"] is None
    held_out = 210 - len(pool)
    assert 50 <= held_out <= 80  # about a third, and enough for the promotion gate to count it

    other = list(unusual_set(150, seed=4))  # drawn in the same ways, never sent
    before = _accuracy(client.app.state.services.registry, runs["exclude"]["version"], other)
    after = _accuracy(client.app.state.services.registry, runs["include"]["version"], other)
    print(f"\nunusual drawings: {before:.1%} without corrections, {after:.1%} with them")
    assert after > before and after >= 0.9
    assert runs["include"]["result"]["test_accuracy"] >= 0.97  # MNIST stays where the quick preset is

    # Both versions carry a score on the real-drawing holdout, shown in /models.
    scores = {v["version"]: v["holdout"] for v in client.get("/models").json()["versions"]}
    for run in runs.values():
        assert scores[run["version"]]["n"] == 210 - len(pool)
    gate = runs["include"]["result"]["holdout"]  # the gate looked at it: no worse on real drawings
    assert gate["n"] == held_out and gate["candidate"] >= gate["active"]


def test_a_fine_tune_learns_the_corrections_from_the_active_version(make_client, settings, admin):
    client = make_client(settings.model_copy(update={"feedback_rate": "100000/minute"}))
    registry = client.app.state.services.registry
    parent = registry.active_version()
    body = {"preset": "finetune", "replay": 1000, "tuned_share": 1, "activate": "always"}
    refused = client.post("/train", json=body, headers=admin)
    assert refused.status_code == 422 and "no accepted corrections" in refused.json()["detail"]

    accepted = _send(client, list(unusual_set(210, seed=1)))
    client.post("/feedback/review", json={"ids": accepted, "action": "accept"}, headers=admin)
    assert client.post("/train", json={**body, "start_from": "nope"}, headers=admin).status_code == 404
    wrong = client.post("/train", json={"preset": "quick", "start_from": parent}, headers=admin)
    assert wrong.status_code == 422 and "finetune" in wrong.json()["detail"]

    job = client.post("/train", json=body, headers=admin).json()
    assert job["config"]["parent"] == parent and job["config"]["layers"] == registry.card(parent).layers
    done, _ = wait_for(client, job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "succeeded", done
    assert done["progress"]["step"] == done["progress"]["total_steps"] <= 60  # a bounded job, reported
    card = registry.card(done["version"])
    assert card.parent == parent and card.training.config["replay"] == 1000
    assert card.corrections["n"] == done["result"]["corrections"]["n"] > 100  # the pool, weighted 3 times
    assert card.detector.kept_from == parent and card.calibration is not None
    assert registry.active_version() == done["version"]

    other = list(unusual_set(150, seed=4))  # drawn in the same ways, never sent
    before, after = _accuracy(registry, parent, other), _accuracy(registry, done["version"], other)
    print(f"\nfine-tune: unusual drawings {before:.1%} -> {after:.1%}, MNIST test {card.test_accuracy:.4f}")
    assert after >= max(before + 0.03, 0.98)
    assert card.test_accuracy >= registry.card(parent).test_accuracy - 0.003
