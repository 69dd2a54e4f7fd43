"""What an adversarial probe of the running service found (issue 9), one regression test per finding.

Findings that live in the server (its event loop, its memory, its parser, its connections) are tested
through a real uvicorn server started the way `digits serve` starts it; the others through TestClient.
"""

import base64
import concurrent.futures
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import STROKE
from hostile import (
    blank_16bit_rgba_png,
    progressive_jpeg_with_repeated_scans,
    save,
    seven,
    sixteen_bit,
    strip_png,
)
from servers import uvicorn_server

from app.infra.prometheus import default_folder

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": "Bearer e2e-token"}


def digits_serve(runtime_dir: Path, workers: int = 1, **kw):
    command = [sys.executable, "-m", "digits", "serve", "--workers", str(workers), "--no-access-log"]
    return uvicorn_server(runtime_dir, workers=workers, command=command, **kw)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with digits_serve(tmp_path_factory.mktemp("hardening") / "var") as s:
        yield s


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def worker_pid(url: str) -> int:
    return httpx.get(f"{url}/readyz", timeout=5).json()["worker"]


def worker_pids(url: str, workers: int) -> set[int]:
    """The web processes answering, asked until all `workers` have been seen (the kernel may hand
    many connections in a row to one), or 200 times."""
    seen: set[int] = set()
    for _ in range(200):
        seen.add(worker_pid(url))
        if len(seen) >= workers:
            break
    return seen


PROBE = httpx.Client(timeout=5)  # httpx.get() would spend ~30 ms of its own making a client each time


def healthz_ms(url: str) -> float:
    t = time.perf_counter()
    assert PROBE.get(f"{url}/healthz", headers={"Connection": "close"}).status_code == 200  # a new connection
    return (time.perf_counter() - t) * 1e3


# ---- 1. a ~100 KB progressive JPEG froze a worker for 12 s -------------------------------------------


def test_1_a_jpeg_of_a_thousand_scans_is_refused_at_once(server):
    jpeg = progressive_jpeg_with_repeated_scans(1000)
    assert len(jpeg) < 200_000
    t = time.perf_counter()
    r = httpx.post(f"{server.url}/predict", content=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=30)
    elapsed = time.perf_counter() - t
    assert r.status_code == 422 and "scans" in r.json()["detail"]
    assert elapsed < 0.5, f"took {elapsed:.2f} s"


def test_1_costly_images_are_decoded_off_the_event_loop(server):
    """Four worst-case images within the limits at once (about 0.9 s of decoding each): /healthz still
    answers on the same (single) worker, typically within 100 ms and never after even half a decode.
    (Decoded on the event loop, every probe would wait for whole decodes: 0.9 s and more. A single probe's
    worst case is the machine's, not the server's: on this 2-core VM it reached 110-240 ms in some runs,
    before and after unrelated changes, so the tail is bounded by what would mean a blocked loop.)"""
    jpeg = progressive_jpeg_with_repeated_scans(90)  # under the scan limit: decoded, blank

    def post() -> int:
        return httpx.post(
            f"{server.url}/predict", content=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60
        ).status_code

    healthz_ms(server.url)  # a warm connection pool is not what is measured; the server is
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        posts = [pool.submit(post) for _ in range(4)]
        time.sleep(0.2)
        latencies = []
        while not all(p.done() for p in posts):
            latencies.append(healthz_ms(server.url))
            time.sleep(0.05)
        assert [p.result() for p in posts] == [422] * 4  # "no ink found"
    median = statistics.median(latencies)
    print(f"\n/healthz during decoding: {len(latencies)} probes, median {median:.0f} ms, max {max(latencies):.0f} ms")
    assert len(latencies) >= 5 and median < 100 and max(latencies) < 450


# ---- 2 and 6. batches: memory that grew until a full GC, and seconds of work on the event loop -------


def test_2_repeated_worst_case_batches_keep_worker_memory_bounded(server):
    png = blank_16bit_rgba_png()
    files = [("files", (f"{i}.png", png, "image/png")) for i in range(20)]
    pid = worker_pid(server.url)
    httpx.post(f"{server.url}/predict/batch", files=files, timeout=60)  # the first one sizes the pools
    start = rss_mb(pid)
    times = []
    for _ in range(10):
        t = time.perf_counter()
        r = httpx.post(f"{server.url}/predict/batch", files=files, timeout=60)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200
        statuses = [it["error"]["status"] for it in r.json()["items"]]
        assert statuses.count(422) >= 1 and statuses.count(413) >= 15  # blank, then over the request's budget
    end = rss_mb(pid)
    print(f"\nworker RSS {start:.0f} -> {end:.0f} MB over 10 batches; {max(times):.2f} s at most a batch")
    assert end - start < 300
    assert max(times) < 2.0


