#!/usr/bin/env bash
# The CUDA path on a GPU host, with a CUDA build of mljm and nothing else (no Rust):
#   1. one ACTIVE_ML iteration (training and prediction on cuda:0) on a 4.1M-spectrum,
#      140-point demo pool, through `mljm bench-al`;
#   2. the GPU semaphore: `mljm serve` with gpu.slots = 1 and two ACTIVE_ML jobs run at once;
#      they must never be PROCESSING together, and both must complete;
#   3. the iteration of 1. on a 1M × 600 pool.
# usage: gpu_check.sh MLJM_BINARY OUT_DIR
set -u
MLJM=$1
OUT=$2
W=${WORK:-/tmp/mljm-gpu}
mkdir -p "$W" "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
"$MLJM" --version

echo "== bench: 4.1M x 140 on cuda:0"
"$MLJM" bench-al --sizes 4100000 --points 140 --device cuda:0 --work "$W/bench" 2>&1 | tail -n 4
cp "$W/bench/case-4100000-140/run-0/log.txt" "$OUT/iteration-4.1M.log" 2>/dev/null

echo "== semaphore: two GPU jobs, one slot"
D=$W/serve
"$MLJM" demo --pool-only --n 300000 --points 140 --data-dir "$D" >/dev/null 2>&1
mkdir -p "$D/files/t"
cp "$W/bench/case-4100000-140/training_data.h5" "$W/bench/case-4100000-140/oracle_data.json" "$D/files/t/"
cfg='{"iteration": 1, "classes": ["other", "single peak", "double peak"], "candidate_classes": ["single peak", "double peak"], "pool_data_path": "/pool/result.h5", "training_data_path": "/t/training_data.h5", "training_data_to_add_path": "/pool/result.h5", "oracle_data_to_add_path": "/t/oracle_data.json", "perf_est_list_path": "", "oracle_batch_size": 100, "perf_est_batch_size": 10, "epochs_train": 30, "patience_train": 30, "min_delta_train": 0.0, "batch_size_train": 64, "batch_size_predict": 16384}'
MLJM_GPU__SLOTS=1 MLJM_GPU__DEVICE=cuda:0 MLJM_CONFIG=/dev/null "$MLJM" serve --data-dir "$D" --bind 127.0.0.1:8765 >"$OUT/serve.log" 2>&1 &
srv=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:8765/api/jobs/ >/dev/null && break; sleep 0.2; done
ids=()
for k in a b; do
  id=$(curl -sf -X POST -H 'content-type: application/json' http://127.0.0.1:8765/api/jobs/ \
    -d "{\"type\": \"ACTIVE_ML\", \"label\": \"gpu-$k\", \"config\": $cfg}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
  ids+=("$id")
done
for id in "${ids[@]}"; do curl -sf -X POST "http://127.0.0.1:8765/api/jobs/$id/process/RUN" >/dev/null; done
smi=""
for _ in $(seq 600); do
  p=""
  for id in "${ids[@]}"; do p+=$(curl -sf "http://127.0.0.1:8765/api/jobs/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["phase"][:2])'); done
  [[ "$p" == *PR* ]] && [ -z "$smi" ] && smi=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader)
  case $p in *PR*|*QU*|*PE*) sleep 0.1 ;; *) break ;; esac
done
echo "phases at the end: $p (CO = COMPLETED); GPU processes while a job ran: $smi"
# The jobs' own start and end times (polling two jobs one after the other cannot tell).
for id in "${ids[@]}"; do curl -sf "http://127.0.0.1:8765/api/jobs/$id"; echo; done | python3 -c '
import json, sys
jobs = [json.loads(l) for l in sys.stdin if l.strip()]
for j in jobs:
    m = j.get("metrics", {})
    print(j["label"], j["phase"], j["started_at"], j["ended_at"], "train_s", m.get("train_s"), "predict_s", m.get("predict_s"))
a, b = sorted(jobs, key=lambda j: j["started_at"])
print("one at a time:", a["ended_at"] <= b["started_at"])
'
kill $srv

echo "== bench: 1M x 600 on cuda:0"
"$MLJM" bench-al --sizes 1000000 --points 600 --device cuda:0 --work "$W/bench" 2>&1 | tail -n 4
