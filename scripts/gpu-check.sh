#!/usr/bin/env bash
# gpu-check.sh: the prepared GPU check of lorakit's CUDA path, for a session
# that has a device machine (an H200 or H100, CUDA 13). It runs pre-built
# binaries, so the device machine needs no Go toolchain, and finishes within
# one device call of 8 minutes: every step has its own time limit, capped by
# what remains of the budget.
#
# 1. Here (the machine with Go and ../shared), build the binaries and copy the
#    fixtures they need into the ignored folder bin/gpu (about 19 MB; ../shared
#    does not travel to the device machine):
#
#        scripts/gpu-check.sh build
#
# 2. On the device machine, through the device tool's run:
#
#        command:   bash scripts/gpu-check.sh
#        carry:     ["bin/gpu"]
#        timeout_s: 540
#
# Correctness first, then speed:
#   new          NVRTC compiles every kernel (cold), then loads them from the
#                disk cache (warm)
#   tests        conformance suite, determinism, the train/plain fixture GPU
#                vs CPU (f32, bf16 weights, bf16 mixed precision), Gemma 2,
#                Phi-3 and Qwen2 steps GPU vs CPU, timings
#   bench        lora-train bench --json: 8B LoRA 1×2048, 8B LoRA 4×2048 with
#                gradient checkpointing, 8B QLoRA 1×2048, 1B 4×2048, Qwen2.5-7B
#                and Gemma-2-9B LoRA 1×2048, then the longest 8B sequence at
#                batch 1 (32k, 64k, 128k, … until one fails or time runs out)
#   at the end   if time remains: ptxas's report with the device's own NVRTC
#                (registers, spills), compute-sanitizer memcheck and racecheck
#
# Results come back under $OUT (8 files): summary.txt (one line a step:
# PASS/FAIL/SKIP, seconds), env.txt (GPU, driver, libraries, commit),
# new.log, tests.log, bench.json (every benchmark: its command, status,
# seconds, the "ready" line (a run that timed out after it fits in memory)
# and lora-train's JSON), bench.log (their stderr), sanitizers.log.
# Steps run in order of value; a failing step does not stop the next ones.
# The exit status is the number of failed steps (the benchmarks excepted).
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/bin/gpu"

if [ "${1:-}" = "build" ]; then
	set -e
	cd "$root"
	mkdir -p "$bin"
	# Plain builds (no GOEXPERIMENT, no cgo): the device machine needs nothing else.
	CGO_ENABLED=0 GOEXPERIMENT= go test -c -o "$bin/cuda.test" ./pkg/compute/cuda
	CGO_ENABLED=0 GOEXPERIMENT= go build -trimpath -o "$bin/lora-train" ./cmd/lora-train
	# The fixtures: $LORAKIT_FIXTURES, else shared/fixtures in the root or a
	# folder above it (as the tests find them).
	fx="${LORAKIT_FIXTURES:-}"
	d="$root"
	while [ -z "$fx" ] && [ "$d" != / ]; do
		[ -d "$d/shared/fixtures" ] && fx="$d/shared/fixtures"
		d="$(dirname "$d")"
	done
	[ -n "$fx" ] || { echo "shared/fixtures not found (set LORAKIT_FIXTURES)" >&2; exit 1; }
	rm -rf "$bin/fixtures"
	mkdir -p "$bin/fixtures/peft/train"
	cp -r "$fx/peft/tiny" "$bin/fixtures/peft/"
	cp -r "$fx/peft/train/plain" "$bin/fixtures/peft/train/"
	{ git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown; git -C "$root" status --short 2>/dev/null | head -5; } >"$bin/commit.txt"
	du -sh "$bin"
	echo "built; now run on the device: bash scripts/gpu-check.sh (carry bin/gpu, timeout_s 540)"
	exit 0
fi

out="${OUT:-$root/out/gpu-check}"
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
failed=0
t0=$(date +%s)
budget="${GPU_CHECK_SECONDS:-470}" # the whole run, seconds
left() { echo $((budget - ($(date +%s) - t0))); }

# step NAME LIMIT LOG CMD...: runs CMD with a time limit (capped by the
# budget left), appending to LOG, and records the outcome in summary.txt.
step() {
	local name=$1 limit=$2 log=$3
	shift 3
	local l s e rc tmp verdict
	l=$(left)
	if [ "$l" -lt 15 ]; then
		echo "$name: SKIP (no time left)" | tee -a "$summary"
		return
	fi
	[ "$limit" -gt "$l" ] && limit=$l
	tmp=$(mktemp)
	s=$(date +%s)
	timeout -k 5 "$limit" "$@" >"$tmp" 2>&1
	rc=$?
	e=$(date +%s)
	{ echo "== $name ($limit s limit): $*"; cat "$tmp"; } >>"$log"
	verdict=PASS
	if [ $rc -ne 0 ]; then
		verdict="FAIL (exit $rc$([ $rc -eq 124 ] && echo ', timed out'))"
		failed=$((failed + 1))
	elif grep -q -- '--- SKIP' "$tmp" && ! grep -q -- '--- PASS' "$tmp"; then
		verdict=SKIP
	fi
	rm -f "$tmp"
	echo "$name: $verdict, $((e - s)) s" | tee -a "$summary"
}

