# lorakit — build, test and demo.
#
#   make demo    build ./bin/lora-* and run the main job on a built-in default
#   make test    run every test (vet, unit, golden, fuzz seeds, end to end,
#                every CPU kernel tier, arm64 under qemu)
#   make bench   run the Go benchmarks of the hot paths
#   make bench-tools [SIZE=small|8b] [BENCH_DIR=DIR] [RUNS=N]
#                time the tools, built as `go install` builds them, against
#                cp -r + sync on a generated model
#                (scripts/bench-tools.sh; 8b needs ~33 GB of disk)

GO        ?= go
export CGO_ENABLED := 0

BINS := lora-inspect lora-quantize lora-train lora-merge lora-gguf

# The packages whose results go through the CPU kernels (internal/kernels):
# `make test` runs them once per tier this machine supports, forced with
# LORAKIT_CPU, and on arm64 under qemu (generic and neon).
KERNEL_PKGS := $(shell $(GO) list ./internal/kernels/... 2>/dev/null | grep -v '/internal/kernels$$' | sed 's|^github.com/lorakit/lorakit|.|')
TIER_PKGS   := $(KERNEL_PKGS) ./pkg/dtype ./pkg/nf4 ./pkg/gguf ./pkg/compute/cpu ./pkg/quantize ./pkg/merge ./pkg/export ./pkg/llama
ARM64_PKGS  := $(KERNEL_PKGS) ./pkg/dtype ./pkg/nf4 ./pkg/compute/cpu
QEMU        ?= qemu-aarch64-static

.PHONY: all build test test-tiers test-arm64 test-purego vet demo bench bench-tools fuzz clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -o bin/ $(addprefix ./cmd/,$(BINS))

# go vet includes asmdecl: every assembly file against its Go declaration,
# for both architectures and for the build without assembly.
vet:
	$(GO) vet ./...
	GOARCH=arm64 $(GO) vet ./...
	$(GO) vet -tags purego ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

test: vet build
	$(GO) test -count=1 ./...
	cd internal/kernels/_gen && $(GO) test -count=1 .
	$(MAKE) test-tiers test-purego test-arm64

# Each CPU tier this machine has, forced through LORAKIT_CPU: the kernels
# against their plain-Go references, and the packages that use them (the
# llama.cpp interop tests, which check the files and not the kernels, run
# once, in the plain run above).
test-tiers:
	@for t in $$($(GO) run ./internal/kernels/tier/supported); do \
		echo "LORAKIT_CPU=$$t"; \
		LORAKIT_CPU=$$t LORAKIT_NO_LLAMACPP=1 $(GO) test -count=1 $(TIER_PKGS) || exit 1; \
	done

# The build without any assembly.
test-purego:
	$(GO) test -count=1 -tags purego $(KERNEL_PKGS) ./pkg/dtype ./pkg/nf4

# The arm64 kernels (NEON and generic) in cross-compiled test binaries run
# by qemu-user; skipped with a message when qemu is not installed.
test-arm64:
	@if ! command -v $(QEMU) >/dev/null 2>&1; then \
		echo "arm64 kernels not tested: $(QEMU) not found (Debian: apt-get install qemu-user-static)"; \
	else \
		for t in generic neon; do \
			echo "GOARCH=arm64 LORAKIT_CPU=$$t (qemu)"; \
			GOARCH=arm64 LORAKIT_CPU=$$t $(GO) test -count=1 -exec $(QEMU) $(ARM64_PKGS) || exit 1; \
		done; \
	fi

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./internal/kernels/... ./pkg/...

SIZE      ?= small
BENCH_DIR ?= /tmp/lorakit-bench

bench-tools:
	env -u CGO_ENABLED GO="$(GO)" scripts/bench-tools.sh $(BENCH_DIR) $(SIZE) $(RUNS)

demo: build
	./scripts/demo.sh

clean:
	rm -rf bin out demo
