#!/usr/bin/env bash
# gpu-check.sh: the prepared GPU check of pkg/compute/cuda, for a session
# that has a device machine (an H100). It runs pre-built test binaries, so the
# device machine needs no Go toolchain, and finishes in well under 10 minutes
# (every step has its own timeout; a typical run takes 1 to 3 minutes).
#
# 1. Here (the machine with Go and ../shared), build the binaries and copy the
#    fixtures they need into the ignored folder bin/gpu (../shared does not
#    travel to the device machine):
#
#        scripts/gpu-check.sh build
#
# 2. On the device machine, through the device tool's run:
#
#        command:   bash scripts/gpu-check.sh
#        carry:     ["bin/gpu"]
#        timeout_s: 540
#
#    Results come back under $OUT (8 files at most): summary.txt (one line a
#    step, PASS/FAIL/SKIP with seconds), env.txt (GPU, driver, the libraries
#    found), new.log (backend start: cold NVRTC compile, then the disk
#    cache), conformance.log (the conformance suite and a determinism check),
#    train.log (shared/fixtures/peft/train/plain, 6 AdamW steps, GPU vs CPU,
#    f32 and bf16 weights), timings.log (GEMM TFLOP/s, attention, axpy
#    GB/s), memcheck.log and racecheck.log (compute-sanitizer on the suite).
#
# Steps run in order of value; a failing step does not stop the next ones.
# The exit status is the number of failed steps (0: all passed or skipped).
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/bin/gpu"

if [ "${1:-}" = "build" ]; then
	set -e
	cd "$root"
	mkdir -p "$bin"
	# Plain build (no GOEXPERIMENT): the device machine needs nothing else.
	CGO_ENABLED=0 GOEXPERIMENT= go test -c -o "$bin/cuda.test" ./pkg/compute/cuda
	fx="$root/../shared/fixtures"
	[ -d "$fx" ] || fx="$root/shared/fixtures"
	rm -rf "$bin/fixtures"
	mkdir -p "$bin/fixtures/peft/train"
	cp -r "$fx/peft/tiny" "$bin/fixtures/peft/"
	cp -r "$fx/peft/train/plain" "$bin/fixtures/peft/train/"
	du -sh "$bin"
	echo "built; now run on the device: bash scripts/gpu-check.sh (carry bin/gpu)"
	exit 0
fi

out="${OUT:-$root/out/gpu-check}"
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
failed=0
t0=$(date +%s)

# step NAME TIMEOUT LOG CMD...: runs CMD with a timeout, appending to LOG, and
# records the outcome in summary.txt.
step() {
	local name=$1 limit=$2 log=$3
	shift 3
	local s e rc
	s=$(date +%s)
	echo "== $name: $*" >>"$log"
	timeout -k 10 "$limit" "$@" >>"$log" 2>&1
	rc=$?
	e=$(date +%s)
	local verdict=PASS
	if [ $rc -ne 0 ]; then
		verdict="FAIL (exit $rc$([ $rc -eq 124 ] && echo ', timed out'))"
		failed=$((failed + 1))
	elif grep -q -- '--- SKIP' "$log" && ! grep -q -- '--- PASS' "$log"; then
		verdict=SKIP
	fi
	echo "$name: $verdict, $((e - s)) s" | tee -a "$summary"
}

# The environment, and where the CUDA libraries are.
{
	echo "date: $(date -u)"
	echo "host: $(uname -a)"
	nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || echo "nvidia-smi failed"
	echo "ldconfig:"
	ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcublas(Lt)?\.so|libnvrtc' || echo "  (none in the linker cache)"
	echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
	echo "test binary: $(sha256sum "$bin/cuda.test" 2>&1)"
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

if [ ! -x "$bin/cuda.test" ]; then
	echo "missing $bin/cuda.test: run 'scripts/gpu-check.sh build' first and carry bin/gpu" | tee -a "$summary"
	exit 1
fi

# Tests find ../../../kernels relative to the package folder.
cd "$root/pkg/compute/cuda"
t="$bin/cuda.test"

step "new (cold: NVRTC compiles every kernel)" 120 "$out/new.log" "$t" -test.run '^TestNew$' -test.v -test.count=1
step "new (warm: kernels from the disk cache)" 60 "$out/new.log" "$t" -test.run '^TestNew$' -test.v -test.count=1
ls -la "$LORAKIT_CUDA_CACHE" >>"$out/new.log" 2>&1
step "conformance + determinism" 120 "$out/conformance.log" "$t" -test.run '^(TestConformance|TestDeterminism)$' -test.v -test.count=1 -test.timeout 110s
step "train/plain GPU vs CPU (f32, bf16)" 120 "$out/train.log" "$t" -test.run '^TestTrainPlainMatchesCPU$' -test.v -test.count=1 -test.timeout 110s
step "timings" 90 "$out/timings.log" "$t" -test.run '^TestTimings$' -test.v -test.count=1 -test.timeout 80s

# compute-sanitizer, while time remains (it slows kernels down a lot).
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$cs" ] && [ $(($(date +%s) - t0)) -lt 240 ]; then
	step "memcheck (conformance)" 120 "$out/memcheck.log" "$cs" --tool memcheck --error-exitcode 9 "$t" -test.run '^TestConformance$' -test.count=1
	step "racecheck (attention, reductions)" 90 "$out/racecheck.log" "$cs" --tool racecheck --error-exitcode 9 "$t" -test.run '^TestConformance$/(attention|rmsnorm|cross_entropy|norm2|dora_norm)' -test.count=1
else
	echo "sanitizers: SKIP (compute-sanitizer ${cs:-not found}, $(($(date +%s) - t0)) s elapsed)" | tee -a "$summary"
fi

echo "total: $(($(date +%s) - t0)) s, $failed failed" | tee -a "$summary"
exit $failed
