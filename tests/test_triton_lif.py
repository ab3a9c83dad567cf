"""The Triton LIF backend against the loop reference.

Without a GPU (every CI machine) the kernels run on CPU tensors in Triton's interpreter: each test that
launches a kernel sets TRITON_INTERPRET=1 for its own duration (the backend builds its kernels per mode at
call time, so nothing else in the suite sees the variable). With SPIKESSM_TRITON_DEVICE=cuda the same
tests run the compiled kernels on the GPU (benchmarks/gpu.sh), still against the loop on the CPU.
The interpreter runs numpy one operation at a time: shapes here are small but chosen to cross every edge
(L = 1, odd L, L not a multiple of CHUNK, neuron counts not a multiple of BLOCK, several programs).
"""

import importlib
import os
import sys
import types

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from test_lif import Case, cases

from spikessm.errors import UserError
import spikessm.neurons
from spikessm.neurons import lif
from spikessm.neurons.surrogates import SURROGATES

triton = pytest.importorskip("triton", reason="the [gpu] extra (Triton) is not installed")
from spikessm.neurons import triton_lif  # noqa: E402  (after the skip: the module is useless without it)

lif_module = importlib.import_module("spikessm.neurons.lif")  # the package's `lif` is the function
DEVICE = os.environ.get("SPIKESSM_TRITON_DEVICE", "cpu")


@pytest.fixture
def device(monkeypatch):
    """Where the kernels run: the CPU through the interpreter, or the GPU when asked to."""
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return DEVICE


def _run(case: Case, backend: str, device: str = "cpu"):
    """Spikes and the gradients reaching x, tau and threshold (None where they are floats), on the CPU."""
    x = case.x.detach().clone().to(device).requires_grad_()
    tau, threshold = (
        p.detach().clone().to(device).requires_grad_() if isinstance(p, torch.Tensor) else p
        for p in (case.tau, case.threshold)
    )
    s = lif(x, tau, threshold, case.reset, case.surrogate, backend)
    s.backward(case.upstream.to(device))
    grads = [x.grad] + [p.grad if isinstance(p, torch.Tensor) else None for p in (tau, threshold)]
    return s.detach().cpu(), [None if g is None else g.cpu() for g in grads]


def _assert_grads_close(got, want, dtype):
    # float32: the kernels evaluate the loop's graph in its own order and precision (dL/dx is equal to
    # the bit but for sigmoid's exp); tau and threshold are summed in another order, in float64.
    rtol = 1e-9 if dtype == torch.float64 else 1e-6
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if w is not None:
            assert g.dtype == w.dtype and g.shape == w.shape
            torch.testing.assert_close(g, w, rtol=rtol, atol=rtol * (1 + w.abs().max().item()))


def _case(shape, tau, threshold, reset, surrogate, dtype=torch.float32, seed=0, shift=0.4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) + shift
    return Case(x, tau, threshold, reset, surrogate, torch.randn(shape, generator=g, dtype=dtype))


