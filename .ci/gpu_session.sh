#!/usr/bin/env bash
# gpu_session.sh: what a session lent a GPU runs first, in one device call: 3-5 minutes on
# an H200 (2026-11-30: gpu_check.sh with memcheck 140 s, the emulation's tests 30 s, the
# training bench not yet timed), machine start not counted. Logs go to $OUT, else ./gpu_logs.
#   1. minitl from this checkout (its __init__ finds kernels/ beside it; the machine is offline,
#      and pip's editable install would fetch setuptools);
#   2. the GPU tests outside the kernels' own files (attention, LSTM, tensor on 'cuda'), and the
#      CPU emulation's tests with that machine's g++;
#   3. .ci/gpu_check.sh: the kernels' GPU tests, compute-sanitizer, awkward shapes, register
#      counts, SGEMM against cuBLAS and softmax against a device-to-device copy;
#   4. the kernels bench's training section (Adam steps against PyTorch CUDA).
cd "$(dirname "$0")/.." || exit 1
LOG=${OUT:-gpu_logs}; mkdir -p "$LOG"; export PYTHONUNBUFFERED=1 CUPY_TF32=0
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# the model tests on 'cuda' (in the background), and the CPU emulation of the kernels with this
# machine's g++ (its own compiler version, which CI's machine does not have), before any timing
(timeout 150 python3 -m pytest -q -p no:cacheprovider -rs tests/test_attention.py tests/test_rnn.py tests/test_tensor.py \
    -k "gpu or cuda" > "$LOG/pytest_models.log" 2>&1) &
{ g++ --version | head -1; timeout 200 python3 -m pytest -q -p no:cacheprovider $(python3 -c "import xdist" 2>/dev/null && printf -- "-n 8") \
    tests/test_cuda_emulation.py 2>&1 | tail -15; } > "$LOG/emulation.log" 2>&1
wait
LOGS="$LOG" timeout 420 bash .ci/gpu_check.sh 2>&1 | tee "$LOG/gpu_check.log"
# whole training steps on 'cuda': minitl with its kernels, minitl on cuBLAS, PyTorch CUDA (not
# yet run on a GPU: the 2026-11-30 session spent its device time on the kernels)
timeout 180 python3 -m minitl.kernels.bench --only training 2>&1 | tee "$LOG/bench_training.log" | tail -12
echo "== model tests on cuda"; tail -6 "$LOG/pytest_models.log"; echo "== CPU emulation with this machine's g++"; tail -c 2500 "$LOG/emulation.log"
