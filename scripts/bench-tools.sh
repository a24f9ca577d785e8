#!/usr/bin/env bash
# bench-tools.sh: the end-to-end speed and memory of the streaming tools
# against copying the model, as docs/benchmarks.md reports them.
#
#     scripts/bench-tools.sh DIR [small|8b] [RUNS]
#
# builds the five tools with a plain `go build` (what `go install` gives) into
# DIR/bin, writes a random bf16 Llama-shaped model and a rank-16 all-linear
# adapter with tools/genmodel into DIR/<size> (kept for the next call), then
# times in one hyperfine run, page cache as the previous run left it and
# `rm -rf DIR/out; sync` before each run:
#
#     cp -r MODEL DIR/out && sync          the I/O anchor
#     lora-merge --base MODEL --adapter ADAPTER -o DIR/out
#     lora-quantize MODEL -o DIR/out        NF4 + double quantization
#     lora-gguf MODEL -o DIR/out --type f16
#     lora-gguf MODEL -o DIR/out --type q8_0
#
# Each command runs under /usr/bin/time, which adds its peak RSS (KiB) to
# DIR/rss/<name>; the script prints the largest per command. Sizes:
#   small  0.97 GB: hidden 2048, intermediate 5632, 8 layers, vocab 32000
#          (largest tensor 131 MB), 10 runs by default
#   8b     16.06 GB: Llama 3 8B's shape, 4 shards (largest tensors the
#          128256×4096 embedding and lm_head, 1.05 GB each), 3 runs
# Disk: the model once, plus the largest output (the merged model) once; 8b
# needs about 33 GB free. Needs hyperfine and GNU time.
set -euo pipefail

dir=${1:?usage: scripts/bench-tools.sh DIR [small|8b] [RUNS]}
size=${2:-small}
case $size in
small) gen=(-layers 8) runs=${3:-10} warmup=1 ;;
8b) gen=(-hidden 4096 -inter 14336 -layers 32 -heads 32 -kv-heads 8 -vocab 128256 -shards 4) runs=${3:-3} warmup=0 ;;
*) echo "bench-tools.sh: size must be small or 8b" >&2; exit 2 ;;
esac
for c in hyperfine /usr/bin/time; do
	command -v "$c" >/dev/null || { echo "bench-tools.sh: $c not found" >&2; exit 1; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=$dir/bin model=$dir/$size/model adapter=$dir/$size/adapter out=$dir/out

go=${GO:-go}
(cd "$root" && $go build -o "$bin/" ./cmd/... && $go build -o "$bin/genmodel" ./tools/genmodel)
if [ ! -f "$model/config.json" ] || [ ! -f "$adapter/adapter_config.json" ]; then
	"$bin/genmodel" -o "$dir/$size" "${gen[@]}"
fi
rm -rf "$out" "$dir/rss"
mkdir -p "$dir/rss"
"$bin/lora-merge" --base "$model" --adapter "$adapter" -o "$out" -v 2>&1 | grep -E 'kernel'
rm -rf "$out"

t() { echo "/usr/bin/time -f %M -a -o $dir/rss/$1"; }
hyperfine -N --warmup "$warmup" --runs "$runs" --prepare "sh -c 'rm -rf $out; sync'" \
	--export-json "$dir/$size.json" --export-markdown "$dir/$size.md" \
	-n 'cp -r + sync' "$(t cp) sh -c 'cp -r $model $out && sync'" \
	-n lora-merge "$(t merge) $bin/lora-merge --base $model --adapter $adapter -o $out -q" \
	-n lora-quantize "$(t quantize) $bin/lora-quantize $model -o $out -q" \
	-n 'lora-gguf f16' "$(t gguf-f16) $bin/lora-gguf $model -o $out --type f16 -q" \
	-n 'lora-gguf q8_0' "$(t gguf-q8_0) $bin/lora-gguf $model -o $out --type q8_0 -q"
rm -rf "$out"

echo
echo "command         mean ± σ (s)       min (s)  mean/min × cp   peak RSS"
python3 - "$dir/$size.json" "$dir/rss" <<'EOF'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
names = {"cp -r + sync": "cp", "lora-merge": "merge", "lora-quantize": "quantize",
         "lora-gguf f16": "gguf-f16", "lora-gguf q8_0": "gguf-q8_0"}
cp = res[0]
for r in res:
    rss = max(int(l) for l in open(f"{sys.argv[2]}/{names[r['command']]}") if l.strip().isdigit())
    print(f"{r['command']:15} {r['mean']:6.2f} ± {r['stddev']:5.2f}   {r['min']:6.2f}   "
          f"{r['mean']/cp['mean']:4.2f} / {r['min']/cp['min']:4.2f}   {rss/1024:8.1f} MiB")
EOF
