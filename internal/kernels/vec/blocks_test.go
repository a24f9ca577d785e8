package vec

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

// The per-block reductions against their definition, element by element,
// and against one MaxAbs16/MaxAbs32 call per block (how the format code
// used them before), in the uint and the byte forms at two alignments.

func refBlocks[T uint16 | uint32](x []T, block int, mask T) []T {
	out := make([]T, (len(x)+block-1)/block)
	for i, v := range x {
		out[i/block] = max(out[i/block], v&mask)
	}
	return out
}

// specials16 are bfloat16 and binary16 NaNs, infinities, signed zeros,
// subnormals and the extremes; specials32 the same for float32.
var (
	specials16 = []uint16{0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f81, 0x7c00, 0xfc00, 0x7e00, 0xfe01,
		0x8000, 0x0000, 0x0001, 0x8001, 0x007f, 0x807f, 0x7f7f, 0xff7f, 0x7bff, 0xfbff, 0x7fff, 0xffff}
	specials32 = []uint32{0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x80000000, 0,
		1, 0x80000001, 0x007fffff, 0x807fffff, 0x7f7fffff, 0xff7fffff, 0x7fffffff, 0xffffffff}
)

func checkBlocks(t *testing.T, h []uint16, u []uint32, block int) {
	t.Helper()
	w16, w32 := refBlocks(h, block, 0x7fff), refBlocks(u, block, 0x7fffffff)
	for i := range w16 {
		if m := MaxAbs16(h[i*block : min((i+1)*block, len(h))]); m != w16[i] {
			t.Fatalf("%s MaxAbs16 of block %d = %#x, want %#x", Impl(), i, m, w16[i])
		}
	}
	g16, g32 := make([]uint16, len(w16)), make([]uint32, len(w32))
	MaxAbs16Blocks(g16, h, block)
	MaxAbs32Blocks(g32, u, block)
	b := make([]byte, 2+max(2*len(h), 4*len(u)))
	for _, off := range []int{0, 1} {
		for i, v := range h {
			b[off+2*i], b[off+2*i+1] = byte(v), byte(v>>8)
		}
		l16 := make([]uint16, len(w16))
		MaxAbs16BlocksLE(l16, b[off:off+2*len(h)+1], block) // the odd trailing byte is ignored
		for i, v := range u {
			b[off+4*i], b[off+4*i+1], b[off+4*i+2], b[off+4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		l32 := make([]uint32, len(w32))
		MaxAbs32BlocksLE(l32, b[off:off+4*len(u)], block)
		for i := range w16 {
			if g16[i] != w16[i] || l16[i] != w16[i] {
				t.Fatalf("%s n=%d block=%d off=%d: block %d: MaxAbs16Blocks %#x, LE %#x, want %#x",
					Impl(), len(h), block, off, i, g16[i], l16[i], w16[i])
			}
		}
		for i := range w32 {
			if g32[i] != w32[i] || l32[i] != w32[i] {
				t.Fatalf("%s n=%d block=%d off=%d: block %d: MaxAbs32Blocks %#x, LE %#x, want %#x",
					Impl(), len(u), block, off, i, g32[i], l32[i], w32[i])
			}
		}
	}
}

func TestBlocks(t *testing.T) {
	ktest.LogTier(t, Impl())
	r := rand.New(rand.NewPCG(11, 12))
	for _, block := range []int{32, 64, 128, 256, 1024, 4096, 1, 3, 48, 96} {
		for _, n := range []int{0, 1, block - 1, block, block + 1, 2*block + block/2, 5*block + 31, 9 * block} {
			if n < 0 {
				continue
			}
			for trial := range 4 {
				h, u := make([]uint16, n), make([]uint32, n)
				for i := range h {
					// Magnitudes spread over the whole range, so that blocks differ.
					h[i] = uint16(r.Uint32() >> uint(16+r.IntN(17)))
					u[i] = r.Uint32() >> uint(r.IntN(33))
					if trial > 0 && r.IntN(40) == 0 {
						h[i] = specials16[r.IntN(len(specials16))]
						u[i] = specials32[r.IntN(len(specials32))]
					}
				}
				checkBlocks(t, h, u, block)
			}
		}
	}
}

// TestBlocksPositions puts the block's largest magnitude, negative, at each
// position of three blocks, so that every lane of every fold counts.
func TestBlocksPositions(t *testing.T) {
	for _, block := range []int{32, 64, 128} {
		n := 3*block - 5 // and a partial last block
		for pos := range n {
			h, u := make([]uint16, n), make([]uint32, n)
			for i := range h {
				h[i], u[i] = uint16(0x100+i), uint32(0x10000+i)
			}
			h[pos], u[pos] = 0xc123, 0xc1234567
			checkBlocks(t, h, u, block)
		}
	}
}

// TestBlocksSpecials runs blocks made only of special values: each value
// alone, and each over a background of the others.
func TestBlocksSpecials(t *testing.T) {
	for _, block := range []int{32, 64} {
		for k := range specials16 {
			h, u := make([]uint16, 2*block+1), make([]uint32, 2*block+1)
			for i := range h {
				h[i], u[i] = specials16[k], specials32[k%len(specials32)]
				if i >= block { // the second block mixes them
					h[i], u[i] = specials16[(k+i)%len(specials16)], specials32[(k+i)%len(specials32)]
				}
			}
			checkBlocks(t, h, u, block)
		}
	}
}

func TestBlocksPanics(t *testing.T) {
	for _, c := range []struct{ dst, n, block int }{{1, 32, 0}, {0, 32, 32}, {2, 32, 32}, {1, 33, 32}, {1, 0, 32}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("MaxAbs16Blocks(%d maxima, %d values, block %d) did not panic", c.dst, c.n, c.block)
				}
			}()
			MaxAbs16Blocks(make([]uint16, c.dst), make([]uint16, c.n), c.block)
		}()
	}
}

