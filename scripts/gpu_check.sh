#!/usr/bin/env bash
# Every GPU measurement of issue 15 in one run (about 8 minutes on one H100/H200):
#   1. extraction end to end from JPEG files vs the ViT-L/14 tower alone (bf16)     target >= 2,000 photos/s
#   2. the same with DualGeo's float16 patch tokens                                 target >= 1,000 photos/s
#   3. the G3 trainer on 4.1M cached rows vs the heads step                         target ratio >= 0.8
#   4. the tower and heads-step ceilings (scripts/bench_train.py, as in the issue's table)
#   5. multi-GPU extraction through accelerate (one process per GPU; here: as many as there are)
# Figures go to $OUT (or ./gpu-check) as JSON and a log. Weights are random (the real architectures):
# speed does not depend on them, and the GPU machine reaches no hub.
#
#   bash scripts/gpu_check.sh                # on the GPU machine
#   GPU_CHECK_TINY=1 bash scripts/gpu_check.sh   # the same steps at toy sizes on a CPU (tested that way)
#
# Needs: torch with CUDA, transformers, accelerate, safetensors, pandas, pillow, tqdm (the H200 image has
# them); nothing else of requirements.txt is imported by these steps.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export GEODEMO_CACHE="${GEODEMO_CACHE:-$OUT/cache}"
LOG="$OUT/gpu_check.log"
: >"$LOG"
run() { echo "+ $*" | tee -a "$LOG"; "$@" 2>&1 | tee -a "$LOG"; }

if [[ "${GPU_CHECK_TINY:-0}" == "1" ]]; then   # CPU smoke test of every step at toy sizes
  DEV=cpu; DTYPE=fp32; PHOTOS=24; BATCH=8; WORKERS=2; ROWS=4096; STEPS=8; TOWER_BATCH=2; TOWER_STEPS=1
  CLIP_OPTS='{"random_init": true, "config": {"projection_dim": 32, "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2, "max_position_embeddings": 77, "vocab_size": 49408, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1}, "vision_config": {"hidden_size": 48, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2, "image_size": 224, "patch_size": 16}}}'
  TOWER=(--arch mobilenet)
else
  DEV=cuda; DTYPE=bf16; PHOTOS=8192; BATCH=256; WORKERS=$(( $(nproc) - 1 )); ROWS=4100000; STEPS=2000
  TOWER_BATCH=256; TOWER_STEPS=20; CLIP_OPTS='{"random_init": true}'; TOWER=(--arch vit-l14)
  run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
run "$PY" -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"

EXTRACT=(scripts/bench_extract.py --encoder hf-clip-vit-l14 --model-options "$CLIP_OPTS" --device "$DEV"
         --dtype "$DTYPE" --batch-size "$BATCH" --workers "$WORKERS" --synthetic-photos "$PHOTOS" --photo-size 640x480)
# 1-2. extraction, image embeddings then tokens
run "$PY" "${EXTRACT[@]}" --out "$OUT/extract.json"
run "$PY" "${EXTRACT[@]}" --tokens --out "$OUT/extract_tokens.json"
# 3. the real trainer at MP16 scale (features resident on the GPU when they fit: 4.1M x 1536 fp32 = 25 GB)
run "$PY" scripts/bench_train.py --rows "$ROWS" --steps "$STEPS" --device "$DEV" --out "$OUT/train_rows.json"
# 4. ceilings: frozen tower forward, heads step on cached features, G3-style step
run "$PY" scripts/bench_train.py "${TOWER[@]}" --dtype "$DTYPE" --device "$DEV" --batch-size "$TOWER_BATCH" \
    --steps "$TOWER_STEPS" --out "$OUT/ceilings.json"
# 5. multi-GPU extraction: the photo list split by process through accelerate (shards interleave by rank)
NPROC=1
if [[ "$DEV" == "cuda" ]]; then NPROC=$("$PY" -c "import torch; print(max(torch.cuda.device_count(), 1))"); fi
MULTI="$OUT/multi"
rm -rf "$MULTI"
"$PY" - "$MULTI" "$PHOTOS" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "scripts")
from bench_extract import synthetic_photos
synthetic_photos(Path(sys.argv[1]) / "photos", min(int(sys.argv[2]), 2048), (640, 480))
EOF
run "$PY" -m geodemo.train.launch launch --num_processes "$NPROC" $([[ "$DEV" == cpu ]] && echo --cpu) \
    scripts/extract_features.py --csv "$MULTI/photos.csv" --images "$MULTI/photos" --out "$MULTI/features" \
    --encoder hf-clip-vit-l14 --model-options "$CLIP_OPTS" \
    --device "$([[ "$DEV" == cpu ]] && echo cpu || echo auto)" --dtype "$DTYPE" \
    --batch-size "$BATCH" --workers "$(( WORKERS / NPROC > 0 ? WORKERS / NPROC : 1 ))" --shard-size 512 --no-progress
echo "figures in $OUT: $(ls "$OUT" | tr '\n' ' ')" | tee -a "$LOG"
