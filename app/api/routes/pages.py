"""The two pages: the drawing pad at / and the admin page at /admin, and the offline API docs."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.api.deps import services
from app.api.schemas import MAX_BATCH_SIZE, MAX_EPOCHS
from app.api.security_headers import PAGE_POLICY
from app.services.job_store import ACTIVE
from model.config import MAX_SHIFT, PRESETS
from model.optimizers import OPTIMIZERS, SCHEDULES
from model.paths import REPO_ROOT

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=REPO_ROOT / "templates")

# The admin form offers what the API accepts: the same names and bounds, from where they are defined.
TRAIN_FORM = {
    "presets": list(PRESETS),
    "optimizers": list(OPTIMIZERS),
    "schedules": list(SCHEDULES),
    "max_epochs": MAX_EPOCHS,
    "max_batch_size": MAX_BATCH_SIZE,
    "max_shift": MAX_SHIFT,
    "active_states": [str(s) for s in ACTIVE],
}


@router.get("/", response_class=HTMLResponse)
def draw_page(request: Request) -> HTMLResponse:
    model = services(request).holder.current
    return templates.TemplateResponse(
        request, "index.html", {"page": "draw", "model_version": model.version if model else None}
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "admin.html", {"page": "admin", **TRAIN_FORM})


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    """Swagger UI from the vendored copy in static/: the docs work offline, like the pages."""
    page = get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title="Digits API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
    )
    page.headers["Content-Security-Policy"] = _docs_policy(page.body.decode())
    return page


def _docs_policy(html: str) -> str:
    """The pages' policy, with Swagger UI's own inline start-up script allowed by its hash, and inline
    styles (its React components set style attributes)."""
    inline = re.findall(r"<script>(.*?)</script>", html, re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline)
    return PAGE_POLICY.replace("script-src 'self'", f"script-src 'self' {hashes}").replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'"
    )
