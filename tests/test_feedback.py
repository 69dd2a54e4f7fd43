"""POST /feedback: corrections stored safely, once, with limits (issue 10, part 2)."""

import base64
import hashlib
import io
import secrets
import sqlite3
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import TOKEN
from hostile import save, seven
from PIL import Image, PngImagePlugin

from app.infra.db import Busy, open_db
from app.infra.settings import Settings
from app.services.feedback_review import Review, in_holdout
from app.services.feedback_store import FeedbackStatus


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


SEVEN = save(seven(128))


def test_a_correction_is_stored_with_the_servers_own_reading(client, settings):
    r = client.post(
        "/feedback", json={"image": _data_url(SEVEN), "label": 1, "model_version": "default", "predicted": 7}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["duplicate"] is False and body["predicted"] == 7
    db = sqlite3.connect(settings.runtime_dir / "jobs.sqlite")
    query = "SELECT label, predicted, original, client, claimed_digit, media_type, sha256 FROM feedback"
    label, predicted, original, client_id, claimed, media, digest = db.execute(query).fetchone()
    assert (label, predicted, claimed, media) == (1, 7, 7, "image/png")
    assert digest == hashlib.sha256(SEVEN).hexdigest()  # the key: the image as sent
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(original))), np.asarray(Image.open(io.BytesIO(SEVEN))))
    assert client_id != "testclient" and len(client_id) == 16  # a salted hash, never the address


