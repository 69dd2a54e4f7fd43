"""Shared fixtures, and an environment of scratch folders, set before any test module imports the app."""

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_scratch = tempfile.mkdtemp(prefix="digits-tests-")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(_scratch, "metrics"))
os.environ.setdefault("DIGITS_RUNTIME_DIR", os.path.join(_scratch, "var"))
# Generated training sets (model.generated) are kept for this run only: the suite measures what a fresh
# machine makes, and its trainings share what one of them made.
os.environ.setdefault("DIGITS_CACHE_DIR", os.path.join(_scratch, "generated"))
os.environ.pop("ADMIN_TOKEN", None)

pytest_plugins = ["pg"]  # a throw-away PostgreSQL for the shared-state tests

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-admin-token"
# A short vertical stroke in MNIST format: the least a /predict request needs to be answered.
STROKE = [0] * 300 + [255] * 20 + [0] * 464


@pytest.fixture
def settings(tmp_path):
    from app.infra.settings import Settings

    return Settings(runtime_dir=tmp_path / "var", admin_token=TOKEN)


@pytest.fixture
def make_client():
    """make_client(settings) -> a started TestClient; all closed at the end of the test."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    clients = []

    def make(settings):
        c = TestClient(create_app(settings))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client, settings):
    return make_client(settings)


@pytest.fixture
def admin():
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def mnist_test():
    from model.data import load_mnist

    return load_mnist().test


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def mnist_png(mnist_test, i: int, scale: int = 10) -> bytes:
    """MNIST test image i as a large black-on-white PNG, like a scan."""
    a = 255 - mnist_test.x[i].reshape(28, 28)
    return png_bytes(
        Image.fromarray(np.ascontiguousarray(a)).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    )


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module (`playwright install` cannot download here)."""
    from browser import ARGS, CHROMIUM
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium (bash .ci/run does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()