# The environment, and where the CUDA libraries are.
{
	echo "date: $(date -u)"
	echo "host: $(uname -a)"
	echo "commit: $(cat "$bin/commit.txt" 2>/dev/null)"
	nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi failed"
	echo "ldconfig:"
	ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcublas(Lt)?\.so|libnvrtc' || echo "  (none in the linker cache)"
	echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
	sha256sum "$bin/cuda.test" "$bin/lora-train" 2>&1
} >"$out/env.txt" 2>&1

# Folders holding cuBLAS and NVRTC 13 (or 12), for the backend's search:
# the toolkit's folders first, a search of /usr/local, /usr/lib and /opt (the
# Python wheels) only when they have neither.
libs=""
adddir() { case ":$libs:" in *":$1:"*) ;; *) libs="${libs:+$libs:}$1" ;; esac; }
for f in /usr/local/cuda*/lib64/lib{cublas,nvrtc}.so.1[23]* /usr/local/cuda*/targets/*/lib/lib{cublas,nvrtc}.so.1[23]*; do
	[ -e "$f" ] && adddir "$(dirname "$f")"
done
if [ -z "$libs" ]; then
	for f in $(timeout 60 find /usr/local /usr/lib /usr/lib64 /opt \( -name 'libcublas.so.1[23]*' -o -name 'libnvrtc.so.1[23]*' \) 2>/dev/null | head -20); do
		adddir "$(dirname "$f")"
	done
fi
export LORAKIT_CUDA_LIBS="$libs"
echo "LORAKIT_CUDA_LIBS=$libs" >>"$out/env.txt"
export LORAKIT_CUDA_CACHE=/tmp/lorakit-cuda-cache
rm -rf "$LORAKIT_CUDA_CACHE"
export LORAKIT_FIXTURES="$bin/fixtures"
# Fail, not skip, when the backend cannot start (LORAKIT_REQUIRE_CUDA=0 for a
# dry run on a machine without a GPU).
export LORAKIT_REQUIRE_CUDA="${LORAKIT_REQUIRE_CUDA:-1}"

if [ ! -x "$bin/cuda.test" ] || [ ! -x "$bin/lora-train" ]; then
	echo "missing binaries in $bin: run 'scripts/gpu-check.sh build' first and carry bin/gpu" | tee -a "$summary"
	exit 1
fi

# Tests find ../../../kernels relative to the package folder.
cd "$root/pkg/compute/cuda"
t="$bin/cuda.test"

# --- correctness ------------------------------------------------------------
step "new (cold: NVRTC compiles every kernel)" 120 "$out/new.log" "$t" -test.run '^TestNew$' -test.v -test.count=1
step "new (warm: kernels from the disk cache)" 45 "$out/new.log" "$t" -test.run '^TestNew$' -test.v -test.count=1
ls -la "$LORAKIT_CUDA_CACHE" >>"$out/new.log" 2>&1
step "conformance + determinism" 120 "$out/tests.log" "$t" -test.run '^(TestConformance|TestDeterminism)$' -test.v -test.count=1
step "train/plain GPU vs CPU (f32, bf16 weights, bf16 mixed)" 120 "$out/tests.log" "$t" -test.run '^TestTrainPlainMatchesCPU$' -test.v -test.count=1
step "architectures GPU vs CPU (Gemma 2, Phi-3, Qwen2; f32, bf16 mixed)" 60 "$out/tests.log" "$t" -test.run '^TestArchMatchesCPU$' -test.v -test.count=1
step "timings" 60 "$out/tests.log" "$t" -test.run '^TestTimings$' -test.v -test.count=1
correctness_failed=$failed

# --- benchmarks (shared/specs/baselines.md) ------------------------------------
bjson="$out/bench.json"
blog="$out/bench.log"
: >"$blog"
first=1
printf '{\n "commit": "%s",\n "runs": [' "$(head -1 "$bin/commit.txt" 2>/dev/null)" >"$bjson"

# bench NAME LIMIT ARGS...: one lora-train bench --json run, recorded in
# bench.json as {name, command, status, seconds, result}. Returns 0 when it
# produced a result.
bench() {
	local name=$1 limit=$2
	shift 2
	local l s e rc res errs ready status
	l=$(left)
	[ "$limit" -gt $((l - 5)) ] && limit=$((l - 5))
	if [ "$limit" -lt 20 ]; then
		echo "bench $name: SKIP (no time left)" | tee -a "$summary"
		return 1
	fi
	res=$(mktemp)
	errs=$(mktemp)
	s=$(date +%s)
	timeout -k 5 "$limit" "$bin/lora-train" bench --device cuda --json "$@" >"$res" 2>"$errs"
	rc=$?
	e=$(date +%s)
	{ echo "== $name ($limit s limit): lora-train bench $*"; cat "$errs"; } >>"$blog"
	status=ok
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		status=timeout
	elif [ $rc -ne 0 ]; then
		status="fail (exit $rc)"
		grep -qi 'out of memory' "$errs" && status="out of memory"
	fi
	# bench's line once the model and workspace are allocated: a run that
	# timed out after it fits in memory.
	ready=$(grep -o 'ready in .*' "$errs" | tail -1 | tr -d '"\\')
	rm -f "$errs"
	[ $first -eq 1 ] || printf ',' >>"$bjson"
	first=0
	printf '\n  {"name": "%s", "command": "lora-train bench --device cuda --json %s", "status": "%s", "seconds": %d, "ready": "%s", "result": ' \
		"$name" "$*" "$status" $((e - s)) "$ready" >>"$bjson"
	if [ "$status" = ok ] && [ -s "$res" ]; then cat "$res" >>"$bjson"; else printf 'null' >>"$bjson"; fi
	printf '}' >>"$bjson"
	local tps mfu mem
	tps=$(grep -o '"tokens_per_s": [0-9.e+-]*' "$res" | head -1 | awk '{printf "%.0f", $2}')
	mfu=$(grep -o '"mfu": [0-9.e+-]*' "$res" | head -1 | awk '{printf "%.1f%%", 100*$2}')
	mem=$(grep -o '"peak_memory_bytes": [0-9]*' "$res" | head -1 | awk '{printf "%.1f GiB", $2/1073741824}')
	rm -f "$res"
	echo "bench $name: $status, $((e - s)) s${tps:+, $tps tokens/s, MFU $mfu, peak $mem}" | tee -a "$summary"
	[ "$status" = ok ]
}

bench "8B LoRA 1x2048" 75 --shape llama3-8b --batch 1 --seq 2048 --steps 6
bench "8B LoRA 4x2048 grad-checkpoint" 90 --shape llama3-8b --batch 4 --seq 2048 --steps 4 --grad-checkpoint
bench "8B QLoRA 1x2048" 75 --shape llama3-8b --batch 1 --seq 2048 --steps 6 --qlora
bench "1B 4x2048" 60 --shape llama3.2-1b --batch 4 --seq 2048 --steps 6
bench "Qwen2.5-7B LoRA 1x2048" 75 --shape qwen2.5-7b --batch 1 --seq 2048 --steps 6
bench "Gemma-2-9B LoRA 1x2048" 75 --shape gemma2-9b --batch 1 --seq 2048 --steps 6
# The longest 8B sequence at batch 1 (checkpointing, one cold step each):
# upward until one fails, times out or the budget runs out.
for seq in 32768 65536 131072 196608 262144; do
	bench "8B LoRA 1x$seq grad-checkpoint" 400 --shape llama3-8b --batch 1 --seq $seq --steps 1 --warmup 0 --grad-checkpoint || break
done
printf '\n ]\n}\n' >>"$bjson"

# --- while time remains: the device's own ptxas report, the sanitizers ----------
if [ "$(left)" -gt 40 ]; then
	step "ptxas report, CUDA 13 (sm_80, sm_90: registers, spills)" 60 "$out/new.log" "$t" -test.run '^TestNVRTCCompile$' -test.v -test.count=1
fi
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$cs" ] && [ "$(left)" -gt 60 ]; then
	step "memcheck (conformance)" 120 "$out/sanitizers.log" "$cs" --tool memcheck --error-exitcode 9 "$t" -test.run '^TestConformance$' -test.count=1
	step "racecheck (attention, reductions)" 90 "$out/sanitizers.log" "$cs" --tool racecheck --error-exitcode 9 "$t" -test.run '^TestConformance$/(attention|rmsnorm|cross_entropy|norm2|dora_norm)' -test.count=1
else
	echo "sanitizers: SKIP (compute-sanitizer ${cs:-not found}, $(left) s left)" | tee -a "$summary"
fi

echo "total: $(($(date +%s) - t0)) s, $failed failed ($correctness_failed before the benchmarks)" | tee -a "$summary"
exit $failed
