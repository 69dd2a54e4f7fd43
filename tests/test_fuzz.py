"""Fuzzing: mutated image files against the decoder, and generated requests against the running API.

Either a decoded image or a clean ImageError, quickly, for any bytes; and from the API, never a 5xx
and every error a JSON `detail`.
"""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.api.inputs import image_error
from model.images import ImageError, normalise_bytes

sys.path.insert(0, str(Path(__file__).parent))
from hostile import save, seven
from servers import uvicorn_server

TOKEN = "e2e-token"
SEEDS = [
    save(seven(64)),
    save(seven(64).convert("P")),
    save(seven(64).convert("RGB"), "JPEG", quality=80),
    save(seven(64).convert("RGB"), "JPEG", progressive=True),
    save(seven(64), "GIF"),
    save(seven(64).convert("RGB"), "WEBP"),
    save(seven(64).convert("RGB"), "BMP"),
    save(seven(64).convert("RGBA"), "PNG"),
]


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "truncate"]))
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[i : i + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "repeat":
            data[i:i] = data[i : i + draw(st.integers(1, 256))] * draw(st.integers(1, 20))
        else:
            del data[max(i, 8) :]
        if not data:
            break
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_images())
def test_the_decoder_answers_any_bytes_with_an_input_or_an_image_error(data):
    t = time.perf_counter()
    try:
        x = normalise_bytes(data)
    except ImageError as e:
        # Every kind of refusal has its 4xx and a message (a photo of many marks is "not one digit": 422).
        assert 400 <= image_error(e).status < 500 and str(e)
    else:
        assert x.shape == (28, 28) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert time.perf_counter() - t < 1.0


def test_the_seeds_are_digits():
    for data in SEEDS:
        assert normalise_bytes(data).max() == 1.0, Image.open(io.BytesIO(data)).format


def test_generated_requests_get_no_5xx_and_json_errors(tmp_path):
    """schemathesis (its CLI: its pytest plugin does not run under pytest 9) against a real server,
    with the admin token, every phase (examples, coverage, fuzzing, stateful), a fixed seed."""
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": str(Path(__file__).parent)}
    with uvicorn_server(tmp_path / "var", token=TOKEN) as server:
        out = subprocess.run(
            [str(Path(sys.executable).parent / "st"), "run", f"{server.url}/openapi.json", "--no-color",
             "--checks", "not_a_server_error,errors_are_json_detail", "-H", f"Authorization: Bearer {TOKEN}",
             "--max-examples", "30", "--seed", "1"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
    summary = out.stdout[out.stdout.rfind("Test cases:") :]
    print(summary)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary
