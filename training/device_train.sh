#!/usr/bin/env bash
# The classifier candidates of the real-photo round, trained in one call on a lent GPU machine (no registry there:
# fastai and what it imports travel as wheels in .whl/, the prepared crops as .gpu/prepared.tar.gz, both made on the
# CPU machine; see docs/classifier.md). Each candidate is trained with training.train exactly as on a CPU, three at
# once on the one GPU; the exported ONNX files come back under $OUT and are chosen between on the valid split there.
set -euo pipefail
if ! python3 -c "import fastai" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
rm -rf /tmp/data /tmp/runs && mkdir -p /tmp/data && tar -xf "${PREPARED_TAR:-.gpu/prepared.tar.gz}" -C /tmp/data
nvidia-smi -L || true
python3 -c "import fastai.vision.all, torch; print('fastai ok, torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
common=(--prepared /tmp/data/prepared --weight-power 0.5 --num-workers 5 --seed 42)
# One epoch alone first: the seconds an epoch takes here decide how many fit the call (at most 40 and 12).
python3 -m training.train "${common[@]}" --epochs 1 --out /tmp/runs/trial > "$OUT/trial.log" 2>&1
epoch_s=$(python3 -c "import json; print(json.load(open('/tmp/runs/trial/train_config.json'))['train_seconds'])")
budget_s=${TRAIN_BUDGET_S:-330}
scratch=$(python3 -c "print(max(4, min(40, int($budget_s / ($epoch_s * 1.4)))))")
finetune=$(python3 -c "print(max(2, min(12, $scratch * 3 // 10)))")
echo "one epoch: ${epoch_s}s; scratch epochs: $scratch; fine-tune epochs: $finetune"
python3 -m training.train "${common[@]}" --epochs $scratch --lr 3e-3 --out /tmp/runs/scratch \
  > "$OUT/scratch.log" 2>&1 &
python3 -m training.train "${common[@]}" --lr 3e-3 --exclude-datasets synthetic_masks \
  --epochs $scratch --out /tmp/runs/scratch_real > "$OUT/scratch_real.log" 2>&1 &
python3 -m training.train "${common[@]}" --init-onnx classification/model/mask_classifier.onnx --epochs $finetune \
  --lr 1e-3 --out /tmp/runs/finetune > "$OUT/finetune.log" 2>&1 &
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
for run in scratch scratch_real finetune; do
  [ -f "/tmp/runs/$run/model.onnx" ] && cp "/tmp/runs/$run/model.onnx" "$OUT/$run.onnx"
done
tar -czf "$OUT/runs.tar.gz" -C /tmp/runs --exclude='*.onnx' --exclude='*.pkl' --exclude='*.pth' .
tail -n 3 "$OUT"/*.log
exit $status
