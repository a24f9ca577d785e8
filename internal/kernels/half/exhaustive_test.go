package half

import (
	"math"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
	"github.com/x448/float16"
)

// TestExhaustiveF32 runs all 2³² float32 patterns through the active tier's
// encoders and compares with x448 (f16) and the float64 reference (bf16). It
// takes about a minute on two cores, so it runs only with
// LORAKIT_EXHAUSTIVE=1 (once per tier: LORAKIT_CPU selects it).
func TestExhaustiveF32(t *testing.T) {
	if os.Getenv("LORAKIT_EXHAUSTIVE") == "" {
		t.Skip("set LORAKIT_EXHAUSTIVE=1 to run")
	}
	ktest.LogTier(t, Impl())
	exhaustive(t, EncodeBF16, EncodeF16)
}

func exhaustive(t *testing.T, encodeBF16, encodeF16 func([]uint16, []float32)) {
	const chunk = 1 << 16
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		t.Errorf(format, args...)
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := make([]float32, chunk)
			f16, bf16 := make([]uint16, chunk), make([]uint16, chunk)
			for c := uint64(w); c < 1<<32/chunk; c += uint64(workers) {
				for i := range src {
					src[i] = math.Float32frombits(uint32(c*chunk) + uint32(i))
				}
				encodeF16(f16, src)
				encodeBF16(bf16, src)
				for i, f := range src {
					u := math.Float32bits(f)
					if got, want := f16[i], float16.Fromfloat32(f).Bits(); got != want {
						fail("encodeF16(%#08x) = %#04x, x448 %#04x", u, got, want)
						return
					}
					if got, want := bf16[i], refBF16(u); got != want {
						fail("encodeBF16(%#08x) = %#04x, want %#04x", u, got, want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
