#!/usr/bin/env bash
# The lorakit pipeline as one shell script with streams: quantize -> train
# (QLoRA) -> merge, streamed into the GGUF export and into inspect.
#
#   examples/pipeline.sh [OUT]      # default OUT: ./pipeline-out
#
# BIN (default: ../bin beside this script), BASE (examples/tiny-llama), DATA
# (examples/data/progressions.jsonl) and STEPS (20) may be set in the
# environment. With pipefail a failure anywhere in a pipe fails the script,
# and the tools' atomic writes leave no partial file behind.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-$here/../bin}
base=${BASE:-$here/tiny-llama}
data=${DATA:-$here/data/progressions.jsonl}
steps=${STEPS:-20}
out=${1:-pipeline-out}
mkdir -p "$out"

# NF4 base for QLoRA.
"$bin/lora-quantize" "$base" -o "$out/nf4" -q

# Train the adapter on the 4-bit base.
"$bin/lora-train" --base "$out/nf4" --data "$data" -o "$out/adapter" \
	--rank 8 --alpha 16 --targets all-linear --lr 5e-3 --batch 8 --max-steps "$steps" \
	--log "$out/train-log.jsonl" -q

# Merge into the float base and export it, without a merged folder on disk:
# the stream carries config.json in its metadata.
"$bin/lora-merge" --base "$base" --adapter "$out/adapter" -o - -q | "$bin/lora-gguf" - -o "$out/model.gguf" -q

# The merge again, straight into inspect, and the GGUF file.
"$bin/lora-merge" --base "$base" --adapter "$out/adapter" -o - -q | "$bin/lora-inspect" --json - > "$out/merged.json"
"$bin/lora-inspect" "$out/adapter" "$out/model.gguf" | tee "$out/report.txt"
