"""Micro-batching of /predict (app/services/batcher.py) and admission control (app/api/admission.py)."""

import asyncio
import base64
import concurrent.futures
import io
import time

import httpx
import numpy as np
import pytest
from conftest import STROKE
from PIL import Image, ImageDraw
from servers import uvicorn_server

from app.services.batcher import AnswerBatcher
from app.services.registry import LoadedModel
from model.weights import load_predictor


@pytest.fixture(scope="module")
def cnn() -> LoadedModel:
    return LoadedModel("cnn", load_predictor("weights/cnn.npz"))


def _inputs(mnist_test, n: int) -> list[np.ndarray]:
    return [mnist_test.x[i].astype(np.float32) / 255 for i in range(n)]


def test_batched_answers_equal_single_image_answers(cnn, mnist_test):
    xs = _inputs(mnist_test, 24)
    photo = [i % 5 == 0 for i in range(24)]  # photos have a calibration of their own, row by row

    async def batched():
        batcher = AnswerBatcher()
        futures = [batcher.answer(cnn, x, p) for x, p in zip(xs, photo, strict=True)]
        return batcher, await asyncio.gather(*futures)

    batcher, results = asyncio.run(batched())
    assert batcher.batches == 1 and batcher.largest == 24  # all arrived in one turn: one pass
    for x, p, (answers, row) in zip(xs, photo, results, strict=True):
        alone = cnn.predictor.answer(x[None], None, np.array([p]))
        np.testing.assert_allclose(answers.probabilities[row], alone.probabilities[0], rtol=1e-5, atol=1e-6)
        assert answers.probabilities[row].argmax() == alone.probabilities[0].argmax()
        assert answers.uncertain[row] == alone.uncertain[0] and answers.is_not_digit[row] == alone.is_not_digit[0]
        assert answers.not_digit[row] == pytest.approx(alone.not_digit[0], abs=1e-6)


def test_an_idle_request_is_answered_on_the_next_turns_without_a_timer(cnn, mnist_test):
    async def alone():
        batcher = AnswerBatcher()
        future = batcher.answer(cnn, _inputs(mnist_test, 1)[0], False)
        for _ in range(2):  # two turns of the loop: no waiting on a clock
            await asyncio.sleep(0)
        return future.done(), batcher

    done, batcher = asyncio.run(alone())
    assert done and batcher.batches == 1


def test_a_batch_never_exceeds_its_bound(cnn, mnist_test):
    async def flood():
        batcher = AnswerBatcher(max_batch=8)
        await asyncio.gather(*(batcher.answer(cnn, x, False) for x in _inputs(mnist_test, 50)))
        return batcher

    batcher = asyncio.run(flood())
    assert batcher.largest == 8 and batcher.items == 50 and batcher.batches == 7


def test_a_failing_item_fails_alone(cnn, mnist_test):
    xs = _inputs(mnist_test, 6)
    xs[3] = np.zeros(700, np.float32)  # no network reads that: the batch's pass fails

    async def mixed():
        batcher = AnswerBatcher()
        return await asyncio.gather(*(batcher.answer(cnn, x, False) for x in xs), return_exceptions=True)

    results = asyncio.run(mixed())
    assert isinstance(results[3], ValueError)
    good = [r for i, r in enumerate(results) if i != 3]
    for i, (a, row) in zip([0, 1, 2, 4, 5], good, strict=True):
        assert int(a.probabilities[row].argmax()) == mnist_test.y[i]


def test_two_versions_in_one_turn_are_answered_each_by_its_own(cnn, mnist_test):
    seed = LoadedModel("seed", load_predictor("weights/seed.npz"))
    x = _inputs(mnist_test, 1)[0]

    async def both():
        batcher = AnswerBatcher()
        return batcher, await asyncio.gather(batcher.answer(cnn, x, False), batcher.answer(seed, x, False))

    batcher, ((a, i), (b, j)) = asyncio.run(both())
    assert batcher.batches == 2
    np.testing.assert_allclose(b.probabilities[j], seed.predictor.answer(x[None]).probabilities[0], rtol=1e-5)
    np.testing.assert_allclose(a.probabilities[i], cnn.predictor.answer(x[None]).probabilities[0], rtol=1e-5)


def _number_png(k: int) -> bytes:
    """A number of six strokes: /read segments it in the worker's pool (some milliseconds), so requests
    pile up in flight."""
    img = Image.new("L", (640, 320), 255)
    d = ImageDraw.Draw(img)
    for i in range(6):
        d.line([(60 + 95 * i + k % 7, 60), (50 + 95 * i, 260)], fill=0, width=16)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_a_busy_worker_refuses_at_once_with_retry_after_and_keeps_health_checks(tmp_path):
    env = {"DIGITS_MAX_IN_FLIGHT": "2", "DIGITS_DECODE_THREADS": "1"}
    with uvicorn_server(tmp_path / "var", env=env) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        body = [{"image": base64.b64encode(_number_png(k)).decode()} for k in range(24)]

        limits = httpx.Limits(max_connections=24, max_keepalive_connections=24)
        flood = httpx.Client(base_url=s.url, timeout=30, limits=limits)

        def post(b):
            started = time.monotonic()
            r = flood.post("/read", json=b)
            return r, time.monotonic() - started

        with flood, concurrent.futures.ThreadPoolExecutor(24) as pool:
            futures = [pool.submit(post, b) for b in body]
            health = []
            while not all(f.done() for f in futures):
                started = time.monotonic()
                assert c.get("/healthz").status_code == 200
                health.append(time.monotonic() - started)
            results = [f.result() for f in futures]
        refused = [(r, t) for r, t in results if r.status_code == 503]
        answered = [r for r, _ in results if r.status_code == 200]
        assert refused and answered, [r.status_code for r, _ in results]
        assert len(refused) + len(answered) == 24
        for r, t in refused:
            assert r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
            assert t < 1.0  # at once, not after a wait in the queue
        assert max(health) < 1.0
        assert c.post("/predict", json={"pixels": STROKE}).status_code == 200  # and after the flood, normal
        metrics = c.get("/metrics").text
        assert f'digits_requests_refused_total{{path="/read"}} {float(len(refused))}' in metrics
