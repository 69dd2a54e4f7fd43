"""The training loop, the presets and the command line, on real MNIST."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digits.cli import main as cli
from model import weights
from model.config import preset
from model.data import load_mnist, split
from model.evaluation import evaluate
from model.train import TrainingCancelled, train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def _tiny(mnist, **overrides):
    cfg = preset("tiny", **overrides)
    tr, va = split(mnist.train, cfg.train_size, cfg.val_size)
    return cfg, tr, va


def test_fixed_seed_reproduces_a_run_exactly(mnist):
    cfg, tr, va = _tiny(mnist, augment_shift=2, epochs=2)
    a = train(cfg, tr, va).network.params
    b = train(cfg, tr, va).network.params
    c = train(cfg.replace(seed=1), tr, va).network.params
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
def test_every_optimizer_learns(mnist, optimizer):
    lr = {"sgd": 0.5, "momentum": 0.05, "rmsprop": 2e-3, "adam": 3e-3}[optimizer]
    cfg, tr, va = _tiny(mnist, optimizer=optimizer, lr=lr, epochs=3, schedule="step", step_epochs=1, gamma=0.5)
    result = train(cfg, tr, va)
    assert evaluate(result.network, va).accuracy > 0.80


def test_progress_moves_forward_and_cancel_stops_within_a_step(mnist):
    cfg, tr, va = _tiny(mnist, epochs=3)
    seen = []
    train(cfg, tr, va, on_progress=seen.append, report_every=5)
    steps = [p.step for p in seen]
    assert steps == sorted(steps) and steps[-1] == seen[-1].total_steps == 3 * 16
    assert [p.epoch for p in seen] == sorted(p.epoch for p in seen)
    ends = [p for p in seen if p.val_acc is not None]
    assert [p.epoch for p in ends] == [1, 2, 3]
    assert all(p.samples_per_s > 0 and 0 <= p.train_acc <= 1 and np.isfinite(p.loss) for p in seen)
    assert seen[-1].eta_s == 0

    calls = []

    def stop_after_7():
        calls.append(1)
        return len(calls) > 7

    with pytest.raises(TrainingCancelled):
        train(cfg, tr, va, should_stop=stop_after_7)
    assert len(calls) == 8  # checked before every step; the 8th check stopped it


def test_quick_preset_reaches_97_percent(mnist):
    cfg = preset("quick")
    tr, va = split(mnist.train, cfg.train_size, cfg.val_size)
    result = train(cfg, tr, va)
    assert evaluate(result.network, mnist.test).accuracy >= 0.97


@pytest.mark.slow
def test_seed_preset_reproduces_the_published_result(tmp_path, capsys):
    """The classic 784-10-10 network: 83-86% on the 10,000 test images (about 15 s)."""
    out = tmp_path / "seed.npz"
    assert cli(["train", "--preset", "seed", "--out", str(out), "--quiet"]) == 0
    net, card = weights.load(out)
    assert net.sizes == [784, 10, 10]
    assert card.training.config["optimizer"] == "sgd" and card.training.config["lr"] == 0.1
    assert 0.83 <= card.test_accuracy <= 0.86
    assert evaluate(net, load_mnist().test).accuracy == card.test_accuracy


def test_shipped_default_weights_reach_99_2_percent(mnist):
    net, card = weights.load(ROOT / "weights" / "default.npz")
    ev = evaluate(net, mnist.test)
    assert ev.accuracy >= 0.992
    # Another BLAS kernel may round a borderline image the other way: allow a few of 10,000.
    assert card.test_accuracy == pytest.approx(ev.accuracy, abs=5e-4)
    assert card.data_checksum == mnist.checksum
    assert card.input_normalisation.preprocess == "mnist-v1"
    assert card.canvas.accuracy >= 0.97


def test_shipped_seed_weights_match_their_metadata(mnist):
    net, card = weights.load(ROOT / "weights" / "seed.npz")
    assert net.sizes == [784, 10, 10]
    accuracy = evaluate(net, mnist.test).accuracy
    assert accuracy == pytest.approx(card.test_accuracy, abs=5e-4)  # a few images, for other BLAS kernels
    assert 0.83 <= accuracy <= 0.86


def test_cli_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "tiny.npz"
    assert (
        cli(
            [
                "train",
                "--preset",
                "tiny",
                "--out",
                str(out),
                "--quiet",
                "--epochs",
                "2",
                "--layers",
                "784",
                "24",
                "10",
                "--lr",
                "0.002",
            ]
        )
        == 0
    )
    _, card = weights.load(out)
    assert card.layers == [784, 24, 10]
    assert card.training.config["epochs"] == 2 and card.training.config["lr"] == 0.002
    assert card.canvas.n == 300 and 0 <= card.canvas.accuracy <= 1
    capsys.readouterr()
    assert cli(["evaluate", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["accuracy"] == pytest.approx(card.test_accuracy)
    assert len(ev["confusion"]) == 10 and sum(map(sum, ev["confusion"])) == 10_000
    assert cli(["evaluate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "confusion matrix" in text and "per class" in text


def test_cli_calibrate_can_keep_the_detector(tmp_path, capsys):
    """`digits calibrate --keep-detector` refits the calibration and leaves the detector as it was,
    saying so in the card; a file without a detector is refused, not given none silently."""
    bare = tmp_path / "tiny.npz"
    assert cli(["train", "--preset", "tiny", "--out", str(bare), "--quiet"]) == 0
    net, card = weights.load(bare)
    shipped = weights.load_predictor(ROOT / "weights" / "cnn.npz")
    with_detector = tmp_path / "with-detector.npz"
    weights.save(with_detector, net, card.replace(calibration=None, detector=shipped.card.detector), shipped.detector)
    out = tmp_path / "recalibrated.npz"
    capsys.readouterr()
    assert cli(["calibrate", str(with_detector), "--keep-detector", "--out", str(out)]) == 0
    assert "not a digit from" in capsys.readouterr().out
    kept = weights.load_predictor(out)
    assert kept.card.detector.kept_from == "recalibrated"
    assert kept.card.detector.threshold == shipped.card.detector.threshold
    assert np.array_equal(kept.detector.params, shipped.detector.params)
    assert kept.card.calibration is not None and kept.card.calibration.photo_temperature > 0
    assert cli(["calibrate", str(bare), "--keep-detector", "--out", str(tmp_path / "x.npz")]) == 1
    assert "no not-a-digit detector to keep" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_cli_refuses_bad_overrides_and_bad_files(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:  # argparse refuses a value outside the allowed ones
        cli(["train", "--preset", "tiny", "--optimizer", "lbfgs", "--out", str(tmp_path / "x.npz")])
    assert refused.value.code == 2 and "optimizer" in capsys.readouterr().err
    assert cli(["train", "--preset", "tiny", "--lr", "-1", "--out", str(tmp_path / "x.npz")]) == 2
    assert "lr must be positive" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert cli(["evaluate", str(tmp_path / "bad.npz")]) == 1
    assert "error" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "digits", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "train" in out.stdout and "evaluate" in out.stdout
