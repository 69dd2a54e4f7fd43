"""Weights files: `.npz` with the network's arrays (`Network.named_params`) and the model card as JSON.

Loading never unpickles (allow_pickle=False) and checks everything a damaged or foreign file could
get wrong before a network is built from it. Saving is atomic: a reader sees the old file or the
complete new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from model.card import CardError, ModelCard
from model.files import atomic_file
from model.network import Network
from model.predictor import Predictor
from model.spec import N_CLASSES, N_PIXELS

METADATA_KEY = "metadata"


class WeightsError(ValueError):
    """A weights file that cannot be served: unreadable, incomplete, mis-shaped or not finite."""


DETECTOR = "D"  # prefix of the detector's arrays: DW0, Db0, ...


def save(path: str | os.PathLike, network: Network, card: ModelCard, detector: Network | None = None) -> Path:
    """Write network, card and detector (if any) to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"weights files end in .npz, got {path.name!r}")
    if list(card.layers) != network.spec:
        raise ValueError(f"the card describes layers {card.layers}, the network has {network.spec}")
    if (detector is None) != (card.detector is None) or (detector and card.detector.layers != detector.sizes):
        raise ValueError("the card must describe the detector exactly when there is one")
    arrays = dict(network.named_params())
    if detector is not None:
        arrays |= {DETECTOR + k: a for k, a in detector.named_params().items()}
    arrays[METADATA_KEY] = np.array(json.dumps(card.as_dict(), sort_keys=True))  # a 0-d unicode array
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        np.savez(f, **arrays)  # to a file object, so no ".npz" is appended to the temp name
    return path


def _reason(e: Exception) -> str:
    # An OSError's text names the file; the caller's `name` already says which one.
    return e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"


def read_card(path: str | os.PathLike, name: str | None = None) -> ModelCard:
    """The card alone, without building the network: listing versions never loads the arrays.

    Errors name the file as `name` (default: its path).
    """
    name = name or str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return _card(npz[METADATA_KEY], name)
    except FileNotFoundError:
        raise WeightsError(f"{name}: file not found") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise WeightsError(f"{name}: unreadable: {_reason(e)}") from None


def _card(entry: np.ndarray, name: str) -> ModelCard:
    try:
        return ModelCard.from_dict(json.loads(str(entry[()])))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise WeightsError(f"{name}: metadata is not JSON ({e})") from None
    except CardError as e:
        raise WeightsError(f"{name}: {e}") from None


def load(path: str | os.PathLike, name: str | None = None) -> tuple[Network, ModelCard]:
    """The classifier and its card (see load_predictor for the detector too)."""
    predictor = load_predictor(path, name)
    return predictor.network, predictor.card


def load_predictor(path: str | os.PathLike, name: str | None = None) -> Predictor:
    """Read and validate a weights file; raise WeightsError saying what is wrong, naming the file `name`
    (default: its path)."""
    name = name or str(path)
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise WeightsError(f"{name}: not an .npz archive")
            arrays = {k: npz[k] for k in npz.files}
    except WeightsError:
        raise
    except FileNotFoundError:
        raise WeightsError(f"{name}: file not found") from None
    except ValueError as e:  # pickled content is refused by allow_pickle=False
        raise WeightsError(f"{name}: refused: {e}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
        raise WeightsError(f"{name}: unreadable or truncated ({_reason(e)})") from None
    return from_arrays(arrays, name)


def _network(layers: object, name: str, dtype: np.dtype, outputs: int = N_CLASSES) -> Network:
    """The (zeroed) network a card describes, refused unless it reads 784 pixels and gives `outputs` scores."""
    try:
        network = Network(layers, dtype)  # type: ignore[arg-type]
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{name}: the card describes an impossible network: {e}") from None
    out = network.layers[-1].units
    if network.n_inputs != N_PIXELS or out != outputs:
        raise WeightsError(f"{name}: layers must run from {N_PIXELS} inputs to {outputs} outputs, got {layers}")
    return network


def from_arrays(arrays: dict[str, np.ndarray], name: str = "weights") -> Predictor:
    if METADATA_KEY not in arrays:
        raise WeightsError(f"{name}: no '{METADATA_KEY}' entry")
    card = _card(arrays[METADATA_KEY], name)
    dtypes = {a.dtype for k, a in arrays.items() if k != METADATA_KEY}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise WeightsError(f"{name}: arrays must all be float32 or all float64, got {sorted(map(str, dtypes))}")
    dtype = next(iter(dtypes))
    network = _network(card.layers, name, dtype)
    detector = _network(card.detector.layers, f"{name} (detector)", dtype, 2) if card.detector else None
    targets = dict(network.named_params())
    targets |= {DETECTOR + k: a for k, a in detector.named_params().items()} if detector else {}
    if set(arrays) != set(targets) | {METADATA_KEY}:
        missing, extra = sorted(set(targets) - set(arrays)), sorted(set(arrays) - set(targets) - {METADATA_KEY})
        raise WeightsError(f"{name}: wrong arrays (missing {missing}, unexpected {extra})")
    for key, target in targets.items():
        if arrays[key].shape != target.shape:
            raise WeightsError(f"{name}: {key} has shape {arrays[key].shape}, expected {target.shape}")
        if not np.isfinite(arrays[key]).all():
            raise WeightsError(f"{name}: {key} contains NaN or infinite values")
        target[...] = arrays[key]
    return Predictor(network, card, detector)
