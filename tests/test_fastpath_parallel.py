"""minitl.fastpath.parallel (element-wise work split across threads for the fast paths):
coverage, results independent of the thread count, errors, and the fast layers on inputs large
enough to take the threaded paths."""
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

import minitl as tl
from minitl.fastpath import parallel

rng = np.random.default_rng(11)


@pytest.fixture
def threads():
    """Run a test at several thread counts, restoring the setting afterwards."""
    before = parallel.get_num_threads()
    yield parallel.set_num_threads
    parallel.set_num_threads(before)


@pytest.mark.parametrize("n_rows,row_size", [(1, 1), (7, 1), (1000, 1), (300_001, 1), (129, 40_000), (5, 10**6)])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_parallel_for_covers_every_row_once_on_a_fixed_block_grid(threads, n_rows, row_size, count):
    threads(count)
    seen = []
    parallel.parallel_for(n_rows, lambda a, b: seen.append((a, b)), row_size)
    covered = np.zeros(n_rows, dtype=int)
    for a, b in seen:
        covered[a:b] += 1
    assert (covered == 1).all()
    threads(1)
    serial = []
    parallel.parallel_for(n_rows, lambda a, b: serial.append((a, b)), row_size)
    assert sorted(seen) == serial  # the same blocks whatever the thread count


def test_large_jobs_run_on_several_threads(threads):
    threads(2)
    idents = set()

    def body(a, b):
        idents.add(threading.get_ident())
        time.sleep(0.01)  # hold the block so that the other thread must take its own share

    parallel.parallel_for(1 << 22, body, 1)
    assert len(idents) == 2


def test_a_thread_that_is_held_up_takes_fewer_blocks(threads):
    """Blocks go to whichever thread is free: while the calling thread is stuck in its first
    block, the worker takes the rest (a fixed half each would leave it 4 of the 8)."""
    threads(2)
    caller, ran_on_caller = threading.get_ident(), []

    def body(a, b):
        if threading.get_ident() != caller:
            time.sleep(0.01)
        else:
            ran_on_caller.append(a)
            if len(ran_on_caller) == 1:
                time.sleep(0.5)

    parallel.parallel_for(8, body, 1 << 20, block_elements=1 << 20)  # 8 blocks of one row
    assert len(ran_on_caller) < 4


def test_small_jobs_stay_on_the_calling_thread(threads):
    threads(4)
    idents = set()
    parallel.parallel_for(1000, lambda a, b: idents.add(threading.get_ident()), 1)
    assert idents == {threading.get_ident()}


def test_a_job_may_ask_for_more_work_per_thread(threads):
    threads(2)
    idents = set()

    def body(a, b):
        idents.add(threading.get_ident())
        time.sleep(0.01)

    # 2^20 elements in 16 blocks: threaded by default, on the calling thread alone when each
    # thread must get at least 2^20 elements
    parallel.parallel_for(16, body, 1 << 16, block_elements=1 << 16, min_elements_per_thread=1 << 20)
    assert idents == {threading.get_ident()}
    parallel.parallel_for(16, body, 1 << 16, block_elements=1 << 16)
    assert len(idents) == 2


