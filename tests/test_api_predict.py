"""POST /predict and /predict/batch: every input form, every error, the limit and the limit + 1."""

import base64
import io
import json

import numpy as np
import pytest
from conftest import mnist_png, png_bytes
from PIL import Image

from app.services.registry import INITIAL_VERSION
from model.drawings import draw

# MNIST test images 0-4 are labelled 7, 2, 1, 0, 4; the shipped model gets all five right.
FIRST = [7, 2, 1, 0, 4]


def _digit_png(label=3, style="transparent", seed=1) -> bytes:
    return draw(label, np.random.default_rng(seed), style).png


def _check_prediction(body, digit):
    assert body["digit"] == digit
    probs = body["probabilities"]
    assert len(probs) == 10 and all(np.isfinite(probs)) and abs(sum(probs) - 1) < 1e-4
    assert body["confidence"] == pytest.approx(max(probs))
    assert isinstance(body["uncertain"], bool)
    assert body["model_version"] == INITIAL_VERSION


def test_multipart_upload(client, mnist_test):
    r = client.post("/predict", files={"file": ("d.png", mnist_png(mnist_test, 0), "image/png")})
    assert r.status_code == 200, r.text
    _check_prediction(r.json(), 7)
    assert "input_png" not in r.json()


def test_json_data_url_bare_base64_and_raw_body(client):
    png = _digit_png(3)
    b64 = base64.b64encode(png).decode()
    for body in ({"image": f"data:image/png;base64,{b64}"}, {"image": b64}):
        r = client.post("/predict", json=body)
        assert r.status_code == 200, r.text
        _check_prediction(r.json(), 3)
    r = client.post("/predict", content=png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    _check_prediction(r.json(), 3)


def test_pixels_nested_and_flat_bytes_and_unit(client, mnist_test):
    for i, digit in enumerate(FIRST[:3]):
        img = mnist_test.x[i]
        nested = img.reshape(28, 28).tolist()
        r = client.post("/predict", json={"pixels": nested})
        assert r.status_code == 200, r.text
        _check_prediction(r.json(), digit)
        r = client.post("/predict", json={"pixels": (img / 255).tolist(), "scale": "unit"})
        _check_prediction(r.json(), digit)
        r = client.post("/predict", json={"pixels": img.tolist(), "scale": "byte"})
        _check_prediction(r.json(), digit)


def test_return_input_gives_the_28x28_image_the_model_saw(client):
    r = client.post("/predict?return_input=true", files={"file": ("d.png", _digit_png(5, "white"), "image/png")})
    assert r.status_code == 200
    img = Image.open(io.BytesIO(base64.b64decode(r.json()["input_png"])))
    a = np.asarray(img)
    assert img.size == (28, 28) and img.mode == "L"
    assert a.max() == 255 and a[0].max() == 0 and a[:, 0].max() == 0  # bright ink, dark empty border
    ys, xs = np.indices(a.shape)
    cy, cx = (ys * a).sum() / a.sum(), (xs * a).sum() / a.sum()
    assert abs(cy - 14) < 1 and abs(cx - 14) < 1  # centre of mass at the centre, as in MNIST


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_every_image_format(client, fmt):
    img = Image.open(io.BytesIO(_digit_png(2, "white"))).convert("RGB")
    r = client.post("/predict", files={"file": (f"d.{fmt.lower()}", png_bytes(img, fmt), "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["digit"] == 2


def test_gif_uses_the_first_frame(client):
    frames = [Image.open(io.BytesIO(_digit_png(d, "white"))).convert("L") for d in (6, 1)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    r = client.post("/predict", files={"file": ("a.gif", buf.getvalue(), "image/gif")})
    assert r.json()["digit"] == 6


def test_white_ink_on_transparency_is_ink_too(client):
    rgba = Image.open(io.BytesIO(_digit_png(4, "transparent"))).convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 0))
    white.putalpha(rgba.getchannel("A"))
    r = client.post("/predict", files={"file": ("w.png", png_bytes(white), "image/png")})
    assert r.json()["digit"] == 4


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"files": {"file": ("x.png", b"not an image at all", "image/png")}}, 400, "not a recognised image"),
        ({"json": {"image": "%%%not base64%%%"}}, 400, "not valid base64"),
        ({"json": {"image": "data:text/plain;base64,aGVsbG8="}}, 415, "media type"),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported content type"),
        ({"content": b"hello"}, 415, "unsupported content type"),
        ({"json": {"pixels": [1, 2, 3]}}, 422, "shape [3]"),
        ({"json": {"pixels": [[0] * 28] * 27}}, 422, "shape [27, 28]"),
        ({"json": {"pixels": [-1] + [0] * 783}}, 422, "must be within 0.."),
        ({"json": {"pixels": [256] + [0] * 783}}, 422, "within 0..255"),
        ({"json": {"pixels": [1.5] + [0] * 783, "scale": "unit"}}, 422, "within 0..1"),
        ({"json": {"pixels": "abc"}}, 422, "pixels"),
        ({"json": {"pixels": [0] * 784, "image": "x"}}, 422, "exactly one"),
        ({"json": {}}, 422, "exactly one"),
        ({"json": [1, 2]}, 422, "exactly one"),
        ({"files": {"other": ("x.png", b"123", "image/png")}}, 422, "field 'file'"),
        ({"files": {"file": (None, "just text")}}, 422, "field 'file'"),
        ({"data": {"file": "x"}}, 415, "unsupported content type"),
    ],
)
def test_bad_input_gets_a_clear_4xx(client, kwargs, status, message):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_pixels_are_refused(client, token):
    body = '{"pixels": [' + ", ".join(["0"] * 783 + [token]) + "]}"
    r = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "finite" in r.json()["detail"]


