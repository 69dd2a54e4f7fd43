"""digits: train, evaluate, predict and serve the handwritten-digit network.

digits train --preset default --out weights/default.npz
digits evaluate                     (the model a fresh install serves, weights/cnn.npz)
digits predict some.png
digits read number.png
digits serve --port 8000 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

import numpy as np

from model.config import ACTIVE, CHOICES, PRESETS, TrainConfig, preset
from model.data import DataError, Dataset, load_mnist
from model.evaluation import evaluate
from model.files import atomic_file
from model.paths import INITIAL_VERSION, WEIGHTS_DIR
from model.train import Progress
from model.weights import WeightsError

DEFAULT_WEIGHTS = str(WEIGHTS_DIR / f"{INITIAL_VERSION}.npz")  # what `digits serve` serves on a fresh install


def _config_flags(parser: argparse.ArgumentParser) -> None:
    """One --flag per TrainConfig field, so any hyperparameter can be overridden."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("hyperparameter overrides (default: the preset's)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        if f.name == "layers":
            group.add_argument(
                flag,
                nargs="+",
                metavar="L",
                type=_layer_arg,
                help="sizes of a dense stack, e.g. 784 512 256 10; or one JSON list of layer objects, e.g. "
                '\'[{"type": "conv", "filters": 8, "size": 5}, {"type": "flatten"}, {"type": "dense", "units": 10}]\'',
            )
        elif f.name in CHOICES:
            group.add_argument(flag, choices=CHOICES[f.name])
        elif hint in (int, int | None):
            group.add_argument(flag, type=int)
        elif hint is float:
            group.add_argument(flag, type=float)
        else:
            group.add_argument(flag, type=str)


def _layer_arg(text: str) -> int | list:
    if text.lstrip().startswith("["):
        try:
            layers = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"not a JSON list of layers: {e}") from None
        if not isinstance(layers, list):
            raise argparse.ArgumentTypeError("layers in JSON must be a list")
        return layers
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a layer size is an integer, got {text!r}") from None


def _overrides(args: argparse.Namespace) -> dict:
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    layers = values.get("layers")
    if layers and any(isinstance(v, list) for v in layers):
        if len(layers) != 1:
            raise SystemExit("--layers takes sizes, or one JSON list of layer objects, not both")
        values["layers"] = layers[0]
    return values


