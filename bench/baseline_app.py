"""The two baselines bench/bench_predict.py serves beside the app, with uvicorn and the same workers:

- POST /trivial: FastAPI reading the JSON body and answering a constant, the floor of any endpoint;
- POST /decode: the same, plus the base64 and Pillow decoding of the image in it.

    uvicorn bench.baseline_app:app --workers 2 --no-access-log
"""

from __future__ import annotations

import base64
import io

from fastapi import FastAPI
from PIL import Image
from pydantic import BaseModel

app = FastAPI()


class Body(BaseModel):
    image: str


@app.get("/readyz")
async def ready() -> dict:
    return {"status": "ok"}


@app.post("/trivial")
async def trivial(body: Body) -> dict:
    return {"digit": 7, "size": len(body.image)}


@app.post("/decode")
async def decode(body: Body) -> dict:
    data = base64.b64decode(body.image.split(",", 1)[-1])
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return {"digit": 7, "width": img.width, "height": img.height}
