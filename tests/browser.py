"""Drawing on the page with Debian's Chromium through Playwright: mouse strokes and real touch drags."""

from __future__ import annotations

import math

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Digits as strokes in 0..1 of the pad (x right, y down).
SHAPES = {
    1: [[(0.52, 0.15), (0.48, 0.85)]],
    7: [[(0.25, 0.2), (0.75, 0.2), (0.42, 0.85)]],
    0: [
        [
            (
                0.5 + 0.22 * math.cos(a / 20 * 2 * math.pi - math.pi / 2),
                0.5 + 0.32 * math.sin(a / 20 * 2 * math.pi - math.pi / 2),
            )
            for a in range(21)
        ]
    ],
    4: [[(0.32, 0.15), (0.26, 0.55), (0.74, 0.55)], [(0.62, 0.3), (0.6, 0.85)]],
}

# A 4 whose arms nearly close at the top: the CNN reads it, unsure, as a 4 or a 9.
FOUR_OR_NINE = [
    [(0.36, 0.16), (0.3, 0.52), (0.72, 0.52)],
    [(0.36, 0.16), (0.54, 0.12), (0.68, 0.18)],
    [(0.68, 0.18), (0.66, 0.88)],
]


def pad_to_page(page, u: float, v: float) -> tuple[float, float]:
    """0..1 of the drawing surface -> page coordinates, inside the canvas border."""
    box = page.evaluate(
        """() => { const c = document.querySelector('canvas#draw'); const r = c.getBoundingClientRect();
                   return {x: r.left + c.clientLeft, y: r.top + c.clientTop, w: c.clientWidth, h: c.clientHeight}; }"""
    )
    return box["x"] + u * box["w"], box["y"] + v * box["h"]


def mouse_stroke(page, points) -> None:
    x, y = pad_to_page(page, *points[0])
    page.mouse.move(x, y)
    page.mouse.down()
    for u, v in points[1:]:
        x, y = pad_to_page(page, u, v)
        page.mouse.move(x, y, steps=12)
    page.mouse.up()


def touch_stroke(cdp, page, points, steps: int = 12) -> None:
    """A real touch drag through the browser's input pipeline (Playwright has only tap)."""
    x, y = pad_to_page(page, *points[0])
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y, "id": 1}]})
    for (u0, v0), (u1, v1) in zip(points, points[1:], strict=False):
        for i in range(1, steps + 1):
            u, v = u0 + (u1 - u0) * i / steps, v0 + (v1 - v0) * i / steps
            x, y = pad_to_page(page, u, v)
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y, "id": 1}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def draw_digit(page, digit: int) -> None:
    for stroke in SHAPES[digit]:
        mouse_stroke(page, stroke)


def ink_pixels(page) -> int:
    return page.evaluate(
        """() => { const c = document.querySelector('canvas#draw');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++; return n; }"""
    )


def wait_prediction(page, digit: int | None = None, timeout: float = 10_000) -> str:
    if digit is None:
        page.wait_for_function("() => document.querySelector('#prediction').textContent.trim() !== ''", timeout=timeout)
    else:
        page.wait_for_function(
            f"() => document.querySelector('#prediction').textContent.trim() === '{digit}'", timeout=timeout
        )
    return page.text_content("#prediction").strip()


def number_strokes(digits: str, step: float = 0.25, size: float = 0.8) -> list:
    """A number's strokes on the wide (2:1) number pad: each digit of SHAPES `size` of the pad high,
    its cell `step` of the pad wide (0.25: about a tenth of the digit's height between two 7s)."""
    out = []
    for k, d in enumerate(digits):
        left = 0.03 + k * step
        for stroke in SHAPES[int(d)]:
            out.append([(left + 0.5 * size * (x - 0.2), 0.1 + size * (y - 0.1)) for x, y in stroke])
    return out


def write_number(page, digits: str, **kw) -> None:
    for stroke in number_strokes(digits, **kw):
        mouse_stroke(page, stroke)


def wait_number(page, text: str, timeout: float = 10_000) -> None:
    page.wait_for_function(
        f"""() => document.querySelector('#number').textContent === '{text}'
                  && document.querySelector('.answer').dataset.revision
                     === document.querySelector('#draw').dataset.revision""",
        timeout=timeout,
    )