def test_unsupported_image_format_is_415(client):
    tiff = png_bytes(Image.new("L", (50, 50), 255), "TIFF")
    r = client.post("/predict", files={"file": ("x.tiff", tiff, "image/tiff")})
    assert r.status_code == 415 and "TIFF" in r.json()["detail"]


def test_truncated_image_is_400(client):
    png = _digit_png(1)
    r = client.post("/predict", files={"file": ("x.png", png[: len(png) // 2], "image/png")})
    assert r.status_code == 400 and "cannot decode" in r.json()["detail"]


@pytest.mark.parametrize("style", ["white", "dark", "transparent"])
def test_blank_image_is_refused(client, style):
    img = {
        "white": Image.new("L", (280, 280), 255),
        "dark": Image.new("L", (280, 280), 0),
        "transparent": Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
    }[style]
    r = client.post("/predict", files={"file": ("b.png", png_bytes(img), "image/png")})
    assert r.status_code == 422 and r.json()["detail"] == "no ink found: the image is blank"


def test_body_limit_and_limit_plus_one(make_client, settings):
    limit = 20_000
    client = make_client(settings.model_copy(update={"max_body_bytes": limit}))
    png = _digit_png(7, "white")
    assert len(png) < limit
    at_limit = png + b"\0" * (limit - len(png))  # Pillow ignores bytes after the PNG's end
    r = client.post("/predict", content=at_limit, headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    r = client.post("/predict", content=at_limit + b"\0", headers={"Content-Type": "image/png"})
    assert r.status_code == 413
    assert r.json()["detail"] == f"request body is larger than the limit of {limit} bytes"

    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(10):
            yield b"\0" * 5_000

    r = client.post("/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert r.status_code == 413


def test_pixel_limit_and_limit_plus_one(make_client, settings):
    client = make_client(settings.model_copy(update={"max_image_pixels": 200 * 200}))
    img = Image.open(io.BytesIO(_digit_png(9, "white"))).convert("L")
    ok = client.post("/predict", files={"file": ("a.png", png_bytes(img.resize((200, 200))), "image/png")})
    assert ok.status_code == 200
    big = client.post("/predict", files={"file": ("a.png", png_bytes(img.resize((201, 200))), "image/png")})
    assert big.status_code == 413 and "over the limit of 40000" in big.json()["detail"]


def test_decompression_bomb_is_refused_before_decoding(client):
    bomb = png_bytes(Image.new("1", (20_000, 20_000), 0), optimize=True)  # 400 Mpixel, ~50 KB on the wire
    assert len(bomb) < 200_000
    r = client.post("/predict", files={"file": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 413 and "pixels" in r.json()["detail"]


def test_garbage_never_gets_a_500(client):
    rng = np.random.default_rng(0)
    types = [
        "image/png",
        "application/json",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "image/gif",
        "text/plain",
        "",
    ]
    for i in range(60):
        body = rng.integers(0, 256, rng.integers(0, 3000)).astype(np.uint8).tobytes()
        if i % 3 == 0:
            body = b"\x89PNG\r\n\x1a\n" + body  # looks like a PNG for 8 bytes
        r = client.post("/predict", content=body, headers={"Content-Type": types[i % len(types)]})
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert "Traceback" not in r.text


def test_batch_multipart_keeps_order_and_reports_bad_items(client):
    files = [("files", (f"{d}.png", _digit_png(d, "dark", seed=d), "image/png")) for d in (1, 8)]
    files.insert(1, ("files", ("bad.png", b"garbage", "image/png")))
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3 and body["failed"] == 1 and body["model_version"] == INITIAL_VERSION
    a, bad, b = body["items"]
    assert [a["index"], bad["index"], b["index"]] == [0, 1, 2]
    assert a["ok"] and a["result"]["digit"] == 1
    assert b["ok"] and b["result"]["digit"] == 8
    assert not bad["ok"] and bad["error"]["status"] == 400 and "not a recognised image" in bad["error"]["detail"]


def test_batch_json_and_its_limits(make_client, settings):
    client = make_client(settings.model_copy(update={"max_batch": 5}))
    imgs = [base64.b64encode(_digit_png(d, "white", seed=d)).decode() for d in range(5)]
    r = client.post("/predict/batch", json={"images": imgs})
    assert r.status_code == 200
    assert [it["result"]["digit"] for it in r.json()["items"]] == [0, 1, 2, 3, 4]
    r = client.post("/predict/batch", json={"images": [*imgs, imgs[0]]})
    assert r.status_code == 422 and "at most 5" in r.json()["detail"]
    files = [("files", (f"{i}.png", base64.b64decode(imgs[0]), "image/png")) for i in range(6)]
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 422 and "at most 5" in r.json()["detail"]
    r = client.post("/predict/batch", json={"images": []})
    assert r.status_code == 422
    r = client.post("/predict/batch", json={"images": ["!!!", imgs[3]]})
    items = r.json()["items"]
    assert items[0]["error"]["status"] == 400 and items[1]["result"]["digit"] == 3
    r = client.post("/predict/batch", content=b"x", headers={"Content-Type": "text/csv"})
    assert r.status_code == 415


def test_batch_of_256_is_accepted(client):
    png = _digit_png(0, "white")
    r = client.post("/predict/batch", files=[("files", (f"{i}.png", png, "image/png")) for i in range(256)])
    assert r.status_code == 200 and r.json()["count"] == 256 and r.json()["failed"] == 0


def test_openapi_documents_every_input_form_with_examples(client):
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/png"} <= set(content)
    examples = content["application/json"]["examples"]
    assert len(examples) >= 4
    assert content["multipart/form-data"]["examples"] and content["image/png"]["examples"]
    sample = next(iter(examples.values()))["value"]["image"]
    r = client.post("/predict", json={"image": sample})
    assert r.status_code == 200  # the documented example works
    assert client.get("/docs").status_code == 200
    assert json.dumps(spec)  # serialisable


def test_uncertain_follows_the_configured_threshold(make_client, settings, mnist_test):
    sure = make_client(settings.model_copy(update={"uncertain_below": 0.0}))
    picky = make_client(settings.model_copy(update={"uncertain_below": 0.999}))
    # The first test digits that the model answers at all under a threshold of 0 (the detector may still
    # doubt an odd one) and with less than 0.999 confidence: the threshold alone decides.
    checked = 0
    for image in mnist_test.x[:300]:
        body = sure.post("/predict", json={"pixels": image.tolist()}).json()
        if body["uncertain"] or body["confidence"] >= 0.999:
            continue
        assert picky.post("/predict", json={"pixels": image.tolist()}).json()["uncertain"] is True
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def test_a_large_photo_like_image_is_recognised(client):
    """12 megapixels of grey, unevenly lit, noisy paper with a pen-drawn 5, as a phone might send."""
    ink = np.asarray(Image.open(io.BytesIO(_digit_png(5, "white", seed=3))).convert("L"), np.float32) / 255
    ink = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize((4000, 3000)), np.float32) / 255
    rng = np.random.default_rng(0)
    light = np.linspace(0.65, 0.85, 4000, dtype=np.float32)[None, :]  # brighter to the right
    paper = light + rng.normal(0, 0.03, (3000, 4000)).astype(np.float32)
    photo = np.clip(paper * ink + 0.15 * (1 - ink), 0, 1)  # ink is dark grey, not black
    jpg = png_bytes(Image.fromarray((photo * 255).astype(np.uint8)).convert("RGB"), "JPEG", quality=85)
    r = client.post("/predict", files={"file": ("photo.jpg", jpg, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json()["digit"] == 5
