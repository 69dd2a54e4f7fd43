"""POST /explain: the answer to one digit and how the served network reached it (model.explain).

Same inputs as /predict. Feature maps and pictures travel as bytes (base64 of values quantised to 0..255
between a low and a high), vectors to 6 significant digits: the shipped CNN's explanation is about 55 KB. The
network passes (the trace, the backward pass, the occlusion batch) run in the worker's pool.
"""

from __future__ import annotations

import base64
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request

from app.api.deps import loaded_model, services
from app.api.inputs import single_input
from app.api.predict_docs import ERRORS, read_body
from app.api.routes.predict import normalise_image, predictions
from app.api.schemas import Attribution, Encoded, Explanation, FirstLayer, LayerActivation, SumTerm, UnitSum
from app.services.image_work import ImageWork
from model import explain as inside
from model.layers import Layer, describe
from model.network import Network

router = APIRouter(tags=["explain"])
LayerQuery = Annotated[int | None, Query(ge=0, description="with `unit`: a dense layer's index, for that unit's sum")]
UnitQuery = Annotated[int | None, Query(ge=0, description="with `layer`: the unit whose sum w*x + b to show")]


def encode(a: np.ndarray, signed: bool = False) -> Encoded:
    """An array as bytes between its low and high (symmetric about 0 when signed, so 0 stays mid-grey)."""
    a = np.asarray(a, np.float32)
    low, high = float(a.min(initial=0)), float(a.max(initial=0))
    if signed:
        high = max(abs(low), high)
        low = -high
    span = high - low or 1.0
    q = np.rint((a - low) * (255 / span)).clip(0, 255).astype(np.uint8)
    return Encoded(shape=list(a.shape), low=low, high=high, data=base64.b64encode(q.tobytes()).decode())


MAX_CHANNELS = 64  # feature maps sent per layer: the most active, when a network has more
MAX_VALUES = 4096  # a longer vector is sent quantised, as maps are


def layer_activation(i: int, layer: Layer, out: np.ndarray) -> LayerActivation:
    """One layer's output as the API sends it: small vectors exactly, the rest as bytes; of a layer with
    more than MAX_CHANNELS feature maps, the most active (the CNN's 16 and 64 all go)."""
    common = {"index": i, "kind": layer.kind, "name": inside.describe_layer(layer), "shape": list(out.shape)}
    if out.ndim == 1 and len(out) <= MAX_VALUES:
        return LayerActivation(**common, values=[float(f"{v:.6g}") for v in out.tolist()])
    if out.ndim == 3 and out.shape[2] > MAX_CHANNELS:
        channels = np.sort(np.argsort(-out.mean(axis=(0, 1)), kind="stable")[:MAX_CHANNELS])
        return LayerActivation(**common, channels=[int(c) for c in channels], maps=encode(out[:, :, channels]))
    return LayerActivation(**common, maps=encode(out))


def _layers(network: Network, e: inside.Explanation) -> list[LayerActivation]:
    pairs = zip(network.layers, e.outputs[1:], strict=True)
    return [layer_activation(i, layer, out) for i, (layer, out) in enumerate(pairs)]


def _unit_sum(network: Network, e: inside.Explanation, layer: int | None, unit: int | None) -> UnitSum | None:
    if layer is None and unit is None:
        return None
    if layer is None or unit is None:
        raise HTTPException(422, "a unit's sum needs both `layer` and `unit`")
    try:
        s = inside.unit_sum(network, e.outputs, layer, unit)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    terms = [SumTerm(input=j, weight=w, x=x) for j, w, x in s.terms]
    return UnitSum(
        layer=s.layer, unit=s.unit, terms=terms, rest=s.rest, rest_count=s.rest_count, bias=s.bias, value=s.value
    )


@router.post(
    "/explain",
    response_model=Explanation,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=read_body("/explain"),
    summary="Explain one digit's answer",
)
async def explain(request: Request, layer: LayerQuery = None, unit: UnitQuery = None) -> Explanation:
    """One image, sent as to /predict: its answer, every layer's activations, the first layer's weights as
    pictures, which pixels pushed toward the answer rather than the runner-up (the backward pass's
    gradient, gradient times input, and occlusion), and with `?layer=L&unit=U` one dense unit's sum."""
    model = loaded_model(request)
    x, photo = await single_input(request), False
    work: ImageWork = services(request).image_work
    if isinstance(x, bytes):
        x, photo = await normalise_image(work, work.budget(), x)
    network = model.predictor.network
    e = await work.in_pool(lambda: inside.explain(network, x.reshape(-1)))
    picture = network.layers[e.picture_layer]
    return Explanation(
        prediction=predictions(request, x[None], np.array([photo]), model, return_input=False)[0],
        network=describe(network.spec),
        temperature=model.predictor.temperature_of(photo),
        input=encode(x),
        layers=_layers(network, e),
        first_layer=FirstLayer(
            layer=e.picture_layer,
            kind=picture.kind,
            count=picture.params["W"].shape[1],
            units=e.picture_units,
            weights=encode(e.pictures, signed=True),
        ),
        attribution=Attribution(
            answer=e.answer,
            versus=e.versus,
            logit_gap=float(e.outputs[-1][e.answer] - e.outputs[-1][e.versus]),
            gradient=encode(e.gradient.reshape(28, 28), signed=True),
            contribution=encode(e.contribution.reshape(28, 28), signed=True),
            occlusion=encode(e.occlusion.reshape(28, 28), signed=True),
        ),
        unit_sum=_unit_sum(network, e, layer, unit),
    )
