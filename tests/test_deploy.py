"""deploy/: the Compose file checked against the app's own CLI and settings (no Docker engine here),
and its nginx.conf run for real by Debian's nginx in front of two replicas sharing PostgreSQL."""

from __future__ import annotations

import base64
import re
import time

import httpx
import yaml
from conftest import STROKE, TOKEN, png_bytes
from servers import ROOT, nginx_proxy, uvicorn_server
from test_shared_state import ADMIN, shared_env, sse_events, worker

from app.infra.settings import Settings
from digits.cli import build_parser

COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
APP_SERVICES = ("migrate", "web1", "web2", "worker")


def _env(service: str) -> dict[str, str]:
    env = COMPOSE["services"][service]["environment"]
    return {k: re.sub(r"\$\{(\w+)[^}]*\}", lambda m: f"<{m.group(1)}>", str(v)) for k, v in env.items()}


def test_compose_has_the_processes_and_they_agree():
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "migrate", "web1", "web2", "worker", "proxy"}
    # Every app process: the same image, database and admin token; each replica its own runtime volume.
    assert {services[s]["image"] for s in APP_SERVICES} == {"digits:local"}
    envs = [_env(s) for s in APP_SERVICES]
    assert all(e == envs[0] for e in envs)
    assert envs[0]["DIGITS_DATABASE_URL"] == "postgresql://digits:<POSTGRES_PASSWORD>@postgres:5432/digits"
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "digits"
    volumes = [services[s]["volumes"][0].split(":") for s in ("web1", "web2", "worker")]
    assert len({v[0] for v in volumes}) == 3 and {v[1] for v in volumes} == {"/var/lib/digits"}
    # The settings are ones the app accepts, and the commands are ones its CLI has.
    settings = Settings(**{k.removeprefix("DIGITS_").lower(): v for k, v in envs[0].items() if k.startswith("DIGITS_")})
    assert settings.uses_workers and settings.worker_timeout_s == 20
    parser = build_parser()
    commands = {s: services[s]["command"] for s in APP_SERVICES}
    assert commands["migrate"] == ["digits", "db", "upgrade"] and commands["worker"] == ["digits", "worker"]
    for command in commands.values():
        assert command[0] == "digits" and parser.parse_args(command[1:]).func
    assert all(parser.parse_args(commands[s][1:]).port == 8000 for s in ("web1", "web2"))
    assert services["web1"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["proxy"]["ports"] == ["8000:80"] and "ports" not in services["web1"]
    # The replicas take X-Forwarded-For from the proxy alone, at its fixed address (issue 22, 2).
    proxy_ip = services["proxy"]["networks"]["default"]["ipv4_address"]
    assert envs[0]["FORWARDED_ALLOW_IPS"] == proxy_ip


def test_the_proxy_config_in_front_of_two_replicas(pg_url, tmp_path):
    # The replicas trust forwarded addresses from whom compose.yaml says, its proxy's address being this
    # nginx's 127.0.0.1 here.
    proxy_ip = COMPOSE["services"]["proxy"]["networks"]["default"]["ipv4_address"]
    trusted = _env("web1")["FORWARDED_ALLOW_IPS"].replace(proxy_ip, "127.0.0.1")
    env = {**shared_env(pg_url), "DIGITS_FEEDBACK_RATE": "3/minute", "FORWARDED_ALLOW_IPS": trusted}
    with (
        uvicorn_server(tmp_path / "a", env=env, token=TOKEN) as a,
        uvicorn_server(tmp_path / "b", env=env, token=TOKEN) as b,
        nginx_proxy([a.url.removeprefix("http://"), b.url.removeprefix("http://")], tmp_path / "nginx") as proxy,
        httpx.Client(base_url=proxy, timeout=30) as P,
        worker(tmp_path / "w", env),
    ):
        # Both replicas answer through it (each reports its process id in /readyz).
        pids = {P.get("/readyz").json()["worker"] for _ in range(20)}
        assert len(pids) == 2
        assert all(P.post("/predict", json={"pixels": STROKE}).status_code == 200 for _ in range(20))
        # The pages link to their assets through the proxy (absolute URLs carry the proxy's host and port).
        for page in ("/", "/admin"):
            html = P.get(page).text
            assets = re.findall(r'(?:href|src)="(http[^"]+/static/[^"]+)"', html)
            assert len(assets) >= 2 and all(u.startswith(proxy) for u in assets), assets
            assert all(httpx.get(u).status_code == 200 for u in assets)
        # Training progress streams through the proxy, unbuffered, from whichever replica.
        job = P.post("/train", json={"preset": "tiny", "epochs": 2}, headers=ADMIN).json()
        started = time.monotonic()
        events = sse_events(httpx.Client(base_url=proxy, headers=ADMIN), f"/train/{job['id']}/events")
        assert events[-1][1]["status"] == "succeeded" and sum(e == "progress" for e, _ in events) >= 2
        assert time.monotonic() - started < 90
        # An oversized body stops at the proxy, with the app's own answer (same limit, same words).
        too_big = b"x" * (Settings().max_body_bytes + 1)
        direct = httpx.post(f"{a.url}/predict", content=too_big, headers={"Content-Type": "image/png"})
        for _ in range(5):
            r = P.post("/predict", content=too_big, headers={"Content-Type": "image/png"})
            assert r.status_code == direct.status_code == 413 and r.json() == direct.json()
        exact = P.post("/predict", content=b"x" * Settings().max_body_bytes, headers={"Content-Type": "image/png"})
        assert exact.status_code == 400, exact.text  # at the limit: through to the app, which finds no image
        # Corrections through the proxy are keyed by the address the proxy saw (two people here: two loopback
        # source addresses), never by the X-Forwarded-For a client wrote (issue 22, 2).
        sent = (("127.0.0.7", "203.0.113.7"), ("127.0.0.9", "203.0.113.7"), ("127.0.0.7", "198.51.100.9"))
        for i, (source, forged) in enumerate(sent):
            image = "data:image/png;base64," + base64.b64encode(stroke_png(20 + 30 * i)).decode()
            with _from(source, proxy) as person:
                r = person.post("/feedback", json={"image": image, "label": 1}, headers={"X-Forwarded-For": forged})
            assert r.status_code == 201, r.text
        clients = [it["client"] for it in P.get("/feedback", headers=ADMIN).json()["items"]]
        assert len(clients) == 3 and len(set(clients)) == 2
        # A replica trusts X-Forwarded-For from its proxy only (uvicorn's FORWARDED_ALLOW_IPS): a client
        # that reaches it directly is known by its own address, whatever it writes...
        for i, replica in enumerate((a, b)):
            image = "data:image/png;base64," + base64.b64encode(stroke_png(5 + 3 * i)).decode()
            with _from("127.0.0.9", replica.url) as direct:
                r = direct.post(
                    "/feedback", json={"image": image, "label": 1}, headers={"X-Forwarded-For": "192.0.2.1"}
                )
            assert r.status_code == 201, r.text
        clients = [it["client"] for it in P.get("/feedback", headers=ADMIN).json()["items"]]
        assert len(clients) == 5 and len(set(clients)) == 2  # ...and the salt is the database's, not a replica's
        # One client with a new forged address each time is still one client to the rate limit.
        with _from("127.0.0.11", proxy) as person:
            codes = []
            for i in range(8):
                image = "data:image/png;base64," + base64.b64encode(stroke_png(40 + 2 * i)).decode()
                forged = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
                codes.append(person.post("/feedback", json={"image": image, "label": 1}, headers=forged).status_code)
        assert codes.count(201) <= 2 * 3 and codes.count(429) >= 2, codes  # 3 a minute on each of 2 replicas


def _from(source: str, url: str) -> httpx.Client:
    """A client whose connections leave from `source` (any 127.x address reaches the loopback)."""
    return httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address=source), timeout=30)


def stroke_png(x: int) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(img).line([(x, 20), (x + 10, 120)], fill=0, width=10)
    return png_bytes(img)
