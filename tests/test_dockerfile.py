"""The Dockerfile, checked without Docker (no engine on these machines): the tree its COPY lines build
serves on its own, through its CMD, and its HEALTHCHECK command passes against it."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from servers import ROOT, registry_of, uvicorn_server

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)  # join continuation lines
    return [line[len(name) + 1 :].strip() for line in text.splitlines() if line.startswith(name + " ")]


def test_image_basics():
    assert re.search(r"^FROM python:3\.\d+-slim", DOCKERFILE, re.M)
    assert _instructions("USER") == ["digits"]  # not root
    assert _instructions("EXPOSE") == ["8000"]
    copied = {c.split()[0] for c in _instructions("COPY")}
    assert {"weights", "data", "templates", "static", "model", "app", "digits"} <= copied


def test_the_copied_tree_serves_through_cmd_and_passes_healthcheck(tmp_path):
    app_dir = tmp_path / "app"
    for line in _instructions("COPY"):
        *sources, dst = line.split()
        for src in sources:
            target = app_dir / dst / Path(src).name if dst.endswith("/") else app_dir / dst
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / src, target)
    # Mark the copied page, to be sure the server below serves this tree and not the repository.
    page = app_dir / "templates" / "index.html"
    page.write_text(page.read_text().replace("Draw a digit on the pad.", "Draw a digit on the pad (image tree)."))
    cmd = json.loads(_instructions("CMD")[0])
    assert cmd[:2] == ["digits", "serve"] and "--workers" in cmd
    # The CMD, from the copied tree, on loopback: the console script is `python -m digits`.
    args = [a for a in cmd[2:]]
    args = [a for i, a in enumerate(args) if not (a == "--port" or (i and args[i - 1] == "--port"))]
    args[args.index("--host") + 1] = "127.0.0.1"
    command = [sys.executable, "-m", "digits", "serve", *args]
    with uvicorn_server(tmp_path / "runtime", cwd=app_dir, command=command) as server:
        health = json.loads(re.search(r"HEALTHCHECK .*?CMD (\[.*\])", re.sub(r"\\\n\s*", " ", DOCKERFILE)).group(1))
        port = server.url.rsplit(":", 1)[1]
        health = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in health]
        health[0] = sys.executable if health[0] == "python" else health[0]
        assert subprocess.run(health, cwd=app_dir, timeout=10).returncode == 0
        assert "(image tree)" in httpx.get(server.url + "/").text
        log = server.log_text()
    assert "Started parent process" in log  # several workers, as in the image
    assert {"cnn", "default", "seed"} <= set(registry_of(tmp_path / "runtime").versions())