def test_a_correction_sent_while_another_writer_holds_the_database_waits_for_it(client, settings):
    """A canvas-sized correction is stored at once on the event loop when the write lock is free, and
    waits off the loop when it is not (issue 24): held by another process here, it is stored once the
    lock is let go, never refused or lost."""
    other = sqlite3.connect(settings.runtime_dir / "jobs.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the write lock, as a training job's progress or another worker holds it
    releaser = threading.Timer(0.5, other.execute, ("COMMIT",))
    releaser.start()
    started = time.monotonic()
    r = client.post("/feedback", json={"image": _data_url(SEVEN), "label": 1})
    waited = time.monotonic() - started
    releaser.join()
    assert r.status_code == 201, r.text
    assert waited >= 0.45  # it waited for the lock rather than failing at once
    assert other.execute("SELECT count(*) FROM feedback WHERE id = ?", (r.json()["id"],)).fetchone() == (1,)
    r = client.post("/feedback", json={"image": _data_url(save(seven(140))), "label": 1})  # the lock free again
    assert r.status_code == 201, r.text


def test_a_write_that_would_not_wait_is_busy_and_the_next_one_waits_again(tmp_path):
    db = open_db(tmp_path / "db.sqlite")
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(Busy), db.write(lock="feedback", wait=False) as conn:
        conn.execute(sa.text("SELECT 1"))
    assert time.monotonic() - started < 1  # at once, not after the 10 s wait
    releaser = threading.Timer(0.3, other.execute, ("COMMIT",))
    releaser.start()
    with db.write(lock="feedback") as conn:  # the same pooled connection waits again
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    releaser.join()
    with pytest.raises(ValueError), db.write(wait=False):
        pass


def test_what_is_kept_is_the_pixels_not_a_senders_added_chunks(client, settings):
    """Issue 22, 3: a digit PNG carrying a 3.5 MB junk chunk was stored byte for byte (one address could
    fill the 2 GiB cap in minutes). What is kept is the image re-encoded: same pixels, none of the rest."""
    info = PngImagePlugin.PngInfo()
    info.add(b"juNk", secrets.token_bytes(3_500_000))
    info.add_text("Comment", "x" * 100_000)
    padded = save(seven(128), pnginfo=info)
    assert len(padded) > 3_500_000
    r = client.post("/feedback", files={"file": ("7.png", padded, "image/png")}, data={"label": "7"})
    assert r.status_code == 201, r.text
    db = sqlite3.connect(settings.runtime_dir / "jobs.sqlite")
    original, size, digest = db.execute("SELECT original, bytes, sha256 FROM feedback").fetchone()
    assert size == len(original) < 5_000
    kept = Image.open(io.BytesIO(original))
    assert kept.info.get("Comment") is None and np.array_equal(np.asarray(kept), np.asarray(seven(128)))
    assert digest == hashlib.sha256(padded).hexdigest()
    again = client.post("/feedback", files={"file": ("7.png", padded, "image/png")}, data={"label": "7"})
    assert again.json()["duplicate"] is True  # the same upload is still one item
    photo = save(seven(900).convert("RGB"), "JPEG", quality=95, exif=Image.Exif())
    r = client.post("/feedback", files={"file": ("7.jpg", photo, "image/jpeg")}, data={"label": "7"})
    assert r.status_code == 201
    media, size = db.execute("SELECT media_type, bytes FROM feedback ORDER BY created DESC").fetchone()
    assert media == "image/jpeg" and size < len(photo)


def test_each_client_has_a_quota_of_corrections_waiting_for_review(make_client, settings, admin):
    client = make_client(settings.model_copy(update={"feedback_pending_per_client": 3}))
    sent = [client.post("/feedback", json={"image": _data_url(save(seven(60 + i))), "label": 7}) for i in range(4)]
    assert [r.status_code for r in sent] == [201, 201, 201, 429]
    assert "waiting for review" in sent[-1].json()["detail"]
    ids = [r.json()["id"] for r in sent[:3]]
    assert client.post("/feedback/review", json={"ids": ids[:1], "action": "accept"}, headers=admin).status_code == 200
    again = client.post("/feedback", json={"image": _data_url(save(seven(70))), "label": 7})
    assert again.status_code == 201  # one reviewed: room for one more


def test_the_same_image_is_kept_once(client):
    first = client.post("/feedback", json={"image": _data_url(SEVEN), "label": 7}).json()
    again = client.post("/feedback", files={"file": ("7.png", SEVEN, "image/png")}, data={"label": "7"}).json()
    assert again["duplicate"] is True and again["id"] == first["id"]


def test_re_posting_an_image_does_not_tell_how_it_was_reviewed(client, admin):
    """Anyone holding an image could learn whether an admin accepted or rejected it."""
    first = client.post("/feedback", json={"image": _data_url(SEVEN), "label": 7}).json()
    for action in ("accept", "reject"):
        client.post("/feedback/review", json={"ids": [first["id"]], "action": action}, headers=admin)
        again = client.post("/feedback", json={"image": _data_url(SEVEN), "label": 7})
        assert again.status_code == 201
        assert set(again.json()) == set(first) and "status" not in again.json()
        assert "accept" not in again.text and "reject" not in again.text


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"json": {"image": _data_url(b"not a png"), "label": 3}}, 400),
        ({"json": {"image": "%%%", "label": 3}}, 400),
        ({"json": {"image": _data_url(SEVEN), "label": 10}}, 422),
        ({"json": {"image": _data_url(SEVEN)}}, 422),
        ({"json": {"label": 3}}, 422),
        ({"json": {"image": _data_url(save(seven(64, ink=255))), "label": 3}}, 422),  # blank
        ({"content": b"x", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"json": {"image": "data:text/plain;base64,aGVsbG8=", "label": 3}}, 415),
        ({"files": {"file": ("a.png", SEVEN, "image/png")}, "data": {"label": "seven"}}, 422),
    ],
    ids=[
        "undecodable",
        "bad base64",
        "label 10",
        "no label",
        "no image",
        "blank",
        "text/plain",
        "data URL text",
        "label word",
    ],
)
def test_bad_corrections_get_a_clear_4xx(client, request_kwargs, status):
    r = client.post("/feedback", **request_kwargs)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str)


def test_too_many_corrections_get_429_with_retry_after(make_client, settings):
    client = make_client(settings.model_copy(update={"feedback_rate": "3/minute"}))
    codes = [client.post("/feedback", json={"image": _data_url(save(seven(60 + i))), "label": 7}) for i in range(4)]
    assert [r.status_code for r in codes] == [201, 201, 201, 429]
    assert 1 <= int(codes[-1].headers["Retry-After"]) <= 60
    assert client.post("/predict", json={"image": _data_url(SEVEN)}).status_code == 200  # predictions are not limited


def test_a_full_store_refuses_with_503_and_predictions_go_on(make_client, tmp_path):
    client = make_client(Settings(runtime_dir=tmp_path / "var", admin_token=TOKEN, max_feedback_items=2))
    codes = [
        client.post("/feedback", json={"image": _data_url(save(seven(60 + i))), "label": 7}).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 503]
    assert client.post("/predict", json={"image": _data_url(SEVEN)}).json()["digit"] == 7


