"""OpenAPI documentation of /predict, /read and their batches: every input form with a working example.

The endpoints read their bodies themselves (one path takes multipart, JSON and raw images), so
FastAPI cannot derive these request bodies from parameters; they are written out here.
"""

from __future__ import annotations

import base64
import io

from app.api.schemas import ErrorBody, PredictBatchJSON, PredictImage, PredictPixels

IMAGE_TYPES = "image/png, image/jpeg, image/webp, image/bmp, image/gif"


def _multipart(field: str, many: bool, example: str) -> dict:
    binary = {"type": "string", "format": "binary"}
    return {
        "schema": {
            "type": "object",
            "properties": {field: {"type": "array", "items": binary} if many else binary},
            "required": [field],
        },
        "encoding": {field: {"contentType": IMAGE_TYPES}},
        "examples": {"image files": {"summary": example, "value": {field: "(the bytes of digit.png)"}}},
    }


def _example_png() -> str:
    """A small drawn "1" for the examples, made once at import."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (56, 56), (0, 0, 0, 0))
    ImageDraw.Draw(img).line([(30, 8), (26, 48)], fill=(0, 0, 0, 255), width=5)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


_TINY_PNG = _example_png()
ERRORS = {
    400: {"model": ErrorBody, "description": "undecodable image, bad base64 or bad JSON"},
    413: {"model": ErrorBody, "description": "body over the size limit, or image over the pixel limit"},
    415: {"model": ErrorBody, "description": "unsupported content type or image format"},
    422: {"model": ErrorBody, "description": "no ink found; NaN, out-of-range or wrong-shape pixels"},
    503: {"model": ErrorBody, "description": "no valid model loaded yet"},
}


def _single_body(path: str) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": _multipart(
                    "file", False, f"curl -F file=@digit.png http://127.0.0.1:8000{path}"
                ),
                "application/json": {
                    "schema": {"oneOf": [PredictImage.model_json_schema(), PredictPixels.model_json_schema()]},
                    "examples": {
                        "data URL (a browser canvas)": {"value": {"image": f"data:image/png;base64,{_TINY_PNG}"}},
                        "bare base64": {"value": {"image": _TINY_PNG}},
                        "pixels 0..255, 784 flat": {
                            "value": {"pixels": [0] * 300 + [255] * 20 + [0] * 464, "scale": "byte"}
                        },
                        "pixels 0..1, 28x28": {"value": {"pixels": [[0.0] * 14 + [1.0] + [0.0] * 13] * 28}},
                    },
                },
                "image/png": {
                    "schema": {"type": "string", "format": "binary"},
                    "examples": {
                        "raw bytes": {
                            "summary": "curl -H 'Content-Type: image/png' --data-binary @digit.png "
                            f"http://127.0.0.1:8000{path} (also image/jpeg, image/webp, image/bmp, image/gif)",
                            "value": "(the bytes of digit.png)",
                        }
                    },
                },
            },
        }
    }


def _batch_body(path: str) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": _multipart(
                    "files", True, f"curl -F files=@a.png -F files=@b.png http://127.0.0.1:8000{path}"
                ),
                "application/json": {
                    "schema": PredictBatchJSON.model_json_schema(),
                    "examples": {
                        "two images": {"value": {"images": [f"data:image/png;base64,{_TINY_PNG}", _TINY_PNG]}}
                    },
                },
            },
        }
    }


def read_body(path: str, batch: bool = False) -> dict:
    """The request body of /read or /read/batch: the same forms as /predict's."""
    return _batch_body(path) if batch else _single_body(path)


PREDICT_BODY = _single_body("/predict")
BATCH_BODY = _batch_body("/predict/batch")