# The device fixture only sets an environment variable for the test's duration: sharing it is intended.
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases(max_length=40))
def test_matches_loop_on_random_cases(device, case):
    # The same random cases as the other exact backends: L = 1, odd L, 0-3 leading axes, tau at both
    # ends of [0, 1], float or per-channel or per-neuron learnable tau and threshold, both resets, every
    # surrogate, float32 and float64.
    s_loop, g_loop = _run(case, "loop")
    s, g = _run(case, "triton", device)
    assert s.dtype == case.x.dtype and s.shape == case.x.shape
    assert torch.equal(s, s_loop)  # bit-identical spikes
    _assert_grads_close(g, g_loop, case.x.dtype)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_every_surrogate_and_reset_with_learnable_channel_parameters(device, reset, surrogate):
    # 2 x 35 = 70 neurons: three programs of 32, the last one short; L = 37: two chunks of 32, the second
    # 5 steps long. Per-channel tau and threshold that require grad.
    g = torch.Generator().manual_seed(1)
    tau = torch.rand(35, generator=g)
    threshold = 0.6 + 0.8 * torch.rand(35, generator=g)
    case = _case((2, 35, 37), tau, threshold, reset, surrogate, seed=2)
    s_loop, g_loop = _run(case, "loop")
    s, g = _run(case, "triton", device)
    assert torch.equal(s, s_loop)
    _assert_grads_close(g, g_loop, torch.float32)
    if surrogate != "sigmoid":  # exp is the one operation not correctly rounded everywhere
        assert torch.equal(g[0], g_loop[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_many_programs_and_chunks(device, monkeypatch, dtype, reset):
    # Small blocks and chunks make many programs and chunks out of a small tensor: 3 x 7 = 21 neurons in
    # blocks of 8 (the last one 5 short), L = 30 in chunks of 4 (the last one 2 short); per-neuron tau.
    monkeypatch.setattr(triton_lif, "BLOCK", 8)
    monkeypatch.setattr(triton_lif, "CHUNK", 4)
    g = torch.Generator().manual_seed(3)
    tau = torch.rand(3, 7, generator=g, dtype=dtype)
    case = _case((3, 7, 30), tau, 0.9, reset, "atan", dtype=dtype, seed=4)
    s_loop, g_loop = _run(case, "loop")
    s, g = _run(case, "triton", device)
    assert torch.equal(s, s_loop)
    _assert_grads_close(g, g_loop, dtype)


@pytest.mark.parametrize("length", [1, 2, 3, 31, 32, 33])
def test_lengths_around_the_chunk(device, length):
    # A chunk is the power of two at or above L, at most CHUNK = 32: L = 3 runs one masked step, 31 one,
    # 33 a second chunk of one real step and 31 masked ones.
    assert triton_lif._chunk(length) == min(32, 1 << (length - 1).bit_length())
    case = _case((40, length), torch.full((40,), 0.5), torch.ones(()), "soft", "triangle", seed=length)
    s_loop, g_loop = _run(case, "loop")
    s, g = _run(case, "triton", device)
    assert torch.equal(s, s_loop)
    _assert_grads_close(g, g_loop, torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_computed_in_float32(device, dtype):
    # lif rounds tau and threshold to x's dtype; the kernels then compute in float32: the reference is the
    # loop in float32 on the same (rounded) values. Spikes and gradients come back in the input dtype.
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(3, 11, 29, generator=g) + 0.4).to(dtype)
    tau = torch.rand(11, generator=g).to(dtype)
    threshold = (0.6 + 0.8 * torch.rand(11, generator=g)).to(dtype)
    upstream = torch.randn(3, 11, 29, generator=g).to(dtype)
    got = _run(Case(x, tau, threshold, "hard", "triangle", upstream), "triton", device)
    want = _run(Case(x.float(), tau.float(), threshold.float(), "hard", "triangle", upstream.float()), "loop")
    assert got[0].dtype == dtype and torch.equal(got[0], want[0].to(dtype))
    assert got[1][0].dtype == dtype and torch.equal(got[1][0], want[1][0].to(dtype))  # dL/dx: one rounding
    for p in (1, 2):  # per-channel sums, rounded to the parameter's dtype
        assert got[1][p].dtype == dtype
        torch.testing.assert_close(got[1][p].float(), want[1][p], rtol=1e-2, atol=1e-2)


def test_gradient_reaches_only_what_requires_it(device):
    x = torch.randn(4, 20, dtype=torch.float64) + 0.5
    tau = torch.full((4,), 0.3, dtype=torch.float64, requires_grad=True)
    s = lif(x.to(device), tau.to(device), 0.8, "soft", backend="triton")  # x itself needs no gradient
    s.sum().backward()
    ref_tau = tau.detach().clone().requires_grad_()
    lif(x, ref_tau, 0.8, "soft", backend="loop").sum().backward()
    torch.testing.assert_close(tau.grad, ref_tau.grad, rtol=1e-9, atol=1e-12)


def test_without_autograd_and_on_noncontiguous_input(device):
    x = torch.randn(12, 3, 5, dtype=torch.float64).transpose(0, 2)  # (5, 3, 12), time axis strided
    threshold = torch.tensor([0.7, 1.0, 1.3], dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        s = lif(x.to(device), 0.6, threshold.to(device), backend="triton")
    assert not s.requires_grad
    assert torch.equal(s.cpu(), lif(x, 0.6, threshold.detach(), backend="loop"))


def test_no_neurons(device):
    x = torch.zeros(0, 3, 9, device=device, requires_grad=True)
    s = lif(x, backend="triton")
    assert s.shape == (0, 3, 9)
    s.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy on inf · 0
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_non_finite_inputs_behave_as_in_the_loop(device, reset):
    x = torch.tensor([[0.5, 2.0, float("nan"), 3.0, 3.0], [2.0, float("inf"), 0.5, 2.0, 2.0], [0.7] * 5])
    s_loop = lif(x, 0.5, 1.0, reset, backend="loop")
    assert torch.equal(lif(x.to(device), 0.5, 1.0, reset, backend="triton").cpu(), s_loop)


def test_float32_is_computed_in_float32(device):
    # Membranes within rounding of the threshold (as in test_lif.py, fewer neurons): float32 and float64
    # disagree on some spikes, and the kernels side with the float32 loop.
    g = torch.Generator().manual_seed(11)
    a = 0.2 + 0.7 * torch.rand(3000, generator=g)
    tau = 0.1
    ulps = torch.randint(-3, 4, a.shape, generator=g) * 2.0**-24
    x = torch.stack([a, (1 - tau * a) * (1 + ulps)], dim=-1)
    s32 = lif(x, tau, 1.0, backend="loop")
    assert (s32 != lif(x.double(), tau, 1.0, backend="loop").float()).any()
    assert torch.equal(lif(x.to(device), tau, 1.0, backend="triton").cpu(), s32)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_longer_sequence(device, reset):
    length = 300 if DEVICE == "cpu" else 4096
    tau = torch.tensor([0.125, 0.5, 0.9, 1.0]).repeat(9)  # 36 neurons
    case = _case((36, length), tau, 1.0, reset, "fast_sigmoid", seed=6, shift=0.3)
    s_loop, g_loop = _run(case, "loop")
    assert 0.05 < s_loop.mean() < 0.6
    s, g = _run(case, "triton", device)
    assert torch.equal(s, s_loop)
    _assert_grads_close(g, g_loop, torch.float32)


# --- errors and dispatch ---------------------------------------------------------------------------------


@pytest.mark.skipif(DEVICE != "cuda", reason="host-device synchronisation is a GPU matter")
def test_auto_on_cuda_runs_triton_without_synchronising(device, monkeypatch):
    calls = []
    real = triton_lif.lif_triton
    monkeypatch.setattr(triton_lif, "lif_triton", lambda *args: calls.append(1) or real(*args))
    x = torch.randn(4, 64, 300, device="cuda", requires_grad=True)
    tau = torch.full((64,), 0.5, device="cuda", requires_grad=True)
    threshold = torch.ones(64, device="cuda", requires_grad=True)
    lif(x, tau, threshold).sum().backward()  # first call: compiles (which may wait for the device)
    torch.cuda.set_sync_debug_mode("error")  # from here, any synchronisation raises
    try:
        s = lif(x, tau, threshold)
        s.backward(torch.ones_like(s))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert calls == [1, 1]


def test_cpu_tensor_without_the_interpreter_names_the_cpu_backends(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(UserError, match="backend 'triton' runs on CUDA tensors.*use 'fused' or 'scan'") as info:
        lif(torch.zeros(2, 3), backend="triton")
    assert "\n" not in str(info.value)


def test_without_triton_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now fails, as if not installed
    monkeypatch.setitem(sys.modules, "triton.language", None)
    monkeypatch.delitem(sys.modules, "spikessm.neurons.triton_lif")  # re-import it without Triton
    monkeypatch.delattr(spikessm.neurons, "triton_lif")
    with pytest.raises(UserError, match=r'pip install -e "\.\[gpu\]"') as info:
        lif(torch.zeros(2, 3), backend="triton")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "device_type, dtype, installed, expected",
    [
        ("cuda", torch.float32, True, "triton"),
        ("cuda", torch.bfloat16, True, "triton"),
        ("cuda", torch.float32, False, "scan"),
        ("cpu", torch.float32, True, "fused"),
        ("cpu", torch.bfloat16, True, "scan"),
    ],
)
def test_auto_prefers_triton_on_cuda(monkeypatch, device_type, dtype, installed, expected):
    monkeypatch.setattr(lif_module, "_triton_installed", lambda: installed)
    x = types.SimpleNamespace(device=torch.device(device_type), dtype=dtype)  # no CUDA tensor needed
    assert lif_module._auto_backend(x) == expected


# --- the GPU benchmark's code path, on the CPU -----------------------------------------------------------


@pytest.mark.skipif(DEVICE != "cpu", reason="benchmarks/gpu.sh runs the real GPU benchmark")
def test_gpu_benchmark_methods_and_table(device, monkeypatch, tmp_path):
    # `spikessm bench neurons --device cuda` times GPU_METHODS; run them here on toy sizes (triton in the
    # interpreter), then render the GPU table next to an existing CPU section.
    from spikessm.neurons import benchmark

    monkeypatch.setattr(benchmark, "METHODS", benchmark.GPU_METHODS)
    rows = benchmark.run_neuron_benchmark(lengths=(5, 20), batch=2, channels=3, repeats=1, progress=False)
    measured = {r["method"] for r in rows if r["seconds"] is not None}
    assert {"GELU (yardstick)", "lif triton", "lif scan", "lif sdn"} <= measured
    assert all(r["seconds"] is not None or r["note"] for r in rows)

    settings = dict(lengths=[5, 20], batch=2, channels=3, repeats=1, threads=2, loop_limit_s=60.0, device="cuda")
    machine = benchmark._machine() | {"gpu": "Test GPU (1 GiB)", "cuda": "12.8", "triton": triton.__version__}
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Neurons\n\nthe CPU table\n\n## SDN\n\nsdn\n")
    benchmark.write_section(path, benchmark._markdown(rows, settings, machine))
    text = path.read_text()
    assert "## Neurons\n\nthe CPU table" in text and "## SDN" in text  # other sections kept
    gpu_section = text[text.index("## Neurons (GPU)") :]
    assert "| lif triton |" in gpu_section and "GPU: Test GPU (1 GiB)" in gpu_section
    assert "--device cuda" in gpu_section


def test_bench_neurons_on_cuda_without_a_gpu_is_a_user_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from spikessm.cli import main

    assert main(["bench", "neurons", "--device", "cuda", "--out", ""]) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA device" in err and "\n" not in err


# --- the compiled kernels, without a GPU -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel, dtype, hard, surrogate",
    [
        ("forward", "fp32", True, None),
        ("forward", "bf16", False, None),
        ("backward", "fp32", True, "atan"),  # float32 division
        ("backward", "bf16", False, "sigmoid"),  # exp, rounding to bfloat16 by hand
        ("backward", "fp64", False, "fast_sigmoid"),
    ],
)
def test_kernels_compile_for_a_gpu_without_fused_multiply_add(monkeypatch, kernel, dtype, hard, surrogate):
    # Triton's own LLVM and ptxas compile for a GPU (sm_90) on any Linux machine, no GPU needed: this
    # catches what the interpreter accepts but the compiler rejects, and checks two things bit-identical
    # spikes and gradients rest on: no fused multiply-add (the launch options) and division rounded to
    # nearest.
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    forward, backward = triton_lif._kernels(False)
    compute = "fp64" if dtype == "fp64" else "fp32"
    if kernel == "forward":
        fn, constants = forward, dict(HARD=hard, SAVE_V=True, BLOCK=triton_lif.BLOCK, CHUNK=triton_lif.CHUNK)
        pointers = [dtype, compute, compute, dtype, compute]
    else:
        which = triton_lif._ORDER.index(surrogate)
        fn, constants = backward, dict(HARD=hard, SURROGATE=which, BLOCK=triton_lif.BLOCK, CHUNK=triton_lif.CHUNK)
        pointers = [dtype, compute, compute, compute, dtype, "fp64", "fp64"]
    names = fn.arg_names
    signature = {name: f"*{t}" for name, t in zip(names, pointers)}
    signature |= {"n": "i32", "length": "i32"} | {name: "constexpr" for name in constants}
    options = triton_lif._launch_options(interpret=False)
    assert options["enable_fp_fusion"] is False
    try:
        source = ASTSource(fn, signature, constexprs=constants)
    except TypeError as error:  # another Triton version's internal API
        pytest.skip(f"triton.compiler.ASTSource differs in Triton {triton.__version__}: {error}")
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    ptx = compiled.asm["ptx"]
    assert "fma." not in ptx
    if surrogate == "atan":
        assert "div.rn.f32" in ptx and "div.full.f32" not in ptx and "div.approx" not in ptx