def test_a_store_full_of_bytes_refuses_with_503(make_client, tmp_path):
    client = make_client(Settings(runtime_dir=tmp_path / "var", admin_token=TOKEN, max_feedback_bytes=500))
    images = [save(seven(60 + i)) for i in range(3)]
    assert sum(len(i) for i in images[:2]) <= 500 < sum(len(i) for i in images)
    codes = [client.post("/feedback", json={"image": _data_url(image), "label": 7}).status_code for image in images]
    assert codes == [201, 201, 503]


def _send(client, n: int, label: int = 7, start: int = 40) -> list[str]:
    return [client.post("/feedback", json={"image": _data_url(save(seven(start + i))), "label": label}).json()["id"]
            for i in range(n)]  # fmt: skip


def test_review_lists_filters_and_changes_corrections(client, admin):
    ids = _send(client, 4)
    assert client.get("/feedback").status_code == 401
    listing = client.get("/feedback", headers=admin).json()
    assert listing["total"] == 4 and {it["id"] for it in listing["items"]} == set(ids)
    assert all(it["status"] == "pending" and len(it["client"]) == 16 for it in listing["items"])
    r = client.post("/feedback/review", json={"ids": ids[:2], "action": "accept"}, headers=admin)
    assert r.json() == {"changed": 2}
    client.post("/feedback/review", json={"ids": [ids[2]], "action": "relabel", "label": 1}, headers=admin)
    client.post("/feedback/review", json={"ids": [ids[3]], "action": "reject"}, headers=admin)
    accepted = client.get("/feedback", params={"status": "accepted"}, headers=admin).json()
    assert accepted["total"] == 3 and {it["label"] for it in accepted["items"]} == {7, 1}
    assert client.get("/feedback", params={"disagree": True}, headers=admin).json()["total"] == 1  # the relabelled
    bad = client.post("/feedback/review", json={"ids": ids, "action": "relabel"}, headers=admin)
    assert bad.status_code == 422


def test_suspicious_corrections_come_first(client, admin):
    calm = _send(client, 1, label=7)
    odd = _send(client, 1, label=3, start=90)  # the model is sure it is a 7
    items = client.get("/feedback", headers=admin).json()["items"]
    assert [it["id"] for it in items] == odd + calm
    assert items[0]["suspicious"] and "sure of 7" in items[0]["reasons"][0] and not items[1]["suspicious"]


def test_the_queue_is_sorted_and_paged_by_the_database(client, admin):
    calm = _send(client, 6, label=7)
    odd = _send(client, 3, label=3, start=90)  # the model is sure these are 7s
    whole = client.get("/feedback", params={"limit": 100}, headers=admin).json()
    assert [it["id"] for it in whole["items"]] == odd[::-1] + calm[::-1]  # suspicious first, then the newest
    pages = [client.get("/feedback", params={"limit": 2, "offset": k}, headers=admin).json() for k in range(0, 10, 2)]
    assert all(p["total"] == 9 for p in pages)
    assert [it["id"] for p in pages for it in p["items"]] == [it["id"] for it in whole["items"]]
    assert [it["suspicious"] for it in whole["items"]] == [True] * 3 + [False] * 6
    only = client.get("/feedback", params={"label": 3, "limit": 1, "offset": 1}, headers=admin).json()
    assert only["total"] == 3 and [it["id"] for it in only["items"]] == [odd[1]]


def test_a_client_sending_a_burst_has_all_its_items_flagged(client, admin):
    ids = _send(client, 19, label=7)
    assert not any(it["suspicious"] for it in client.get("/feedback", headers=admin).json()["items"])
    ids += _send(client, 1, label=7, start=70)  # the 20th within 10 minutes
    items = client.get("/feedback", params={"limit": 5, "offset": 15}, headers=admin).json()["items"]
    assert [it["id"] for it in items] == ids[::-1][15:]
    assert all(it["suspicious"] and "20 or more items in 10 minutes" in it["reasons"][0] for it in items)