class _ProgressBar:
    """A tqdm bar over the run's steps, made at the first report (when the total is known)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.bar, self.last_step = quiet, None, 0

    def __call__(self, p: Progress) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=p.total_steps, unit="step", disable=self.quiet, file=sys.stderr)
        self.bar.update(p.step - self.last_step)
        self.last_step = p.step
        postfix = {"epoch": f"{p.epoch}/{p.epochs}", "loss": f"{p.loss:.4f}", "acc": f"{p.train_acc:.3f}"}
        if p.val_acc is not None:
            postfix["val"] = f"{p.val_acc:.4f}"
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    from model.experiment import run_experiment
    from model.weights import save

    try:
        config = preset(args.preset, **_overrides(args))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or f"weights/{args.preset}.npz")
    try:
        parent, corrections = _fine_tune_inputs(config, args.corrections)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if parent is not None:
        config = config.replace(parent=parent[0], layers=parent[1].card.layers)
    print(f"training preset {args.preset!r}: {json.dumps(config.as_dict())}", file=sys.stderr)
    bar = _ProgressBar(args.quiet)
    try:
        trained = run_experiment(
            config, args.data_dir, corrections=corrections, parent=parent and parent[1], on_progress=bar
        )
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    card = trained.card.replace(preset=args.preset)
    save(out, trained.network, card, trained.detector)
    canvas = card.canvas.accuracy if card.canvas else float("nan")
    print(
        f"test accuracy {card.test_accuracy:.4f} (validation {card.training.val_accuracy}, "
        f"canvas drawings {canvas:.4f}), {card.training.seconds:.1f} s of training; wrote {out}"
    )
    return 0


def _fine_tune_inputs(config: TrainConfig, corrections_file: str | None):
    """((parent file, its predictor) or None, the corrections file's training pool or None)."""
    from app.services.feedback_review import labelled_checksum
    from model.data import Dataset
    from model.experiment import Corrections
    from model.weights import load_predictor

    parent = None
    if config.fine_tunes:
        path = DEFAULT_WEIGHTS if config.parent == ACTIVE else str(config.parent)
        parent = path, load_predictor(path)
    if corrections_file is None:
        return parent, None
    with np.load(corrections_file, allow_pickle=False) as npz:  # as `digits feedback export` writes it
        pool = ~npz["holdout"]  # the holdout measures versions; training never sees it
        x, y, digests = npz["x"][pool], npz["y"][pool], [str(d) for d in npz["sha256"][pool]]
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8 or len(x) != len(y):
        raise ValueError(f"{corrections_file}: x must be uint8 (n, 28, 28) with n labels")
    return parent, Corrections(Dataset(x.reshape(len(x), -1), y), labelled_checksum(digests, y))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from model.experiment import retrofit
    from model.weights import load_predictor, save

    try:
        current = load_predictor(args.weights)
        card = current.card
        config = TrainConfig(**card.training.config) if card.training else preset("default")
        overrides = {k: v for k, v in (("detector_epochs", args.detector_epochs), ("negatives", args.negatives)) if v}
        if args.keep_detector and current.detector is None:
            raise ValueError(f"{args.weights} has no not-a-digit detector to keep")
        keep = current if args.keep_detector else None
        trained = retrofit(current.network, card, config.replace(**overrides), args.data_dir, keep_detector_of=keep)
    except (WeightsError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out or args.weights)
    save(out, trained.network, trained.card, trained.detector)
    cal, det = trained.card.calibration, trained.card.detector
    print(f"temperature {cal.temperature:.3f}, not sure below {cal.uncertain_below:.3f}; ECE {json.dumps(cal.ece)}")
    if det:
        print(f"detector {det.layers}, not a digit from {det.threshold:.3f}; AUROC {json.dumps(det.auroc)}")
    print(f"wrote {out}")
    return 0


def _review(runtime_dir: Path, database_url: str | None = None):
    from app.infra.db import open_db
    from app.infra.settings import SQLITE_FILE
    from app.services.feedback_review import Review
    from app.services.feedback_store import FeedbackStore

    if database_url:
        return Review(FeedbackStore(open_db(database_url), max_items=10**9))
    runtime_dir.mkdir(parents=True, exist_ok=True)
    return Review(FeedbackStore(runtime_dir / SQLITE_FILE, max_items=10**9))


def cmd_feedback(args: argparse.Namespace) -> int:
    """digits feedback export FILE / import FILE: the accepted corrections as a dataset file."""
    from app.services.feedback_store import FeedbackStatus

    review = _review(Path(args.runtime_dir), args.database_url)
    if args.action == "export":
        with atomic_file(Path(args.file)) as f:
            n = review.export(f)
        print(f"wrote {n} accepted corrections to {args.file}")
        return 0
    try:
        with np.load(args.file, allow_pickle=False) as npz:
            x, y = npz["x"], npz["y"]
            digests = [str(d) for d in npz["sha256"]] if "sha256" in npz.files else None
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {args.file}: not a corrections file ({e})", file=sys.stderr)
        return 1
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8 or len(x) != len(y) or (y > 9).any():
        print(f"error: {args.file}: x must be uint8 (n, 28, 28) and y n digits", file=sys.stderr)
        return 1
    status = FeedbackStatus.PENDING if args.pending else FeedbackStatus.ACCEPTED
    added = review.import_items(x, y, digests, status, client="import")
    print(f"imported {added} corrections as {status} ({len(y) - added} were there already)")
    return 0


def _print_evaluation(ev) -> None:
    print(f"accuracy {ev.accuracy:.4f} on {ev.n} test images")
    print("per class: " + "  ".join(f"{d}:{a:.4f}" for d, a in enumerate(ev.per_class)))
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("      " + " ".join(f"{d:>5}" for d in range(10)))
    for d, row in enumerate(ev.confusion):
        print(f"{d:>5} " + " ".join(f"{c:>5}" for c in row))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from model.weights import load

    try:
        net, _meta = load(args.weights)
        data = load_mnist(args.data_dir)
    except (WeightsError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    ev = evaluate(net, data.test)
    real = _holdout_evaluation(net, Path(args.runtime_dir), args.database_url)
    if args.json:
        print(json.dumps({**ev.as_dict(), "holdout": real.as_dict() if real else None}))
    else:
        _print_evaluation(ev)
        if real:
            print(f"real-drawing holdout: accuracy {real.accuracy:.4f} on {real.n} accepted corrections")
            print("per class: " + "  ".join(f"{d}:{a:.4f}" for d, a in enumerate(real.per_class)))
    return 0


def _holdout_evaluation(net, runtime_dir: Path, database_url: str | None = None):
    """The network on the accepted corrections' holdout (of the shared database, or of a runtime
    folder), if there is one."""
    from app.infra.settings import SQLITE_FILE

    if not database_url and not (runtime_dir / SQLITE_FILE).exists():
        return None
    x, y, _ = _review(runtime_dir, database_url).accepted("holdout")
    return evaluate(net, Dataset(x.reshape(len(x), -1), y)) if len(y) else None


def _predictor(path: str):
    """The weights file's predictor, or None after saying on stderr why it cannot be read."""
    from model.weights import load_predictor

    try:
        return load_predictor(path)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def cmd_predict(args: argparse.Namespace) -> int:
    from model.images import ImageError, read_bytes

    predictor = _predictor(args.weights)
    if predictor is None:
        return 1
    status = 0
    for path in args.images:
        try:
            x, photo = read_bytes(Path(path).read_bytes())  # (28, 28) float32 in [0, 1]; a photo of paper?
        except (OSError, ImageError) as e:
            print(f"{path}: error: {e}", file=sys.stderr)
            status = 1
            continue
        answers = predictor.answer(x.reshape(1, -1), photo=np.array([photo]))
        probs = answers.probabilities[0]
        digit = int(np.argmax(probs))
        result = {
            "file": path,
            "digit": digit,
            "confidence": round(float(probs[digit]), 6),
            "probabilities": [round(float(p), 6) for p in probs],
            "uncertain": bool(answers.uncertain[0]),
            "not_a_digit": bool(answers.is_not_digit[0]),
        }
        if args.json:
            print(json.dumps(result))
        else:
            verdict = "not a digit" if result["not_a_digit"] else "not sure" if result["uncertain"] else "sure"
            print(f"{path}: {digit} ({probs[digit]:.1%}, {verdict})")
            print("  " + "  ".join(f"{d}:{p:.3f}" for d, p in enumerate(probs)))
    return status


def _reading_dict(path: str, reading) -> dict:
    """A model.numbers.Reading as `digits read --json` prints it (the fields of POST /read)."""
    a = reading.answers
    digits = [
        {
            "box": list(d.box),
            "digit": int(np.argmax(a.probabilities[d.row])),
            "confidence": round(float(a.probabilities[d.row].max()), 6),
            "uncertain": bool(a.uncertain[d.row]),
            "not_a_digit": bool(a.is_not_digit[d.row]),
        }
        for d in reading.digits
    ]
    return {
        "file": path,
        "number": "".join(str(d["digit"]) for d in digits if not d["not_a_digit"]),
        "text": reading.text(),
        "uncertain": reading.ambiguous or any(d["uncertain"] or d["not_a_digit"] for d in digits),
        "count_uncertain": reading.ambiguous,
        "digits": digits,
        "marks": [{"kind": m.kind, "box": list(m.box)} for m in reading.marks],
    }


def cmd_read(args: argparse.Namespace) -> int:
    from model.images import ImageError, open_image
    from model.numbers import read_number, read_page

    predictor = _predictor(args.weights)
    if predictor is None:
        return 1
    status = 0
    for path in args.images:
        try:
            page = read_page(open_image(Path(path).read_bytes()))
            reading = read_number(page, lambda X, photo: predictor.answer(X, photo=np.full(len(X), photo)))
        except (OSError, ImageError) as e:
            print(f"{path}: error: {e}", file=sys.stderr)
            status = 1
            continue
        result = _reading_dict(path, reading)
        unsure, digits = result["uncertain"], result["digits"]
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{path}: {result['text']} ({'not sure' if unsure else 'sure'})")
            for d in digits:
                flag = ", not a digit" if d["not_a_digit"] else ", not sure" if d["uncertain"] else ""
                print(
                    f"  {d['digit']} {d['confidence']:.1%}{flag} at x={d['box'][0]} y={d['box'][1]} "
                    f"{d['box'][2]}x{d['box'][3]}"
                )
    return status


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.infra.http_protocol import BoundedHttpToolsProtocol
    from app.infra.logs import UVICORN_LOG_CONFIG

    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=UVICORN_LOG_CONFIG,
        access_log=not args.no_access_log,
        http=BoundedHttpToolsProtocol if args.http == "httptools" else args.http,
    )
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """digits db upgrade / current: the schema of the shared database ($DIGITS_DATABASE_URL or SQLite)."""
    from app.infra.db import Db, sqlite_url
    from app.infra.settings import Settings

    settings = Settings()
    db = Db(settings.database_url or sqlite_url(settings.database))
    before = db.revision()
    if args.action == "upgrade":
        db.upgrade()
        print(f"schema: {before or 'none'} -> {db.revision()} ({db.engine.url.render_as_string()})")
    else:
        print(f"schema: {before or 'none'} ({db.engine.url.render_as_string()})")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.infra.settings import Settings
    from app.services import training_worker

    return training_worker.main(Settings())


def _model_commands(sub, settings) -> None:
    """train, calibrate, evaluate, predict, read: the commands about one weights file."""
    data_help = "MNIST folder (default: $DIGITS_DATA_DIR or data/mnist)"
    p = sub.add_parser("train", help="train a preset and write a weights file")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--out", help="weights file to write (default: weights/PRESET.npz)")
    p.add_argument("--data-dir", default=settings.data_dir, help=data_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--corrections",
        metavar="FILE",
        help="accepted corrections to learn from, as `digits feedback export` writes them (their pool, never the "
        "holdout); with --feedback-weight N, or preset finetune (whose --parent is a weights file; default: "
        "the model a fresh install serves)",
    )
    _config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("calibrate", help="fit temperature, 'not sure' threshold and not-a-digit detector of a model")
    p.add_argument("weights")
    p.add_argument("--out", help="weights file to write (default: the same file)")
    p.add_argument("--detector-epochs", type=int, help="train the detector this long (default: the model's config)")
    p.add_argument("--negatives", type=int, help="generated non-digits for the detector")
    keep_help = "refit the calibration only, keeping the file's detector (its card says so)"
    p.add_argument("--keep-detector", action="store_true", help=keep_help)
    p.add_argument("--data-dir", default=settings.data_dir, help=data_help)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix on MNIST test")
    p.add_argument("weights", nargs="?", default=DEFAULT_WEIGHTS, help="default: the model a fresh install serves")
    p.add_argument("--runtime-dir", default=settings.runtime_dir, help="whose real-drawing holdout to use too")
    p.add_argument("--database-url", default=settings.database_url, help="or the shared database's holdout")
    p.add_argument("--data-dir", default=settings.data_dir, help=data_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files (PNG, JPEG, WebP, BMP, GIF)")
    p.add_argument("images", nargs="+")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="default: the model a fresh install serves")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("read", help="read the number (1 to 12 digits) written on image files")
    p.add_argument("images", nargs="+")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="default: the model a fresh install serves")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_read)


def _server_commands(sub, settings) -> None:
    """feedback and serve: the commands about a running installation."""
    p = sub.add_parser("feedback", help="export or import the accepted corrections (.npz)")
    p.add_argument("action", choices=["export", "import"])
    p.add_argument("file")
    p.add_argument("--runtime-dir", default=settings.runtime_dir, help="the server's runtime folder")
    p.add_argument("--pending", action="store_true", help="import for review rather than as accepted")
    p.add_argument("--database-url", default=settings.database_url, help="the shared database, if there is one")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("db", help="the shared database's schema: upgrade it in place, or show its revision")
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("worker", help="claim and run queued training jobs from the shared database")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-access-log", action="store_true", help="no log line per request")
    p.add_argument(
        "--http",
        default="httptools",
        choices=["httptools", "h11"],
        help="HTTP parser: httptools with a 64 KiB bound on request heads (default), or h11",
    )
    p.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    from app.infra.settings import Settings

    settings = Settings()  # the server's settings: one reading of DIGITS_DATA_DIR and DIGITS_RUNTIME_DIR
    parser = argparse.ArgumentParser(prog="digits", description="Handwritten-digit recognizer in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    _model_commands(sub, settings)
    _server_commands(sub, settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
