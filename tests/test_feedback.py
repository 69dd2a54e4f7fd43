"""POST /feedback: corrections stored safely, once, with limits (issue 10, part 2)."""

import base64
import sqlite3

import pytest
from conftest import TOKEN
from hostile import save, seven

from app.infra.settings import Settings


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


SEVEN = save(seven(128))


def test_a_correction_is_stored_with_the_servers_own_reading(client, settings):
    r = client.post(
        "/feedback", json={"image": _data_url(SEVEN), "label": 1, "model_version": "default", "predicted": 7}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["duplicate"] is False and body["status"] == "pending" and body["predicted"] == 7
    db = sqlite3.connect(settings.runtime_dir / "jobs.sqlite")
    row = db.execute("SELECT label, predicted, original, client, claimed_digit, media_type FROM feedback").fetchone()
    label, predicted, original, client_id, claimed, media = row
    assert (label, predicted, original, claimed, media) == (1, 7, SEVEN, 7, "image/png")
    assert client_id != "testclient" and len(client_id) == 16  # a salted hash, never the address


def test_the_same_image_is_kept_once(client):
    first = client.post("/feedback", json={"image": _data_url(SEVEN), "label": 7}).json()
    again = client.post("/feedback", files={"file": ("7.png", SEVEN, "image/png")}, data={"label": "7"}).json()
    assert again["duplicate"] is True and again["id"] == first["id"]


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