def test_6_strips_and_huge_pixel_arrays_cost_little(server):
    strips = [("files", (f"{i}.png", strip_png(), "image/png")) for i in range(20)]
    t = time.perf_counter()
    r = httpx.post(f"{server.url}/predict/batch", files=strips, timeout=60)
    assert r.status_code == 200 and time.perf_counter() - t < 2.0
    body = b'{"pixels": [' + b"0," * 2_600_000 + b"0]}"  # 5 MB
    t = time.perf_counter()
    r = httpx.post(f"{server.url}/predict", content=body, headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 422 and "784" in r.json()["detail"]
    assert time.perf_counter() - t < 0.5


# ---- 3. no limit on request headers ------------------------------------------------------------------


def _raw_request(url: str, head: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        with contextlib.suppress(OSError):  # the server may close while the rest is still on its way
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
        try:
            return s.recv(100)
        except OSError:
            return b""


def test_3_oversized_request_heads_are_refused(server):
    pid = worker_pid(server.url)
    before = rss_mb(pid)
    answers = [
        _raw_request(server.url, b"X-Big: " + b"a" * 20_000_000 + b"\r\n"),
        _raw_request(server.url, b"".join(b"X-%d: 1\r\n" % i for i in range(200_000))),
    ]
    for answer in answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer
    assert any(a.startswith(b"HTTP/1.1 431") for a in answers)
    assert rss_mb(pid) - before < 50
    assert _raw_request(server.url, b"Cookie: " + b"c" * 4000 + b"\r\n").startswith(b"HTTP/1.1 200")


# ---- 4. malformed JSON gave 500 and reset the kept-alive connection ----------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"pixels": [[0], [0, 0]]}',
        b'{"pixels": [' + b"1" * 4301 + b"]}",
        b'{"pixels": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"image": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    ],
    ids=["ragged", "4301 digits", "deep pixels", "deep image"],
)
def test_4_malformed_json_is_a_client_error_and_the_connection_lives(server, body):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422) and isinstance(r.json()["detail"], str)
        assert client.post("/predict", json={"pixels": STROKE}).status_code == 200  # same connection


