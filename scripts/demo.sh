#!/usr/bin/env bash
# make demo: the lorakit pipeline on the shipped tiny Llama and a small task
# it cannot do before training (continuing arithmetic progressions of byte
# values). Each step prints the command it runs; outputs go to ./demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin
out=demo
rm -rf "$out" && mkdir -p "$out"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# What a LoRA of the everyday size costs, from a config alone.
step $bin/lora-inspect plan --config llama3-8b --rank 16 --alpha 32 --targets q_proj,k_proj,v_proj,o_proj

# The inputs.
step $bin/lora-inspect examples/tiny-llama
base=examples/tiny-llama
if $bin/lora-quantize --help >/dev/null 2>&1 && $bin/lora-quantize examples/tiny-llama -o "$out/tiny-nf4" -q 2>/dev/null; then
	step $bin/lora-inspect "$out/tiny-nf4"
	base="$out/tiny-nf4" # QLoRA: train on the NF4 base
fi

# Loss on held-out rows before training.
printf '\n\033[1m$ %s\033[0m\n' "$bin/lora-train eval --base $base --data examples/data/progressions-test.jsonl"
$bin/lora-train eval --base "$base" --data examples/data/progressions-test.jsonl | tee "$out/eval-before.txt" | sed -n 1p

# Train (on the GPU when one is usable, else the CPU).
step $bin/lora-train --base "$base" --data examples/data/progressions.jsonl -o "$out/adapter" \
	--rank 8 --alpha 16 --targets all-linear --lr 5e-3 --schedule cosine --warmup 5 \
	--batch 8 --max-steps 60 --log "$out/train-log.jsonl"
step $bin/lora-inspect "$out/adapter"
printf '\n\033[1m$ %s\033[0m\n' "$bin/lora-train eval --base $base --adapter $out/adapter --data examples/data/progressions-test.jsonl"
$bin/lora-train eval --base "$base" --adapter "$out/adapter" --data examples/data/progressions-test.jsonl | tee "$out/eval-after.txt" | sed -n 1p

# Merge into the float base (a stream straight into lora-inspect), then to a folder.
printf '\n\033[1m$ %s\033[0m\n' "$bin/lora-merge --base examples/tiny-llama --adapter $out/adapter -o - | $bin/lora-inspect -"
$bin/lora-merge --base examples/tiny-llama --adapter "$out/adapter" -o - -q | $bin/lora-inspect -
step $bin/lora-merge --base examples/tiny-llama --adapter "$out/adapter" -o "$out/merged"

# Export for llama.cpp.
if $bin/lora-gguf --help >/dev/null 2>&1 && $bin/lora-gguf "$out/merged" -o "$out/merged.gguf" -q 2>/dev/null; then
	step $bin/lora-inspect "$out/merged.gguf"
fi
printf '\nOutputs are in %s/.\n' "$out"