def test_the_fast_adam_updates_small_models_on_one_thread_and_large_ones_on_all(threads, monkeypatch):
    from minitl.fastpath import adam as fast_adam
    threads(2)
    idents = set()
    update = fast_adam.adam_update_

    def recording(*args):
        idents.add(threading.get_ident())
        time.sleep(0.002)  # long enough that the worker must take blocks of its own
        return update(*args)

    monkeypatch.setattr(fast_adam, "adam_update_", recording)
    for size, expected in [(fast_adam.PARALLEL_ELEMENTS // 2, 1), (2 * fast_adam.PARALLEL_ELEMENTS, 2)]:
        idents.clear()
        p = tl.tensor(np.zeros(size, np.float32), requires_grad=True)
        p.grad = np.ones(size, np.float32)
        tl.optim.Adam([p], lr=0.1).step()
        assert len(idents) == expected, size
        np.testing.assert_allclose(p.data, -0.1, rtol=1e-5)  # the first step moves every weight by lr


def test_the_fast_adam_keeps_many_small_parameters_on_one_thread(threads, monkeypatch):
    """Twenty parameters of a quarter (threaded) slice each add up to more than PARALLEL_ELEMENTS,
    but every job is short, and two threads would only trade Python's lock (a ViT's layers)."""
    from minitl.fastpath import adam as fast_adam
    threads(2)
    idents = set()
    update = fast_adam.adam_update_

    def recording(*args):
        idents.add(threading.get_ident())
        time.sleep(0.001)
        return update(*args)

    monkeypatch.setattr(fast_adam, "adam_update_", recording)
    size = fast_adam.THREADED_SLICE // 4
    assert 20 * size > fast_adam.PARALLEL_ELEMENTS
    params = [tl.tensor(np.zeros(size, np.float32), requires_grad=True) for _ in range(20)]
    for p in params:
        p.grad = np.ones(size, np.float32)
    tl.optim.Adam(params, lr=0.1).step()
    assert len(idents) == 1
    np.testing.assert_allclose(params[-1].data, -0.1, rtol=1e-5)


def test_a_workers_exception_reaches_the_caller(threads):
    threads(2)

    def body(a, b):
        if a > 0:
            raise ValueError("block failed")

    with pytest.raises(ValueError, match="block failed"):
        parallel.parallel_for(1 << 22, body, 1)


def test_nested_jobs_run_inside_the_outer_block(threads):
    threads(2)
    out = np.zeros(1 << 20)

    def outer(a, b):
        parallel.parallel_for(b - a, lambda c, d: out.__setitem__(slice(a + c, a + d), 1.0), 1)

    parallel.parallel_for(out.size, outer, 1)
    assert (out == 1).all()


@pytest.mark.parametrize("count", [1, 2, 3])
def test_rowwise_copyto_and_column_dots_match_numpy_bit_for_bit_at_any_thread_count(threads, count):
    threads(count)
    a = rng.standard_normal((70_000, 24)).astype(np.float32)
    b = rng.standard_normal((70_000, 24)).astype(np.float32)
    v = rng.standard_normal(24).astype(np.float32)
    np.testing.assert_array_equal(parallel.rowwise(np.multiply, np.empty_like(a), a, v), a * v)
    np.testing.assert_array_equal(parallel.rowwise(np.maximum, np.empty_like(a), a, 0), np.maximum(a, 0))
    nhwc = rng.standard_normal((16, 30, 30, 8)).astype(np.float32)
    view = nhwc.transpose(0, 3, 1, 2)  # NCHW view of NHWC memory, as conv outputs are
    out = parallel.rowwise(np.maximum, np.empty_like(view), view, 0)
    assert out.transpose(0, 2, 3, 1).flags.c_contiguous  # the layout is kept
    np.testing.assert_array_equal(out, np.maximum(view, 0))
    dst = np.empty((16, 8, 30, 30), dtype=np.float32)
    np.testing.assert_array_equal(parallel.copyto(dst, view), view)
    dots = parallel.column_dots(a, b)
    np.testing.assert_allclose(dots, np.einsum("ij,ij->j", a.astype(np.float64), b), rtol=1e-5, atol=2e-3)
    threads(1)
    np.testing.assert_array_equal(parallel.column_dots(a, b), dots)


@pytest.mark.parametrize("count", [1, 2])
def test_rowwise_splits_a_job_only_when_more_than_one_thread_could_take_it(threads, count):
    """Below 2 * MIN_ELEMENTS_PER_THREAD elements, or on one thread, rowwise makes one call on
    the whole output (no blocks); above, on two threads, it makes one call per block."""
    threads(count)
    calls = []

    def maximum(*operands, out):
        calls.append(out.shape)
        return np.maximum(*operands, out=out)

    small = rng.standard_normal((128, 512)).astype(np.float32)  # an MLP layer's activations
    np.testing.assert_array_equal(parallel.rowwise(maximum, np.empty_like(small), small, 0), np.maximum(small, 0))
    assert calls == [small.shape]
    calls.clear()
    large = rng.standard_normal((2 * parallel.MIN_ELEMENTS_PER_THREAD // 64 + 1, 64)).astype(np.float32)
    np.testing.assert_array_equal(parallel.rowwise(maximum, np.empty_like(large), large, 0), np.maximum(large, 0))
    expected_blocks = -(-large.size // parallel.BLOCK_ELEMENTS)
    assert len(calls) == (expected_blocks if count > 1 else 1)


def test_the_switch_module_sets_the_same_thread_count():
    assert tl.fastpath.set_num_threads is parallel.set_num_threads
    assert tl.fastpath.get_num_threads() == parallel.get_num_threads()
    assert not hasattr(tl, "parallel")  # one place for the threads: tl.fastpath


def test_thread_count_settings_are_checked(threads, monkeypatch):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            parallel.set_num_threads(bad)
    monkeypatch.setenv("MINITL_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="MINITL_NUM_THREADS"):
        parallel._default_threads()
    monkeypatch.setenv("MINITL_NUM_THREADS", "3")
    assert parallel._default_threads() == 3


def _child_sum(queue):
    out = parallel.rowwise(np.add, np.empty(1 << 21), np.ones(1 << 21), 1.0)
    queue.put(float(out.sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_worker_threads(threads):
    threads(2)
    parallel.rowwise(np.add, np.empty(1 << 21), np.ones(1 << 21), 1.0)  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_sum, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == 2.0 * (1 << 21)


# --- the layers on inputs large enough to be split ----------------------------------------------

@tl.fastpath.use(True)
def _conv_bn_relu_pool(count, x_np, w_np, g_np):
    tl.fastpath.set_num_threads(count)
    x = tl.tensor(x_np, dtype=x_np.dtype, requires_grad=True)
    w = tl.tensor(w_np, dtype=w_np.dtype, requires_grad=True)
    bn = tl.nn.BatchNorm2d(w_np.shape[0])
    for p in (bn.weight, bn.bias):
        p.data = p.data.astype(x_np.dtype)
    y = tl.nn.functional.max_pool2d(tl.relu(bn(tl.nn.functional.conv2d(x, w, None, 1, 1))), 2)
    y.backward(g_np)
    return [y.numpy(), x.grad, w.grad, bn.weight.grad, bn.bias.grad, bn.running_var]


def test_layers_give_the_same_bits_on_one_and_on_three_threads(threads):
    x = rng.standard_normal((32, 8, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    g = rng.standard_normal((32, 16, 14, 14)).astype(np.float32)
    one = _conv_bn_relu_pool(1, x, w, g)
    three = _conv_bn_relu_pool(3, x, w, g)
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)


def test_layers_on_split_inputs_match_pytorch(threads):
    torch = pytest.importorskip("torch")
    threads(2)
    x = rng.standard_normal((32, 8, 28, 28))
    w = rng.standard_normal((16, 8, 3, 3)) * 0.2
    g = rng.standard_normal((32, 16, 14, 14))
    ours = _conv_bn_relu_pool(2, x, w, g)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    bn = torch.nn.BatchNorm2d(16).double()
    ty = torch.nn.functional.max_pool2d(torch.relu(bn(torch.nn.functional.conv2d(tx, tw, None, 1, 1))), 2)
    ty.backward(torch.tensor(g))
    theirs = [ty.detach(), tx.grad, tw.grad, bn.weight.grad, bn.bias.grad, bn.running_var]
    for a, b in zip(ours[:-1], theirs[:-1]):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours[-1], theirs[-1].numpy(), rtol=1e-6)  # a float32 buffer
