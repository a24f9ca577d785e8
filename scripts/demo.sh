#!/usr/bin/env bash
# make demo: what lorakit does, on built-in and shipped inputs. Each step
# prints the command it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $bin/lora-inspect plan --config llama3-8b --rank 16 --alpha 32 --targets q_proj,k_proj,v_proj,o_proj
step $bin/lora-inspect examples/tiny-llama examples/tiny-lora
step $bin/lora-inspect --deltas examples/tiny-lora --base examples/tiny-llama
