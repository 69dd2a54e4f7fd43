"""Canvas-style drawings through /predict: the normalisation path against the naive one."""

import io
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from model import weights
from model.drawings import STYLES, canvas_set, draw
from model.spec import SIDE


@pytest.fixture(scope="module")
def drawings():
    return list(canvas_set())  # 300 drawings, 30 of each digit


def naive_bytes(data: bytes) -> np.ndarray:
    """The common shortcut, kept to measure against: grayscale the whole image, resize to 28x28.

    Ignores alpha (a transparent canvas becomes all black) and polarity, and never centres.
    """
    img = Image.open(io.BytesIO(data)).convert("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255


def test_the_set_covers_what_people_draw(drawings):
    assert len(drawings) == 300
    assert {d.style for d in drawings} == set(STYLES)
    pens = [d.pen / 280 for d in drawings]
    assert min(pens) >= 0.05 - 0.002 and max(pens) <= 0.09 + 0.002
    heights = [d.height / 280 for d in drawings]
    assert min(heights) < 0.5 and max(heights) > 0.75  # small and large
    transparent = Image.open(io.BytesIO(next(d for d in drawings if d.style == "transparent").png))
    assert transparent.mode == "RGBA"
    alpha = np.asarray(transparent)[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255 and np.mean((alpha > 0) & (alpha < 255)) > 0  # anti-aliased
    centres = []
    for d in drawings:
        a = np.asarray(Image.open(io.BytesIO(d.png)).convert("RGBA"))
        ink = a[..., 3] if d.style == "transparent" else (255 - a[..., 0] if d.style == "white" else a[..., 0])
        ys, xs = np.nonzero(ink > 128)
        centres.append(((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2))
    off = [max(abs(x - 140), abs(y - 140)) for x, y in centres]
    assert np.mean(np.array(off) > 30) > 0.3  # off-centre as often as not


def test_canvas_drawings_are_recognised_through_predict(client, drawings):
    correct = {s: 0 for s in STYLES}
    totals = {s: 0 for s in STYLES}
    for d in drawings:
        r = client.post("/predict", files={"file": ("canvas.png", d.png, "image/png")})
        assert r.status_code == 200, r.text
        correct[d.style] += r.json()["digit"] == d.label
        totals[d.style] += 1
    accuracy = sum(correct.values()) / len(drawings)
    by_style = {s: round(correct[s] / totals[s], 3) for s in STYLES}
    print(f"\ncanvas set through /predict: {accuracy:.1%} of {len(drawings)}; by style {by_style}")
    assert accuracy >= 0.97
    assert min(by_style.values()) >= 0.95


def test_naive_path_falls_far_behind(drawings):
    """Grayscale and resize the whole canvas: no alpha, no polarity, no crop, no centring."""
    net, _ = weights.load(ROOT / "weights" / "default.npz")
    x = np.stack([naive_bytes(d.png).reshape(-1) for d in drawings])
    y = np.array([d.label for d in drawings])
    naive = float((net.predict(x) == y).mean())
    styles = np.array([d.style for d in drawings])
    transparent = float((net.predict(x[styles == "transparent"]) == y[styles == "transparent"]).mean())
    print(f"\nnaive path: {naive:.1%} overall, {transparent:.1%} on transparent canvases")
    assert naive < 0.6
    assert transparent <= 0.2  # an all-black image: one answer for everything


def test_cli_predict_uses_the_same_normalisation(tmp_path):
    png = tmp_path / "six.png"
    png.write_bytes(draw(6, np.random.default_rng(5), "transparent").png)
    blank = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(blank)
    out = subprocess.run(
        [sys.executable, "-m", "digits", "predict", str(png)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{png}: 6 (")
    assert "0:" in out.stdout and "9:" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "digits", "predict", "--json", str(png), str(blank)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 1
    assert '"digit": 6' in out.stdout and "no ink found" in out.stderr
