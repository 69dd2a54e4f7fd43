"""The inside view of the drawing page, in Debian's Chromium against a real uvicorn server, for each kind of
network the product ships (the seed 784-10-10, the MLP, the CNN), at desktop and phone widths."""

import time

import httpx
import pytest
from browser import FOUR_OR_NINE, draw_digit, mouse_stroke, wait_prediction
from conftest import STROKE
from playwright.sync_api import expect
from servers import uvicorn_server
from test_browser import PEN_UP_TO_ANSWER

pytestmark = pytest.mark.browser
TOKEN = "inside-token"
ANSWERED = (
    "() => document.querySelector('.answer').dataset.revision === document.querySelector('#draw').dataset.revision"
)
INSIDE_MS = (
    "() => document.querySelector('#inside').dataset.explainedAt - document.querySelector('#draw').dataset.penUpAt"
)
EXPLAINED = (
    "() => document.querySelector('#inside').dataset.revision === document.querySelector('.answer').dataset.revision"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with uvicorn_server(tmp_path_factory.mktemp("inside") / "var", workers=1, token=TOKEN) as s:
        yield s


def _serve(server, version: str) -> None:
    """Activate a version and wait until the worker answers with it (it follows within a second)."""
    r = httpx.post(f"{server.url}/models/{version}/activate", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 5
    while httpx.post(server.url + "/predict", json={"pixels": STROKE}).json()["model_version"] != version:
        assert time.monotonic() < deadline, f"{version} not served 5 s after its activation"
        time.sleep(0.05)


def _page(browser, server, phone: bool = False):
    size = {"width": 390, "height": 844} if phone else {"width": 1100, "height": 800}
    ctx = browser.new_context(viewport=size, device_scale_factor=3 if phone else 1, has_touch=True, is_mobile=phone)
    page = ctx.new_page()
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    ctx.on("request", lambda r: None if r.url.startswith((server.url, "data:")) else problems.append(r.url))
    page.goto(server.url + "/")
    return ctx, page, problems


def _open_inside(page) -> None:
    expect(page.locator("#inside-open")).to_be_visible()
    page.click("#inside-open")
    page.wait_for_function(EXPLAINED, timeout=10_000)


@pytest.mark.parametrize(
    "version, first_title, pictures, equations",
    [
        ("seed", "First layer's units as templates", 10, True),
        ("default", "First layer's units as templates", 32, True),
        ("cnn", "First layer's filters", 16, False),
    ],
)
@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_the_inside_view_shows_the_served_network(browser, server, tmp_path, version, first_title, pictures,
                                                  equations, phone):  # fmt: skip
    _serve(server, version)
    ctx, page, problems = _page(browser, server, phone)
    try:
        draw_digit(page, 7)
        assert wait_prediction(page, 7) == "7"
        _open_inside(page)
        expect(page.locator("#inside")).to_have_attribute("data-version", version)
        expect(page.locator("#first-title")).to_have_text(first_title)
        expect(page.locator("#first-pictures canvas")).to_have_count(pictures)
        expect(page.locator("#why-title")).to_contain_text("7")
        kinds = page.eval_on_selector_all("#layers > li", "els => els.map(e => e.dataset.kind)")
        spec = httpx.post(server.url + "/explain", json={"pixels": STROKE}).json()
        assert kinds == [layer["kind"] for layer in spec["layers"]]
        if version == "cnn":  # the first convolution's 16 feature maps of 24x24
            maps = page.locator("#layers > li").first.locator("canvas")
            expect(maps).to_have_count(16)
            assert maps.first.evaluate("c => [c.width, c.height]") == [24, 24]
        expect(page.locator("#equations")).to_be_visible() if equations else expect(
            page.locator("#equations")
        ).to_be_hidden()
        # A dense unit's sum, on click: its terms, the rest and the bias add up to the value shown.
        unit = page.locator("#equation-rows button.unit" if equations else "li[data-kind=dense] button.unit").first
        shown = float(unit.locator(".val").text_content())
        unit.click()
        expect(page.locator("#unit-sum h4")).to_be_visible()
        total = float(page.locator("#unit-sum p").text_content().rsplit("total ", 1)[1].rstrip("."))
        assert total == pytest.approx(shown, abs=0.01 + 0.001 * abs(shown))
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= (390 if phone else 1100), f"the page scrolls sideways: {width} px"
        page.screenshot(path=str(tmp_path / f"inside-{version}.png"), full_page=True)
    finally:
        ctx.close()
        _serve(server, "cnn")
    assert problems == []


def test_attribution_explains_a_four_that_could_be_a_nine(browser, server):
    ctx, page, problems = _page(browser, server)
    for stroke in FOUR_OR_NINE:
        mouse_stroke(page, stroke)
    digit = wait_prediction(page)
    _open_inside(page)
    title = page.text_content("#why-title")
    assert digit in "49" and {digit, "4", "9"} == {"4", "9"}, title
    assert "4" in title and "9" in title, title
    # The map over the drawing has pixels for the answer and (from the backward pass) for the runner-up.
    for kind in ("contribution", "gradient", "occlusion"):
        page.click(f".map-kind button[data-map={kind}]")
        expect(page.locator("#why-map")).to_have_attribute("data-map", kind)
        red, blue = page.evaluate(
            """() => { const c = document.querySelector('#why-map');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                       let red = 0, blue = 0;
                       for (let i = 0; i < d.length; i += 4) {
                         if (d[i] > d[i + 2] + 60) red++; else if (d[i + 2] > d[i] + 60) blue++; }
                       return [red, blue]; }"""
        )
        assert red > 100, (kind, red, blue)  # some of the ink made it the answer
        if kind != "occlusion":  # erasing any one patch may lower the gap: then occlusion has no blue
            assert blue > 100, (kind, red, blue)
    ctx.close()
    assert problems == []


def test_the_answer_still_comes_first_with_the_inside_view_open(browser, server):
    """The answer shows within 100 ms of the pen lifting (median) with the view open; the view follows."""
    ctx, page, problems = _page(browser, server)
    draw_digit(page, 1)
    wait_prediction(page, 1)
    _open_inside(page)
    answer_ms, inside_ms = [], []
    for digit in (7, 0, 4, 1, 7, 0):
        page.click("button#clear")
        page.locator("#draw").scroll_into_view_if_needed()  # opening the view scrolled to it
        revision = page.evaluate("document.querySelector('#draw').dataset.revision")
        draw_digit(page, digit)
        assert page.evaluate("document.querySelector('#draw').dataset.revision") != revision  # ink was drawn
        page.wait_for_function(ANSWERED, timeout=5000)
        assert page.text_content("#prediction").strip() == str(digit)
        answer_ms.append(page.evaluate(PEN_UP_TO_ANSWER))
        page.wait_for_function(EXPLAINED, timeout=5000)
        inside_ms.append(page.evaluate(INSIDE_MS))
    ctx.close()
    answer, inside = sorted(answer_ms)[3], sorted(inside_ms)[3]
    print(f"\npen up to answer {answer:.0f} ms, to the inside view {inside:.0f} ms (medians)")
    assert answer <= 100
    assert all(a <= i for a, i in zip(answer_ms, inside_ms, strict=True))
    assert problems == []
