"""ConfusionAccumulator: counts against a numpy reference, ignore index, range errors, merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geociss.evaluation import ConfusionAccumulator
from geociss.evaluation.confusion import count_bins


def numpy_confusion(pred: np.ndarray, target: np.ndarray, c: int, ignore: int = 255) -> np.ndarray:
    cm = np.zeros((c, c), dtype=np.int64)
    keep = target != ignore
    np.add.at(cm, (target[keep], pred[keep]), 1)
    return cm


def test_tiny_hand_checked() -> None:
    acc = ConfusionAccumulator(3)
    target = torch.tensor([[[0, 0, 1], [2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1], [2, 0, 0]]])
    acc.update(pred, target)
    expected = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(acc.compute(), expected)
    assert acc.compute().dtype == np.int64


def test_random_batches_match_numpy_reference() -> None:
    g = torch.Generator().manual_seed(0)
    c = 6
    acc = ConfusionAccumulator(c)
    ref = np.zeros((c, c), dtype=np.int64)
    for _ in range(3):
        target = torch.randint(0, c, (2, 17, 23), generator=g)
        target[torch.rand(target.shape, generator=g) < 0.2] = 255
        pred = torch.randint(0, c, (2, 17, 23), generator=g)
        acc.update(pred, target)
        ref += numpy_confusion(pred.numpy(), target.numpy(), c)
    np.testing.assert_array_equal(acc.compute(), ref)


def test_matches_torchmetrics() -> None:
    from torchmetrics.classification import MulticlassConfusionMatrix

    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 5, (3, 32, 32), generator=g)
    target[:, :4] = 255
    pred = torch.randint(0, 5, (3, 32, 32), generator=g)
    tm = MulticlassConfusionMatrix(5, ignore_index=255)
    tm.update(pred, target)
    acc = ConfusionAccumulator(5)
    acc.update(pred, target)
    np.testing.assert_array_equal(acc.compute(), tm.compute().numpy())
    assert acc.compute().sum() == int((target != 255).sum())


def test_scatter_and_bincount_histograms_agree() -> None:
    idx = torch.randint(0, 40, (5000,), generator=torch.Generator().manual_seed(2))
    ref = np.bincount(idx.numpy(), minlength=42)
    np.testing.assert_array_equal(count_bins(idx, 42, scatter=True).numpy(), ref)
    np.testing.assert_array_equal(count_bins(idx, 42, scatter=False).numpy(), ref)
    assert count_bins(idx, 42).dtype == torch.int64


def test_uint8_inputs_do_not_overflow() -> None:
    acc = ConfusionAccumulator(200)
    target = torch.tensor([199, 255], dtype=torch.uint8)
    pred = torch.tensor([198, 3], dtype=torch.uint8)
    acc.update(pred, target)
    cm = acc.compute()
    assert cm[199, 198] == 1 and cm.sum() == 1


def test_ignored_target_skips_any_prediction() -> None:
    acc = ConfusionAccumulator(2)
    acc.update(torch.tensor([255, 7, 1]), torch.tensor([255, 255, 1]))
    np.testing.assert_array_equal(acc.compute(), [[0, 0], [0, 1]])


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        ([0, 3], [0, 1], "pred values \\[3\\]"),
        ([0, -1], [0, 1], "pred values"),
        ([0, 1], [0, 4], "target values \\[4\\]"),
    ],
)
def test_out_of_range_is_an_error_and_leaves_state_clean(pred, target, match) -> None:
    acc = ConfusionAccumulator(3)
    with pytest.raises(ValueError, match=match):
        acc.update(torch.tensor(pred), torch.tensor(target))
    acc.update(torch.tensor([1]), torch.tensor([1]))
    assert acc.compute().sum() == 1  # the bad batch was not counted


def test_deferred_check_raises_at_compute() -> None:
    acc = ConfusionAccumulator(3)
    acc.update(torch.tensor([0]), torch.tensor([0]))
    acc.invalid += 2  # what an accelerator update records instead of syncing
    with pytest.raises(ValueError, match="2 pixel"):
        acc.compute()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="shape"):
        ConfusionAccumulator(3).update(
            torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="integer"):
        ConfusionAccumulator(3).update(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="valid class id"):
        ConfusionAccumulator(300, ignore_index=255)


def test_merge_and_reset() -> None:
    a, b = ConfusionAccumulator(2), ConfusionAccumulator(2)
    a.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    b.update(torch.tensor([1, 1]), torch.tensor([1, 1]))
    a.merge(b)
    np.testing.assert_array_equal(a.compute(), [[1, 1], [0, 2]])
    a.merge(np.array([[1, 0], [0, 0]]))
    assert a.compute()[0, 0] == 2
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(np.zeros((3, 3), dtype=np.int64))
    a.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert a.compute().sum() == 0


def test_states_follow_device_and_state_dict() -> None:
    acc = ConfusionAccumulator(4, device="cpu")
    assert acc.confmat.device.type == "cpu" and acc.confmat.dtype == torch.int64
    acc.update(torch.tensor([1, 2]), torch.tensor([1, 3]))
    assert acc.confmat[3, 2] == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_accumulates_on_device_and_defers_range_check() -> None:
    acc = ConfusionAccumulator(3, device="cuda")
    target = torch.tensor([0, 1, 2, 255], device="cuda")
    acc.update(torch.tensor([0, 2, 2, 9], device="cuda"), target)
    assert acc.confmat.device.type == "cuda"
    np.testing.assert_array_equal(acc.compute(), [[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    acc.update(torch.tensor([5], device="cuda"), torch.tensor([0], device="cuda"))  # no raise yet
    with pytest.raises(ValueError, match="1 pixel"):
        acc.compute()


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    import os

    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        acc = ConfusionAccumulator(3)
        acc.update(torch.tensor([rank, 1]), torch.tensor([rank, 2]))
        queue.put((rank, acc.compute().tolist(), acc.confmat.tolist()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_compute_sums_ranks_and_keeps_local_state() -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        results = sorted(queue.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    summed = [[1, 0, 0], [0, 1, 0], [0, 2, 0]]
    assert [r[1] for r in results] == [summed, summed]
    assert results[0][2] == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]  # local counts restored after sync
