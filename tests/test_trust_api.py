"""Not a digit, not sure, calibrated confidence: through /predict with the shipped weights (issue 11)."""

import numpy as np
import pytest
from conftest import STROKE
from hostile import save, seven
from PIL import Image, ImageDraw, ImageFont

from model.drawings import export
from model.negatives import HELD_OUT_FONTS, fonts, mask


def _glyph(char: str) -> bytes:
    """A letter as drawn on a white pad, in a font family training never saw."""
    family = fonts(HELD_OUT_FONTS)
    if not family:
        pytest.skip("fonts-liberation is not installed (.ci/run installs it)")
    img = Image.new("L", (280, 280), 255)
    font = ImageFont.truetype(str(next(f for f in family if f.name == "LiberationSans-Regular.ttf")), 180)
    ImageDraw.Draw(img).text((40, 30), char, fill=0, font=font)
    return save(img)


def test_a_letter_is_not_a_digit_and_a_seven_is(client):
    r = client.post("/predict", files={"file": ("w.png", _glyph("W"), "image/png")}).json()
    assert r["not_a_digit"] is True and r["not_a_digit_score"] >= 0.5
    assert len(r["probabilities"]) == 10 and "digit" in r  # still there for clients that want them
    r = client.post("/predict", files={"file": ("7.png", save(seven(280)), "image/png")}).json()
    assert r["not_a_digit"] is False and r["digit"] == 7 and r["uncertain"] is False


def test_held_out_letters_and_scribbles_are_caught(client):
    if not fonts(HELD_OUT_FONTS):
        pytest.skip("fonts-liberation is not installed (.ci/run installs it)")
    rng = np.random.default_rng(99)
    files = [("files", (f"{k}{i}.png", export(mask(k, rng, HELD_OUT_FONTS, 280), "white"), "image/png"))
             for k in ("letter", "scribble") for i in range(15)]  # fmt: skip
    items = client.post("/predict/batch", files=files).json()["items"]
    caught = [it["result"]["not_a_digit"] or it["result"]["uncertain"] for it in items if it["ok"]]
    assert len(caught) >= 28 and sum(caught) / len(caught) >= 0.8, sum(caught)


def test_a_model_without_the_new_card_fields_serves_with_defaults(client, admin):
    assert client.post("/models/seed/activate", headers=admin).status_code == 200
    r = client.post("/predict", json={"pixels": STROKE}).json()
    assert r["model_version"] == "seed" and r["not_a_digit"] is False and "not_a_digit_score" not in r
    assert r["uncertain"] == (r["confidence"] < 0.7)  # the server's old default threshold
    assert abs(sum(r["probabilities"]) - 1) < 1e-5


def test_the_shipped_card_says_how_it_was_calibrated(client):
    meta = next(v for v in client.get("/models").json()["versions"] if v["version"] == "default")["metadata"]
    cal, det = meta["calibration"], meta["detector"]
    assert 0.5 < cal["temperature"] < 3 and 0.5 < cal["uncertain_below"] < 1
    assert cal["ece"]["drawings"]["after"] <= 0.01 and len(cal["reliability"]["drawings"]) >= 3
    assert det["auroc"]["detector"] > det["auroc"]["max_softmax"]
