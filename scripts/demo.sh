#!/usr/bin/env bash
# make demo: the whole lorakit pipeline on a built-in default, with Go only and
# nothing downloaded. A random Llama-shaped model with a byte-level tokenizer is
# generated from a seed (go run ./tools/demomodel init -seed 1 -o DIR); it is
# quantized to NF4, a QLoRA adapter is trained on a task the random model cannot
# do (rot13 of four-letter words, examples/data/rot13-*.jsonl), merged, exported
# to GGUF and inspected. The 20 held-out prompts are answered by greedy decoding
# before and after training: in Go (pkg/llama) and by llama.cpp on the exported
# GGUF files, through node-llama-cpp, which the demo installs once into the user
# cache when Node.js and npm are present (skipped with the reason otherwise, or
# with LORAKIT_NO_LLAMACPP=1). Each step prints the command it runs; outputs go
# to ./demo/.
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

# The demo's own helper (model generator, greedy evaluation).
go build -o "$out/demomodel" ./tools/demomodel
dm=$out/demomodel

# llama.cpp answers too, through the prebuilt binaries of the npm package
# node-llama-cpp (linux-x64), installed once into the user cache as the tests
# do (node tools/llamacpp/logits.mjs install). skip_llamacpp holds the reason
# when it cannot run; nothing here fails the demo.
npm_cache=${LORAKIT_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lorakit/npm}
llamacpp_pkg=node-llama-cpp-3.21.1
skip_llamacpp=
if [ -n "${LORAKIT_NO_LLAMACPP:-}" ]; then
	skip_llamacpp="LORAKIT_NO_LLAMACPP is set"
elif [ "$(uname -sm)" != "Linux x86_64" ]; then
	skip_llamacpp="node-llama-cpp's llama.cpp binaries are installed for Linux x86_64 only"
elif ! command -v node >/dev/null 2>&1; then
	skip_llamacpp="needs Node.js (node not on PATH)"
elif [ ! -f "$npm_cache/$llamacpp_pkg/node_modules/node-llama-cpp/package.json" ] && ! command -v npm >/dev/null 2>&1; then
	skip_llamacpp="needs npm to install $llamacpp_pkg (npm not on PATH)"
fi

# install_llamacpp installs node-llama-cpp when it is missing, saying so in one
# line; when npm fails (no network) it sets skip_llamacpp instead.
install_llamacpp() {
	[ -z "$skip_llamacpp" ] || return 0
	[ ! -f "$npm_cache/$llamacpp_pkg/node_modules/node-llama-cpp/package.json" ] || return 0
	printf '\nllama.cpp: installing %s into %s with npm (once, about 85 MB)...' "$llamacpp_pkg" "$npm_cache"
	local t0
	t0=$(date +%s)
	# Without a network npm would retry for minutes: fewer, shorter retries.
	if npm_config_fetch_retries=${npm_config_fetch_retries:-1} npm_config_fetch_retry_maxtimeout=${npm_config_fetch_retry_maxtimeout:-10000} \
		npm_config_fetch_timeout=${npm_config_fetch_timeout:-60000} \
		node tools/llamacpp/logits.mjs install >/dev/null 2>"$out/llamacpp-install.log"; then
		printf ' done in %d s\n' "$(($(date +%s) - t0))"
	else
		skip_llamacpp="npm could not install $llamacpp_pkg (see $out/llamacpp-install.log)"
		printf ' failed\n'
	fi
}

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
	--batch 32 --max-steps "$steps" --device auto --log "$out/train-log.jsonl" \
	--eval "$data/rot13-test.jsonl" --eval-every 20
train_s=$(($(date +%s) - t0))
say "$bin/lora-train plot $out/train-log.jsonl -o $out/loss.png --log-y"
$bin/lora-train plot "$out/train-log.jsonl" -o "$out/loss.png" --log-y | tee "$out/loss.txt"
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
install_llamacpp
if [ -z "$skip_llamacpp" ]; then
	say "node tools/demomodel/generate.mjs $out/base.gguf $data/rot13-test.jsonl"
	node tools/demomodel/generate.mjs "$out/base.gguf" "$data/rot13-test.jsonl" | tee "$out/llamacpp-before.txt"
	cpp_before=$(sed -n '$p' "$out/llamacpp-before.txt")
	say "node tools/demomodel/generate.mjs $out/merged.gguf $data/rot13-test.jsonl"
	node tools/demomodel/generate.mjs "$out/merged.gguf" "$data/rot13-test.jsonl" | tee "$out/llamacpp-after.txt"
	cpp_after=$(sed -n '$p' "$out/llamacpp-after.txt")
fi

printf '\n\033[1mSummary\033[0m (outputs in %s/)\n' "$out"
sed -n 2p "$out/loss.txt"
printf '  loss plot          %s\n' "$out/loss.png"
printf '  training           %s steps in %d s\n' "$steps" "$train_s"
printf '  held-out, Go       before: %s (NF4 base)   after: %s (merged)\n' "$before" "$after"
if [ -z "$skip_llamacpp" ]; then
	printf '  held-out, llama.cpp before: %s (base.gguf)  after: %s (merged.gguf)\n' "$cpp_before" "$cpp_after"
else
	printf '  llama.cpp          skipped: %s\n' "$skip_llamacpp"
fi
printf '  total              %d s\n' "$(($(date +%s) - start))"
