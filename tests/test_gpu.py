"""The CuPy backend. On every machine: the CPU path never imports CuPy, and asking for 'cuda'
without it is a clear error. On a GPU (skipped cleanly without one): a model trained on 'cuda'
with the project's kernels follows the CPU run's losses, and the kernels are what runs."""
import subprocess
import sys

import numpy as np
import pytest

import minitl as tl


def test_cpu_training_never_imports_cupy():
    script = (
        "import sys, minitl as tl\n"
        "m = tl.nn.Sequential(tl.nn.Linear(4, 8), tl.nn.ReLU(), tl.nn.Linear(8, 2))\n"
        "opt = tl.optim.Adam(m.parameters())\n"
        "loss = tl.nn.functional.cross_entropy(m(tl.randn(5, 4)), tl.tensor([0, 1, 0, 1, 1]))\n"
        "loss.backward(); opt.step()\n"
        "assert 'cupy' not in sys.modules, 'the CPU path imported cupy'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_device_names():
    assert str(tl.device("cuda:0")) == "cuda" and tl.device("cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        tl.device("tpu")
    assert tl.ones(2).device == "cpu" and tl.ones(2).to("cpu").device == "cpu"


def _gpu_or_skip():
    pytest.importorskip("cupy")
    if not tl.is_cuda_available():
        pytest.skip("no GPU on this machine")


def _train(device, steps=20):
    tl.manual_seed(0)
    model = tl.nn.Sequential(tl.nn.Linear(20, 64), tl.nn.GELU(), tl.nn.LayerNorm(64), tl.nn.Linear(64, 5)).to(device)
    opt = tl.optim.AdamW(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    x = tl.tensor(rng.standard_normal((64, 20)).astype(np.float32)).to(device)
    y = tl.tensor(rng.integers(0, 5, 64)).to(device)
    losses = []
    for _ in range(steps):
        loss = tl.nn.functional.cross_entropy(model(x).softmax(-1).log(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model


def test_training_on_cuda_matches_cpu():
    _gpu_or_skip()
    cpu_losses, _ = _train("cpu")
    gpu_losses, model = _train("cuda")
    assert all(p.device == "cuda" for p in model.parameters())
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=2e-3, atol=2e-4)


def test_our_kernels_run_by_default_and_cublas_on_request(monkeypatch):
    _gpu_or_skip()
    from minitl import kernels

    calls = []
    real = kernels.matmul
    monkeypatch.setattr(kernels, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = tl.randn(8, 16).to("cuda")
    w = tl.randn(16, 4).to("cuda")
    (x @ w).numpy()
    assert calls, "the GPU matmul did not use kernels.matmul"
    previous = tl.backend.use_gpu_kernels("cublas")
    try:
        calls.clear()
        out = (x @ w).numpy()
        assert not calls
        np.testing.assert_allclose(out, x.numpy() @ w.numpy(), rtol=1e-4, atol=1e-4)
    finally:
        tl.backend.use_gpu_kernels(previous)
