"""Fine-tuning and batches in parts (issue 23), through the training loop's public interface."""

import os

import numpy as np
import pytest

from model.config import CNN_LAYERS, TrainConfig, preset
from model.data import Dataset
from model.network import Network
from model.parallel import BatchParts
from model.train import train

SMALL_CNN = [
    {"type": "conv", "filters": 4, "size": 5}, {"type": "maxpool", "size": 2}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "flatten"}, {"type": "dropout", "rate": 0.2}, {"type": "dense", "units": 16},
    {"type": "relu"}, {"type": "dense", "units": 10},
]  # fmt: skip


def _data(n: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = (rng.random((n, 784)) < 0.1 + 0.02 * y[:, None]).astype(np.uint8) * 255  # learnable: ink grows with y
    return Dataset(x, y.astype(np.uint8))


def test_parts_of_a_batch_give_the_whole_batch_gradient_when_no_layer_couples_them():
    rng = np.random.default_rng(0)
    net = Network([784, 32, 10]).init(rng)
    x, y = rng.random((120, 784), dtype=np.float32), rng.integers(0, 10, 120)
    whole = net.backprop(x, y)
    expected, weights = net.grads.copy(), net.params.copy()
    for parts, processes in ((2, True), (3, True), (3, False)):
        worked = BatchParts(net, parts, np.random.default_rng(1), len(x), processes=processes)
        try:
            result = worked.backprop(x, y)
        finally:
            worked.close()
        np.testing.assert_allclose(net.grads, expected, rtol=1e-4, atol=1e-7)
        assert result.loss == pytest.approx(whole.loss, rel=1e-5)
        np.testing.assert_allclose(result.probabilities, whole.probabilities, rtol=1e-4, atol=1e-6)
        assert np.array_equal(net.params, weights)


def test_a_batch_part_whose_process_dies_fails_the_step_with_a_message_and_leaves_nothing_behind():
    before = set(os.listdir("/dev/shm"))
    net = Network([784, 32, 10]).init(np.random.default_rng(0))
    x, y = np.zeros((64, 784), np.float32), np.zeros(64, np.intp)
    worked = BatchParts(net, 2, np.random.default_rng(1), len(x), processes=True)
    assert set(os.listdir("/dev/shm")) == before  # the shared file is gone once the worker has mapped it
    worked.backprop(x, y)
    worked.workers[0].process.kill()
    worked.workers[0].process.wait()
    with pytest.raises(RuntimeError, match="ended unexpectedly"):
        worked.backprop(x, y)
    worked.close()
    net.backprop(x, y)  # the network has weights of its own again


def test_a_step_whose_own_part_fails_stops_its_update_and_its_workers_cleanly():
    """The first worker applies each step's update once every part is done; when this process's own
    part fails instead, the worker must not wait for it forever: closing stops it, and it exits by
    itself (not killed after the stop's timeout)."""
    net = Network([784, 32, 10]).init(np.random.default_rng(0))
    config = TrainConfig(layers=[784, 32, 10], batch_size=64, batch_parts=2)
    worked = BatchParts(net, 2, np.random.default_rng(1), 64, processes=True, config=config)
    x, y = np.zeros((64, 784), np.float32), np.zeros(64, np.intp)
    before = net.params.copy()
    worked.step(x, y, 1e-2)
    worked.settle()
    assert not np.array_equal(net.params, before)  # the worker's update reached these weights
    y[:32] = 99  # no such class: this process's half fails, the worker's half does not
    with pytest.raises(IndexError):
        worked.step(x, y, 1e-2)
    process = worked.workers[0].process
    worked.close()
    assert process.returncode == 0


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_parts_do_not_depend_on_the_processes_that_run_them(weight_decay):
    """In processes the first worker applies each update (weight decay too, through its own views of
    the shared weights); the run must be the one made all in this process."""
    config = TrainConfig(
        layers=SMALL_CNN, epochs=1, batch_size=64, batch_parts=2, val_size=0, seed=3, weight_decay=weight_decay
    )
    runs = [train(config, _data(640), processes=p).network for p in (False, True)]
    assert np.array_equal(runs[0].params, runs[1].params)
    assert np.array_equal(runs[0].state, runs[1].state)  # batch norm's running statistics too
    again = train(config, _data(640), processes=True).network
    assert np.array_equal(again.params, runs[1].params)


def test_ghost_batches_keep_batch_norm_statistics_of_the_whole_batch():
    config = TrainConfig(layers=SMALL_CNN, epochs=2, batch_size=64, batch_parts=2, val_size=0, seed=3)
    net = train(config, _data(640)).network
    bn = net.layers[2]
    assert np.all(bn.state["var"] > 0) and not np.allclose(bn.state["mean"], 0)


def test_a_fine_tune_starts_from_its_parent_and_leaves_it_unchanged():
    data = _data(1200)
    parent = train(TrainConfig(layers=SMALL_CNN, epochs=2, batch_size=64, val_size=0, seed=1), data).network
    before = parent.params.copy(), parent.state.copy()
    config = TrainConfig(layers=SMALL_CNN, epochs=1, batch_size=64, val_size=0, seed=2, lr=1e-9, schedule="constant")
    config = config.replace(parent="p", replay=100)
    tuned = train(config, data, start=parent).network
    assert np.array_equal(parent.params, before[0]) and np.array_equal(parent.state, before[1])
    np.testing.assert_allclose(tuned.params, parent.params, atol=1e-5)  # a rate of 1e-9 barely moves it
    fresh = train(config.replace(parent=None, replay=0), data).network
    assert not np.allclose(fresh.params, parent.params, atol=1e-2)


def test_training_only_the_dense_layers_leaves_the_convolutions_as_they_were():
    data = _data(1200)
    parent = train(TrainConfig(layers=SMALL_CNN, epochs=1, batch_size=64, val_size=0, seed=1), data).network
    config = TrainConfig(layers=SMALL_CNN, epochs=2, batch_size=64, val_size=0, seed=2, lr=1e-2)
    tuned = train(config.replace(parent="p", replay=100, train_layers="dense"), data, start=parent).network
    conv, bn, dense = tuned.layers[0], tuned.layers[2], tuned.layers[6]
    assert np.array_equal(conv.params["W"], parent.layers[0].params["W"])
    assert np.array_equal(bn.state["mean"], parent.layers[2].state["mean"])  # ran as at inference
    assert not np.allclose(dense.params["W"], parent.layers[6].params["W"])


def test_a_fine_tune_refuses_a_parent_of_other_layers_and_settings_without_a_parent():
    parent = Network([784, 32, 10]).init(np.random.default_rng(0))
    config = TrainConfig(layers=SMALL_CNN, epochs=1, batch_size=64, val_size=0, parent="p")
    with pytest.raises(ValueError, match="the layers differ"):
        train(config, _data(200), start=parent)
    with pytest.raises(ValueError, match="name the parent version"):
        TrainConfig(layers=SMALL_CNN, replay=100)
    with pytest.raises(ValueError, match="batch_parts"):
        TrainConfig(layers=SMALL_CNN, batch_parts=9)


def test_the_finetune_preset_is_a_bounded_job_on_the_cnn():
    config = preset("finetune")
    assert config.fine_tunes and config.layers == CNN_LAYERS and config.detector_epochs == 0
    steps = config.epochs * -(-(config.replay + 300 * config.feedback_weight) // config.batch_size)
    assert steps <= 200  # a few hundred corrections: well under a minute of steps on two cores


def test_a_tuned_share_below_one_ends_part_of_the_way_from_the_parent():
    data = _data(1200)
    parent = train(TrainConfig(layers=SMALL_CNN, epochs=1, batch_size=64, val_size=0, seed=1), data).network
    config = TrainConfig(layers=SMALL_CNN, epochs=1, batch_size=64, val_size=0, seed=2, lr=1e-2, parent="p")
    whole = train(config, data, start=parent).network
    half = train(config.replace(tuned_share=0.5), data, start=parent).network
    np.testing.assert_allclose(half.params, (parent.params + whole.params) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(half.state, (parent.state + whole.state) / 2, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="tuned_share"):
        config.replace(tuned_share=0)
