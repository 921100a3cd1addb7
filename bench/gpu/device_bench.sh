#!/usr/bin/env bash
# Issue 38's measurements in one call on a lent GPU machine (H100 or H200, no package registry). Prepare on the CPU
# machine, in the checkout the session's device calls send:
#   python -m bench.gpu.pack                       # .gpu/bench/: onnxruntime-gpu cut to ~20 MB, 5 small wheels,
#                                                  # test photos up to the 64 MiB that travel (prints the total)
# then ONE device call, with carry [".gpu/bench"] and timeout_s 600:
#   bash bench/gpu/device_bench.sh
# It takes about 6 minutes: the gpu-marked tests, bench.gpu_bench (CPU baseline, CUDA FP32, CUDA FP16: photos,
# streams, models) and bench.gpu.fp16_accuracy on CUDA. Everything it writes comes back under $OUT (at most 8 files):
# copy $OUT/*.md and *.json into bench/results/ and commit them. If a step fails, its log says which; the next
# steps still run (7 files: three logs, gpu_bench and fp16_accuracy_cuda as .md and .json). DRY_RUN=1 runs the same steps on this CPU machine's onnxruntime (the CPU provider), small, to
# check the script end to end: DRY_RUN=1 OUT=/tmp/out bash bench/gpu/device_bench.sh
# If the CUDA provider fails with "device kernel image is invalid" or "no kernel image is available", a kernel the
# pack zeroed was needed: `python -m bench.gpu.pack --keep-all-kernels` (about 61 MB) splits it over two calls and
# prints them: the first, carry [".gpu/bench-first"], only copies its part to /tmp/facemask-first; the second, at
# once (the machine stays warm 30 s), is the usual one.
set -uo pipefail
rm -f /tmp/card.txt
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the folder whose files come back}
PACK=${PACK:-.gpu/bench}
export PYTHONUNBUFFERED=1
status=0
step() {  # step NAME COMMAND...: run it, its output to $OUT/NAME.log (and the tail to the terminal)
  local name=$1; shift
  echo "== $name: $*"
  local started=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1 || { echo "!! $name failed (exit $?)"; status=1; }
  tail -n 25 "$OUT/$name.log"
  echo "== $name took $((SECONDS - started)) s"
}

if [ "${DRY_RUN:-0}" = 1 ]; then
  providers=cpu bench=(--dry-run) accuracy=(--providers cpu --limit 5) tests=(-m "not slow")
  export PYTHONPATH=$PWD
else
  providers=cuda,cpu bench=() accuracy=(--providers cuda,cpu) tests=(-m gpu)
  site=/tmp/facemask-site
  rm -rf "$site" && mkdir -p "$site"
  if [ -f "$PACK/onnxruntime-gpu.tar.xz" ]; then
    tar -xJf "$PACK/onnxruntime-gpu.tar.xz" -C "$site"
  else  # packed with --keep-all-kernels: its head came to /tmp/facemask-first in a call before this one
    cat /tmp/facemask-first/onnxruntime-gpu.tar.xz.part-1 "$PACK/onnxruntime-gpu.tar.xz.part-2" | tar -xJ -C "$site"
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$PACK"/wheels/*.whl
  export PYTHONPATH=$site:$PWD
  # The CUDA 13 and cuDNN 9 libraries of the image's PyTorch wheels (nvidia/cu13/lib, nvidia/cudnn/lib, ...).
  nvidia_libs=$(python3 -c "import glob, nvidia, os; print(':'.join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(os.path.join(d, '*', 'lib', 'lib*.so*'))})))")
  export LD_LIBRARY_PATH=$nvidia_libs:${LD_LIBRARY_PATH:-}
  export CUDA_MODULE_LOADING=LAZY  # modules load when first used: the pack's zeroed kernels are never loaded
  export FACEMASK_DATASETS_DIR=$PWD/$PACK/datasets
  export GUNICORN_WORKER_CLASS=gthread GUNICORN_THREADS=8  # the image has no gevent; the pack carries no wheel of it
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee /tmp/card.txt
fi
python3 -c "import onnxruntime as o, sys; print(o.__file__, o.__version__, o.get_available_providers()); sys.exit('CUDAExecutionProvider' not in o.get_available_providers() and '${DRY_RUN:-0}' != '1')" || status=1
python3 -m facemask.core.sessions "$providers" && echo "provider probe $providers: ok" || status=1

step tests python3 -m pytest -q -p no:cacheprovider "${tests[@]}" tests/test_providers.py tests/test_batching.py
step gpu_bench env FACEMASK_LOG_LEVEL=WARNING python3 -m bench.gpu_bench "${bench[@]}" --out-dir "$OUT"
step fp16_accuracy env FACEMASK_LOG_LEVEL=WARNING python3 -m bench.gpu.fp16_accuracy "${accuracy[@]}" --card "$(cat /tmp/card.txt 2>/dev/null)" --out-dir "$OUT"
ls -la "$OUT"
exit $status
