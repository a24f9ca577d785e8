# lorakit — build, test and demo.
#
#   make demo    build ./bin/lora-* and run the main job on a built-in default
#   make test    run every test (vet, unit, golden, fuzz seeds, end to end)
#   make bench   run the Go benchmarks of the hot paths

GO        ?= go
# Go 1.26's simd/archsimd is behind an experiment; every SIMD path has a
# plain-Go twin that `make test` also runs (GOEXPERIMENT unset).
export GOEXPERIMENT := simd
export CGO_ENABLED := 0

BINS := lora-inspect lora-quantize lora-train lora-merge lora-gguf

.PHONY: all build test test-plain vet demo bench fuzz clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -o bin/ $(addprefix ./cmd/,$(BINS))

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

test: vet build
	$(GO) test -count=1 ./...
	$(MAKE) test-plain

# The plain-Go twins of the SIMD kernels, built without the experiment.
SIMD_PKGS = $(shell grep -rl 'goexperiment.simd' --include='*.go' pkg 2>/dev/null | xargs -r -n1 dirname | sort -u | sed 's|^|./|')

test-plain:
	GOEXPERIMENT= $(GO) test -count=1 $(or $(SIMD_PKGS),./pkg/cli)

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./pkg/...

demo: build
	./scripts/demo.sh

clean:
	rm -rf bin out demo