# ---- 5. valid images refused or misread ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        save(seven(2000).convert("P")),
        save(seven(2000).convert("1")),
        save(sixteen_bit(seven(2000))),
        save(sixteen_bit(seven(400, ink=204))),  # 20% grey ink on white, 16 bits: scaled, not clipped
        save(seven(400).convert("RGB"), "MPO", save_all=True, append_images=[seven(400).convert("RGB")]),
    ],
    ids=["palette 2000 px", "1-bit 2000 px", "16-bit 2000 px", "16-bit faint ink", "MPO"],
)
def test_5_palette_1bit_16bit_and_mpo_images_are_read(client, data):
    r = client.post("/predict", files={"file": ("seven", data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["digit"] == 7


# ---- 7. a client that aborts its upload was counted as a server error ---------------------------------


def test_7_an_aborted_upload_is_not_a_server_error(server):
    host, port = server.url.removeprefix("http://").split(":")
    for _ in range(5):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
                + b"\x89PNG" * 250
            )
        time.sleep(0.05)
    time.sleep(0.3)
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert 'status="500"' not in metrics
    assert 'route="/predict",status="499"' in metrics
    assert '"level": "error"' not in server.log_text()


# ---- 8. a read-only runtime folder broke predictions ---------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root (CI runs as root)")
def test_8_a_read_only_runtime_folder_keeps_predictions_and_gives_503s(tmp_path):
    """Workers that start on a runtime folder made read-only (after a first run filled it) have no
    metrics files of their own and cannot write any: predictions go on, admin writes get 503."""
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        with digits_serve(mount / "var", log_dir=tmp_path) as s:
            assert httpx.post(f"{s.url}/predict", json={"pixels": STROKE}, timeout=5).status_code == 200
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with (
            digits_serve(mount / "var", workers=2, log_dir=tmp_path) as s,
            httpx.Client(base_url=s.url, timeout=5) as c,
        ):
            answers = [c.post("/predict", json={"pixels": STROKE}, headers={"Connection": "close"}) for _ in range(60)]
            assert [a.status_code for a in answers] == [200] * 60
            r = c.post("/models/seed/activate", headers=ADMIN)
            assert r.status_code == 503 and "runtime folder" in r.json()["detail"]
            r = c.post("/train", json={"preset": "tiny"}, headers=ADMIN)
            assert r.status_code == 503 and "unavailable" in r.json()["detail"]
            image = "data:image/png;base64," + base64.b64encode(save(seven(99))).decode()
            r = c.post("/feedback", json={"image": image, "label": 7})
            assert r.status_code == 503 and "unavailable" in r.json()["detail"]
            assert c.get("/train", headers=ADMIN).status_code == 200
            assert c.get("/readyz").status_code == 200
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# ---- 9. a worker that starts while the active file is corrupt had no model ----------------------------


def test_9_a_worker_starting_on_a_corrupt_active_version_serves_a_fallback(make_client, settings, admin):
    first = make_client(settings)
    assert first.post("/models/seed/activate", headers=admin).status_code == 200
    seed = first.app.state.services.registry.path("seed")
    first.__exit__(None, None, None)
    seed.write_bytes(seed.read_bytes()[:1000])  # corrupt on disk (the cached file) while nothing runs
    client = make_client(settings)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded" and "'seed'" in ready.json()["detail"]
    assert client.post("/predict", json={"pixels": STROKE}).json()["model_version"] == "default"


# ---- 10. SSE: an unknown job answered 200, odd Last-Event-IDs broke the stream -------------------------


def test_10_events_of_an_unknown_job_are_a_404(client, admin):
    r = client.get("/train/nosuchjob/events", headers=admin)
    assert r.status_code == 404 and "nosuchjob" in r.json()["detail"]


@pytest.mark.parametrize("last_id", ["1" * 20, "9" * 5000, "\u0661"], ids=["20 digits", "5000 digits", "arabic one"])
def test_10_odd_last_event_ids_resume_from_the_start(client, admin, last_id):
    job = client.post("/train", json={"preset": "tiny", "epochs": 1, "train_size": 500}, headers=admin).json()
    headers = {**admin, "Last-Event-ID": last_id.encode("utf-8")}
    with client.stream("GET", f"/train/{job['id']}/events", headers=headers) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("event:")]
    assert events[0] == "event: status" and events[-1] == "event: status" and "event: progress" in events


# ---- 11. POST /train parsed the body before checking the token ----------------------------------------


@pytest.mark.parametrize("body", [b"{broken", b'{"preset": "nope"}', b"\xff\xfe"])
def test_11_no_token_is_401_whatever_the_body(client, body):
    r = client.post("/train", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers


# ---- 12. activating a corrupt version answered with the file's absolute path --------------------------


def test_12_errors_never_name_server_paths(client, admin, settings):
    client.app.state.services.registry.add("broken", b"PK\x03\x04 not really")
    r = client.post("/models/broken/activate", headers=admin)
    assert r.status_code == 422 and "'broken'" in r.json()["detail"]
    listing = json.dumps(client.get("/models").json())
    for text in (r.json()["detail"], listing):
        assert str(settings.runtime_dir.resolve()) not in text and str(settings.runtime_dir) not in text


# ---- 13. inconsistencies ---------------------------------------------------------------------------------


def test_13_answers_agree_with_the_readme(client):
    bad_utf8 = b'{"images": ["\xff"]}'
    for path in ("/predict", "/predict/batch"):
        r = client.post(path, content=bad_utf8, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.text)
    r = client.post("/predict", json={"pixels": [0] * 784})
    assert r.status_code == 422 and "no ink" in r.json()["detail"]
    for value in (True, "1"):
        r = client.post("/predict", json={"pixels": [value] * 784})
        assert r.status_code == 422, value


def test_13_a_data_url_batch_still_works(client):
    png = base64.b64encode(save(seven(280, ink=0, background=255))).decode()
    r = client.post("/predict/batch", json={"images": [f"data:image/png;base64,{png}", png]})
    assert r.status_code == 200 and [it["result"]["digit"] for it in r.json()["items"]] == [7, 7]


# ---- also seen: a chunked body over the limit got its 413, then the server read all the rest ----------


def test_a_chunked_body_over_the_limit_is_cut_off(server):
    host, port = server.url.removeprefix("http://").split(":")
    chunk = b"%x\r\n" % 65536 + b"a" * 65536 + b"\r\n"
    sent = 0
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n")
        with contextlib.suppress(OSError):
            while sent < 100 * 2**20:
                s.sendall(chunk)
                sent += len(chunk)
    assert sent < 20 * 2**20, f"the server read {sent >> 20} MB of a body whose limit is 5 MB"


# ---- also seen: slow clients were never timed out ------------------------------------------------------


def test_a_request_head_that_never_ends_is_timed_out(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        t = time.perf_counter()
        answer = s.recv(100)
        waited = time.perf_counter() - t
    assert answer.startswith(b"HTTP/1.1 408") and 9 < waited < 13


# ---- also seen (issue 24): `digits serve --no-access-log` still wrote a line per request ---------------


@pytest.mark.parametrize("workers", [1, 2])
def test_no_access_log_is_honoured(tmp_path, workers):
    def access_lines(flags: list[str]) -> int:
        command = [sys.executable, "-m", "digits", "serve", "--workers", str(workers), *flags]
        with uvicorn_server(tmp_path / f"var{len(flags)}", workers=workers, command=command) as s:
            for _ in range(10):
                assert httpx.post(f"{s.url}/predict", json={"pixels": STROKE}, timeout=5).status_code == 200
            time.sleep(0.3)
            return s.log_text().count('"logger": "uvicorn.access"')

    assert access_lines([]) >= 10  # the flag is what turns them off
    assert access_lines(["--no-access-log"]) == 0


# ---- issue 22, 9: the access log kept each client's address beside each POST /feedback ------------------


def test_the_access_log_keeps_no_client_address(tmp_path):
    command = [sys.executable, "-m", "digits", "serve", "--workers", "1"]
    with uvicorn_server(tmp_path / "var", command=command) as s:
        r = httpx.post(f"{s.url}/predict?return_input=true", json={"pixels": STROKE}, timeout=5)
        png = base64.b64decode(r.json()["input_png"])
        sent = httpx.post(f"{s.url}/feedback", files={"file": ("7.png", png, "image/png")}, data={"label": "1"})
        assert sent.status_code == 201
        time.sleep(0.3)
        lines = [json.loads(line) for line in s.log_text().splitlines() if '"uvicorn.access"' in line]
    assert any(line.get("path") == "/feedback" and line.get("status") == 201 for line in lines)
    assert all("127.0.0.1" not in json.dumps(line) and "client" not in line for line in lines), lines[:2]


# ---- issue 22, 5: no CSP, nosniff, framing or referrer policy on any page --------------------------------


def test_pages_carry_security_headers(client):
    for path in ("/", "/admin", "/docs"):
        r = client.get(path)
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"
        policy = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
        assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
        assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
        if path == "/docs":  # Swagger UI's one inline start-up script, by its hash
            assert policy["script-src"].startswith("'self' 'sha256-")
        else:
            assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    answer = client.post("/predict", json={"pixels": STROKE})
    assert answer.headers["x-content-type-options"] == "nosniff" and "x-frame-options" not in answer.headers


# ---- issue 22, 1: a full disk under the runtime folder killed the web workers with SIGBUS ---------------


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_22_1_a_full_runtime_disk_costs_only_the_writes_that_need_it(tmp_path):
    """The runtime folder on a real 64 MiB tmpfs, filled to the last block while two workers serve. New
    metrics series (every route and status) must not crash a worker (prometheus_client's memory-mapped
    files died with SIGBUS there); predictions, /healthz and the list of versions go on; a correction is
    stored or refused with a 503."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        env = {"PROMETHEUS_MULTIPROC_DIR": ""}  # the server's own default, as `digits serve` runs it
        with (
            digits_serve(mount / "var", workers=2, log_dir=tmp_path, env=env) as s,
            httpx.Client(base_url=s.url, timeout=5) as c,
        ):
            assert c.post("/predict", json={"pixels": STROKE}).status_code == 200
            # Every block left, taken; unbuffered, so that closing the file has nothing left to write.
            with contextlib.suppress(OSError), open(mount / "filler", "wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * 65536)
            pids = worker_pids(s.url, 2)
            assert len(pids) == 2
            routes = "/predict /predict/batch /read /read/batch /explain /feedback /models /train /healthz /readyz"
            routes = [*routes.split(), "/metrics", "/", "/admin", "/docs", "/nope", "/feedback/review"]
            for _ in range(2):  # every route, method and status a label set of its own: the metrics files grow
                for route in routes:
                    for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                        c.request(method, route, headers={"Connection": "close"})
                    for body in (b"x", b"\x89PNG\r\n\x1a\n"):
                        c.post(route, content=body, headers={"Content-Type": "image/png"})
                    c.post(route, json={"pixels": STROKE})
            answers = [c.post("/predict", json={"pixels": STROKE}, headers={"Connection": "close"}) for _ in range(40)]
            assert [a.status_code for a in answers] == [200] * 40
            assert c.get("/healthz").status_code == 200
            assert c.get("/models").status_code == 200  # the cards of versions never cached: read in memory
            assert {worker_pid(s.url) for _ in range(40)} <= pids, "a worker died and was replaced"
            image = "data:image/png;base64," + base64.b64encode(save(seven(98))).decode()
            r = c.post("/feedback", json={"image": image, "label": 7})
            assert r.status_code in (201, 503), r.text  # stored if SQLite had a page to spare, else refused
            assert "SIGBUS" not in s.log_text() and "died" not in s.log_text().lower()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(default_folder(mount / "var"), ignore_errors=True)
