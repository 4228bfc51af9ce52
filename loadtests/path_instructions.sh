#!/usr/bin/env bash
# Instructions per request of brum's prediction path, counted by valgrind's callgrind: repeatable
# where wall-clock throughput on a shared 2-core VM is not (BENCHMARKS.md, "N replicas").
#   loadtests/path_instructions.sh NAME PORT [VAR=value ...]      (BRUM_DIR: another checkout)
# Instrumentation is switched on after start-up and 50 warm-up requests; then 200 CLINC150 test
# utterances go over one connection, one text per batch on one thread. Set BRUM_SYNC_SECONDS=0
# so that the sync loop, whose cost grows with wall time (50x under valgrind), is not counted.
set -euo pipefail
name=$1 port=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
python=$root/.venv/bin/python
out=$(mktemp -d)/cg-$name
cd "${BRUM_DIR:-$root}"
env BRUM_PORT="$port" BRUM_CALIBRATE=false BRUM_WARMUP_ITERATIONS=1 BRUM_MAX_BATCH_SIZE=1 \
  BRUM_INTRA_OP_THREADS=1 BRUM_INFERENCE_WORKERS=1 "$@" \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out.%p" \
  "$python" -m app >"$out.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 1; done
send() {
  PYTHONPATH=$root "$python" - "$port" "$1" "$2" <<'PY'
import sys, httpx
from models.sources.clinc150 import load_clinc150
port, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
    for text in load_clinc150().splits["test"].texts[start:stop]:
        assert client.post("/v1/predict", json={"text": text}).status_code == 200
PY
}
send 0 50
callgrind_control -i on "$server" >/dev/null 2>&1
send 100 300
callgrind_control -i off "$server" >/dev/null 2>&1
callgrind_control -d "$server" >/dev/null 2>&1
sleep 2
kill "$server"
wait "$server" 2>/dev/null || true
total=0
for f in "$out".*[0-9]; do
  n=$( (callgrind_annotate "$f" 2>/dev/null || true) | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' | tr -cd 0-9)
  total=$((total + ${n:-0}))
done
echo "$name: $((total / 200)) instructions per request ($total for 200)"