def test_the_export_is_written_in_pieces_of_bounded_size_and_holds_the_accepted_set(client, admin):
    review = Review(client.app.state.services.feedback)
    rng = np.random.default_rng(0)
    x = (rng.random((2500, 28, 28)) < 0.2).astype(np.uint8) * 255
    review.import_items(x, rng.integers(0, 10, 2500), None, FeedbackStatus.ACCEPTED, "import")
    pieces = list(review.export_chunks(rows_per_chunk=1000))
    assert len(pieces) == 4 and max(len(p) for p in pieces) < 1000 * 784 + 4096  # never the whole file at once
    r = client.get("/feedback/export", headers=admin)
    assert r.status_code == 200 and "content-length" not in r.headers  # streamed
    assert r.content == b"".join(pieces)
    expected_x, expected_y, digests = review.accepted()
    with np.load(io.BytesIO(r.content), allow_pickle=False) as npz:
        assert np.array_equal(npz["x"], expected_x) and np.array_equal(npz["y"], expected_y)
        assert list(npz["sha256"]) == digests and npz["holdout"].sum() == sum(in_holdout(d) for d in digests)


def test_delete_one_or_a_whole_client_and_export(client, admin):
    ids = _send(client, 3)
    assert client.delete(f"/feedback/{ids[0]}", headers=admin).json() == {"changed": 1}
    assert client.delete(f"/feedback/{ids[0]}", headers=admin).status_code == 404
    client.post("/feedback/review", json={"ids": ids[1:], "action": "accept"}, headers=admin)
    r = client.get("/feedback/export", headers=admin)
    assert r.status_code == 200
    with np.load(io.BytesIO(r.content), allow_pickle=False) as npz:
        assert npz["x"].shape == (2, 28, 28) and npz["x"].dtype == np.uint8 and list(npz["y"]) == [7, 7]
        assert "holdout" in str(npz["README"]) and npz["holdout"].dtype == bool
    who = client.get("/feedback", headers=admin).json()["items"][0]["client"]
    assert client.delete("/feedback", params={"client": who}, headers=admin).json() == {"changed": 2}
    assert client.get("/feedback", headers=admin).json()["total"] == 0


def test_cli_exports_imports_and_evaluates_on_the_holdout(client, admin, settings, tmp_path, capsys):
    import json

    from digits.cli import main as cli

    ids = _send(client, 12)
    client.post("/feedback/review", json={"ids": ids, "action": "accept"}, headers=admin)
    held = sum(it["holdout"] for it in client.get("/feedback", headers=admin).json()["items"])
    out = tmp_path / "corrections.npz"
    assert cli(["feedback", "export", str(out), "--runtime-dir", str(settings.runtime_dir)]) == 0
    with np.load(out, allow_pickle=False) as npz:
        assert "SHA-256" in str(npz["README"]) and len(npz["x"]) == 12
    other = tmp_path / "other-var"
    assert cli(["feedback", "import", str(out), "--runtime-dir", str(other)]) == 0
    assert "imported 12 corrections as accepted" in capsys.readouterr().out
    assert cli(["feedback", "import", str(out), "--runtime-dir", str(other)]) == 0
    assert "imported 0 corrections" in capsys.readouterr().out  # once each
    assert cli(["evaluate", "weights/default.npz", "--runtime-dir", str(other), "--json"]) == 0
    real = json.loads(capsys.readouterr().out)["holdout"]
    assert held >= 1 and real["n"] == held and real["accuracy"] >= 0.9
    (tmp_path / "bad.npz").write_bytes(b"nope")
    assert cli(["feedback", "import", str(tmp_path / "bad.npz"), "--runtime-dir", str(other)]) == 1


def test_a_correction_over_the_size_limits_is_413(make_client, settings):
    client = make_client(settings.model_copy(update={"max_body_bytes": 2000, "max_image_pixels": 100 * 100}))
    r = client.post("/feedback", json={"image": _data_url(save(seven(128))), "label": 7})
    assert r.status_code == 413 and "pixels" in r.json()["detail"]  # 128 x 128 is over 10,000 pixels
    r = client.post("/feedback", json={"image": _data_url(b"\x89PNG" + bytes(4000)), "label": 7})
    assert r.status_code == 413 and "bytes" in r.json()["detail"]


@pytest.mark.parametrize("label", [True, "7", 7.0, [7]])
def test_a_label_that_is_not_an_integer_is_refused(client, label):
    image = _data_url(SEVEN)
    r = client.post("/feedback", json={"image": image, "label": label})
    assert r.status_code == 422 and "label" in str(r.json()["detail"])
    assert client.post("/feedback", json={"image": image, "label": 7}).status_code == 201
