"""Screenshots of both pages at desktop and phone width, for the README: python docs/make_screenshots.py

Starts a real server with the shipped weights, draws a digit on the pad, runs a tiny training job from
the admin page, and saves docs/{draw,number,admin}-{desktop,phone}.png and docs/photo-phone.png; then
the inside view for each shipped network: docs/inside-{seed,mlp,cnn}.png and docs/inside-phone.png.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))
sys.path.insert(0, str(DOCS.parent))

from browser import (  # noqa: E402
    ARGS,
    CHROMIUM,
    FOUR_OR_NINE,
    SHAPES,
    draw_digit,
    mouse_stroke,
    number_strokes,
    touch_stroke,
    wait_number,
    wait_prediction,
    write_number,
)
from servers import uvicorn_server  # noqa: E402

TOKEN = "screenshot-token"


def _photo(folder: Path) -> tuple[str, int]:
    import numpy as np

    from model.data import load_mnist
    from model.photo_set import photo

    test = load_mnist().test
    p = photo(test.x[3].reshape(28, 28), int(test.y[3]), np.random.default_rng(3), "ruled", "ballpoint-blue", "shadow")
    (folder / "photo.jpg").write_bytes(p.jpeg)
    return str(folder / "photo.jpg"), p.label


def _serve(server, version: str) -> None:
    import time

    import httpx

    r = httpx.post(f"{server.url}/models/{version}/activate", headers={"Authorization": f"Bearer {TOKEN}"})
    r.raise_for_status()
    time.sleep(1.2)  # the worker follows the pointer within a second


def inside_views(browser, server) -> None:
    """The inside view's top (the map, the first layer, the equations) for each network; the CNN's on the
    4 that could be a 9, and on a phone."""
    for version, name, viewport, scale in (
        ("seed", "seed", {"width": 1100, "height": 800}, 1),
        ("default", "mlp", {"width": 1100, "height": 800}, 1),
        ("cnn", "cnn", {"width": 1100, "height": 800}, 1),
        ("cnn", "phone", {"width": 390, "height": 844}, 2),
    ):
        _serve(server, version)
        ctx = browser.new_context(viewport=viewport, device_scale_factor=scale, has_touch=True)
        page = ctx.new_page()
        page.goto(server.url + "/")
        for stroke in FOUR_OR_NINE if version == "cnn" else SHAPES[7]:
            mouse_stroke(page, stroke)
        wait_prediction(page)
        page.click("#inside-open")
        page.wait_for_function(
            "() => document.querySelector('#inside').dataset.revision"
            " === document.querySelector('.answer').dataset.revision"
        )
        page.locator("#equation-rows button.unit, li[data-kind=dense] button.unit").first.click()
        page.wait_for_selector("#unit-sum h4")
        page.wait_for_timeout(500)
        box = page.locator("#inside").bounding_box()
        top = page.evaluate("window.scrollY") + box["y"]
        height = min(box["height"], 1500 if name == "seed" else 1200)
        page.screenshot(path=DOCS / f"inside-{name}.png", full_page=True, clip={**box, "y": top, "height": height})
        ctx.close()
    _serve(server, "cnn")


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        uvicorn_server(Path(tmp) / "var", token=TOKEN) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for name, viewport, scale in (
            ("desktop", {"width": 1100, "height": 760}, 1),
            ("phone", {"width": 390, "height": 844}, 2),
        ):
            ctx = browser.new_context(viewport=viewport, device_scale_factor=scale, has_touch=True)
            page = ctx.new_page()
            page.goto(server.url + "/")
            if name == "desktop":
                for digit in (7, 1, 4):  # two corrections for the review queue, then the 4 on screen
                    page.click("button#clear")
                    draw_digit(page, digit)
                    wait_prediction(page, digit)
                    if digit != 4:
                        page.click(f"#correct button[data-digit='{(digit + 1) % 10}']")
            else:
                cdp = ctx.new_cdp_session(page)
                for stroke in SHAPES[7]:
                    touch_stroke(cdp, page, stroke)
                wait_prediction(page, 7)
            page.wait_for_timeout(300)
            page.screenshot(path=DOCS / f"draw-{name}.png", full_page=True)
            if name == "phone":  # a photo of a digit on ruled paper, read on a phone
                with page.expect_file_chooser() as chooser:
                    page.click("#use-photo")
                path, label = _photo(Path(tmp))
                chooser.value.set_files(path)
                wait_prediction(page, label)
                page.wait_for_timeout(300)
                page.screenshot(path=DOCS / "photo-phone.png", full_page=True)

            page.click("#mode-number")  # a number, each digit boxed, one being corrected
            if name == "desktop":
                write_number(page, "7041")
            else:
                for stroke in number_strokes("417"):
                    touch_stroke(cdp, page, stroke)
            wait_number(page, "7041" if name == "desktop" else "417")
            page.locator("#boxes .box button").nth(1).click()
            page.wait_for_timeout(300)
            page.screenshot(path=DOCS / f"number-{name}.png", full_page=True)

            page.goto(server.url + "/admin")
            page.fill("#token", TOKEN)
            page.click("#sign-in")
            page.wait_for_selector("#admin:not([hidden])")
            if name == "desktop":
                page.select_option("#preset", "tiny")
                page.fill("input[name=epochs]", "30")
                page.click("#start")
                page.wait_for_function(
                    "() => document.querySelector('#run-status').textContent === 'succeeded'", timeout=120_000
                )
                page.locator("#models tr[data-version=default] summary", has_text="calibration").click()
            page.wait_for_timeout(300)
            page.screenshot(path=DOCS / f"admin-{name}.png", full_page=True)
            ctx.close()
        inside_views(browser, server)
        browser.close()
    print("wrote", ", ".join(sorted(p.name for p in DOCS.glob("*.png"))))


if __name__ == "__main__":
    main()
