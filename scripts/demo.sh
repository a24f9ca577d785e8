#!/usr/bin/env bash
# make demo: the whole lorakit pipeline on a built-in default, with Go only and
# nothing downloaded. A random Llama-shaped model with a byte-level tokenizer is
# generated from a seed (go run ./tools/demomodel init -seed 1 -o DIR); it is
# quantized to NF4, a QLoRA adapter is trained on a task the random model cannot
# do (rot13 of four-letter words, examples/data/rot13-*.jsonl), merged, exported
# to GGUF and inspected. The 20 held-out prompts are answered by greedy decoding
# before and after training: in Go (pkg/llama) and, when Node.js and
# node-llama-cpp are installed, by llama.cpp on the exported GGUF files.
# Each step prints the command it runs; outputs go to ./demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin
out=demo
data=examples/data
seed=${SEED:-1}
steps=${STEPS:-300}
start=$(date +%s)
rm -rf "$out" && mkdir -p "$out"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
step() { say "$*"; "$@"; }

# The demo's own helper (model generator, greedy evaluation, loss plot).
go build -o "$out/demomodel" ./tools/demomodel
dm=$out/demomodel

# llama.cpp (node-llama-cpp) answers too when Node.js and the package are
# already installed (node tools/llamacpp/logits.mjs install); nothing is downloaded.
npm_cache=${LORAKIT_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lorakit/npm}
llamacpp=
if command -v node >/dev/null 2>&1 && [ -f "$npm_cache/node-llama-cpp-3.21.1/node_modules/node-llama-cpp/package.json" ]; then
	llamacpp=1
fi

# What a LoRA of the everyday size costs, from a config alone.
step $bin/lora-inspect plan --config llama3-8b --rank 16 --alpha 32 --targets q_proj,k_proj,v_proj,o_proj

# The inputs: a random model from a seed, and the shipped task.
step $dm init -seed "$seed" -o "$out/base"
step $bin/lora-inspect "$out/base"
say "sed -n 1,3p $data/rot13-train.jsonl   # $(wc -l <"$data/rot13-train.jsonl") training, $(wc -l <"$data/rot13-test.jsonl") held-out examples"
sed -n 1,3p "$data/rot13-train.jsonl"

# QLoRA: the base in NF4 with double quantization, as bitsandbytes stores it.
step $bin/lora-quantize "$out/base" -o "$out/base-nf4"
step $bin/lora-inspect "$out/base-nf4"

# The held-out prompts before training.
say "$dm eval -model $out/base-nf4 -data $data/rot13-test.jsonl"
$dm eval -model "$out/base-nf4" -data "$data/rot13-test.jsonl" | tee "$out/eval-before.txt"
before=$(sed -n '$p' "$out/eval-before.txt")

# Train (on the GPU when one is usable, else the CPU).
t0=$(date +%s)
step $bin/lora-train --base "$out/base-nf4" --data "$data/rot13-train.jsonl" -o "$out/adapter" \
	--rank 16 --alpha 32 --targets all-linear --dropout 0 --lr 3e-3 --schedule cosine --warmup 20 \
	--batch 32 --max-steps "$steps" --device auto --log "$out/train-log.jsonl"
train_s=$(($(date +%s) - t0))
step $dm plot -log "$out/train-log.jsonl" -o "$out/loss.png"
step $bin/lora-inspect "$out/adapter"

# Merge into the NF4 base (dequantized: the weights the adapter was trained
# against): through a pipe into lora-inspect, then to a folder.
say "$bin/lora-merge --base $out/base-nf4 --adapter $out/adapter -o - | $bin/lora-inspect -"
$bin/lora-merge --base "$out/base-nf4" --adapter "$out/adapter" -o - -q | $bin/lora-inspect -
step $bin/lora-merge --base "$out/base-nf4" --adapter "$out/adapter" -o "$out/merged"

# Export for llama.cpp: the base and the merge.
step $bin/lora-gguf "$out/base" -o "$out/base.gguf"
step $bin/lora-gguf "$out/merged" -o "$out/merged.gguf"
step $bin/lora-inspect "$out/merged.gguf"

# The held-out prompts after training.
say "$dm eval -model $out/merged -data $data/rot13-test.jsonl"
$dm eval -model "$out/merged" -data "$data/rot13-test.jsonl" | tee "$out/eval-after.txt"
after=$(sed -n '$p' "$out/eval-after.txt")
cpp_before= cpp_after=
if [ -n "$llamacpp" ]; then
	say "node tools/demomodel/generate.mjs $out/base.gguf $data/rot13-test.jsonl"
	node tools/demomodel/generate.mjs "$out/base.gguf" "$data/rot13-test.jsonl" | tee "$out/llamacpp-before.txt"
	cpp_before=$(sed -n '$p' "$out/llamacpp-before.txt")
	say "node tools/demomodel/generate.mjs $out/merged.gguf $data/rot13-test.jsonl"
	node tools/demomodel/generate.mjs "$out/merged.gguf" "$data/rot13-test.jsonl" | tee "$out/llamacpp-after.txt"
	cpp_after=$(sed -n '$p' "$out/llamacpp-after.txt")
fi

printf '\n\033[1mSummary\033[0m (outputs in %s/)\n' "$out"
$dm plot -log "$out/train-log.jsonl" -width 48 | sed 's/^/  /'
printf '  loss plot          %s\n' "$out/loss.png"
printf '  training           %s steps in %d s\n' "$steps" "$train_s"
printf '  held-out, Go       before: %s (NF4 base)   after: %s (merged)\n' "$before" "$after"
if [ -n "$llamacpp" ]; then
	printf '  held-out, llama.cpp before: %s (base.gguf)  after: %s (merged.gguf)\n' "$cpp_before" "$cpp_after"
else
	printf '  llama.cpp          skipped (needs Node.js and: node tools/llamacpp/logits.mjs install)\n'
fi
printf '  total              %d s\n' "$(($(date +%s) - start))"