// FuzzBlocks feeds arbitrary words and block sizes.
func FuzzBlocks(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x7f, 0, 0, 0xc0, 0xff, 1, 2, 3, 4}, uint16(32))
	f.Add(make([]byte, 4*200), uint16(64))
	f.Add([]byte("00"), uint16(128))
	f.Fuzz(func(t *testing.T, b []byte, block uint16) {
		bs := int(block%5000) + 1
		if block&0x8000 != 0 {
			bs = 32 << (block % 8) // the NF4 sizes, 32…4096
		}
		h, u := make([]uint16, len(b)/2), make([]uint32, len(b)/4)
		for i := range h {
			h[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
		}
		for i := range u {
			u[i] = uint32(h[2*i]) | uint32(h[2*i+1])<<16
		}
		checkBlocks(t, h, u, bs)
	})
}

// BenchmarkBlocks runs the per-block reductions over 64 Ki values
// (L2-resident) at the smallest, the default and the largest NF4 block size.
func BenchmarkBlocks(b *testing.B) {
	h, u := make([]uint16, 1<<16), make([]uint32, 1<<16)
	for _, block := range []int{32, 64, 4096} {
		d16, d32 := make([]uint16, len(h)/block), make([]uint32, len(u)/block)
		b.Run("maxabs16/"+Impl()+"/"+strconv.Itoa(block), func(b *testing.B) {
			b.SetBytes(2 << 16)
			for b.Loop() {
				MaxAbs16Blocks(d16, h, block)
			}
			ktest.ReportBest(b, 2<<16, func() { MaxAbs16Blocks(d16, h, block) })
		})
		b.Run("maxabs32/"+Impl()+"/"+strconv.Itoa(block), func(b *testing.B) {
			b.SetBytes(4 << 16)
			for b.Loop() {
				MaxAbs32Blocks(d32, u, block)
			}
			ktest.ReportBest(b, 4<<16, func() { MaxAbs32Blocks(d32, u, block) })
		})
	}
}
