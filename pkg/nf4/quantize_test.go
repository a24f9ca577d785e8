package nf4

import (
	"errors"
	"math"
	"runtime"
	"slices"
	"strconv"
	"testing"
)

func TestCodeTables(t *testing.T) {
	// Spec 1.1: the decimals parse as float32 to the table.
	dec := []string{"-1.0", "-0.6961928009986877", "-0.5250730514526367", "-0.39491748809814453",
		"-0.28444138169288635", "-0.18477343022823334", "-0.09105003625154495", "0.0",
		"0.07958029955625534", "0.16093020141124725", "0.24611230194568634", "0.33791524171829224",
		"0.44070982933044434", "0.5626170039176941", "0.7229568362236023", "1.0"}
	for i, d := range dec {
		v, _ := strconv.ParseFloat(d, 32)
		if float32(v) != nf4Code[i] {
			t.Errorf("nf4[%d] = %v, spec %s", i, nf4Code[i], d)
		}
	}
	// Spec 1.2: [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, ...] / 12 in float32,
	// where the Python list's -0 is the integer 0: bitsandbytes' quant_map
	// holds +0.0 at index 8.
	raw := []float32{0, 0.0625, 8, 12, 4, 6, 2, 3}
	for i, r := range raw[1:] {
		if fp4Code[i+1] != r/12 || math.Float32bits(fp4Code[i+9]) != math.Float32bits(-r/12) {
			t.Errorf("fp4[%d] = %v / %v, want ±%v", i+1, fp4Code[i+1], fp4Code[i+9], r/12)
		}
	}
	if math.Float32bits(fp4Code[0]) != 0 || math.Float32bits(fp4Code[8]) != 0 {
		t.Error("fp4[0] and fp4[8] are not +0.0")
	}
	// The FP4 search as torch computes it (printed by torch 1.13:
	// torch.argsort of the table and the midpoints of the sorted values).
	if fp4Order != [16]uint8{11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3} {
		t.Errorf("FP4 order %v", fp4Order)
	}
	fp4Thr := []uint32{0xbf555556, 0xbf155556, 0xbed55556, 0xbe955556, 0xbe555556, 0xbdb00000, 0xbb2aaaab,
		0x00000000, 0x3b2aaaab, 0x3db00000, 0x3e555556, 0x3e955556, 0x3ed55556, 0x3f155556, 0x3f555556}
	if !slices.Equal(f32bits(fp4Thresholds[:]), fp4Thr) {
		t.Errorf("FP4 thresholds %x, torch %x", f32bits(fp4Thresholds[:]), fp4Thr)
	}
	// Spec 2.4 threshold table.
	thr := []uint32{0xbf591cd8, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871,
		0x3d22faff, 0x3df64862, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d04, 0x3f248daf, 0x3f5c89da}
	if !slices.Equal(f32bits(nf4Thresholds[:]), thr) {
		t.Errorf("NF4 thresholds %x, spec %x", f32bits(nf4Thresholds[:]), thr)
	}
	if NF4.Code() != nf4Code || FP4.Code() != fp4Code {
		t.Error("Type.Code")
	}
}

// linspaceF32 is torch.linspace on CPU in float32 (spec 3.2): step rounded
// once, each value one rounding of the exact start + step·k (or end − step·(n−1−k)).
func linspaceF32(start, end float32, n int) []float32 {
	step := float32(float32(end-start) / float32(n-1))
	out := make([]float32, n)
	for k := range out {
		// The exact values need at most ~31 significant bits, so float64
		// holds them exactly and the float32 conversion is the single rounding.
		if k < n/2 {
			out[k] = float32(float64(start) + float64(step)*float64(k))
		} else {
			out[k] = float32(float64(end) - float64(step)*float64(n-1-k))
		}
	}
	return out
}

func TestDynamicMapRegenerates(t *testing.T) {
	var vals []float32
	for i := range 7 {
		n := 1<<i + 1
		b := linspaceF32(0.1, 1.0, n)
		scale := float32(math.Pow(10, float64(i-6)))
		for j := 0; j < n-1; j++ {
			m := float32(b[j]+b[j+1]) / 2
			vals = append(vals, scale*m, -scale*m)
		}
	}
	vals = append(vals, 0, 1)
	slices.Sort(vals)
	if len(vals) != 256 {
		t.Fatalf("%d values", len(vals))
	}
	dm := DynamicMap()
	for i := range vals {
		if math.Float32bits(vals[i]) != math.Float32bits(dm[i]) {
			t.Errorf("dyn[%d] = %08x, regenerated %08x", i, math.Float32bits(dm[i]), math.Float32bits(vals[i]))
		}
	}
	anchors := map[int]float32{0: -0.992968738, 63: -0.107031256, 64: -0.0985937491, 126: -5.50000038e-07,
		127: 0, 128: 5.50000038e-07, 191: 0.107031256, 254: 0.992968738, 255: 1}
	for i, v := range anchors {
		if dm[i] != v {
			t.Errorf("dyn[%d] = %v, anchor %v", i, dm[i], v)
		}
	}
	for i := 1; i < 256; i++ {
		if !(dm[i] > dm[i-1]) {
			t.Errorf("dyn not strictly increasing at %d", i)
		}
	}
}

// nibbleProbes returns float32 values around every threshold and bucket
// boundary, specials, and pseudo-random bit patterns (no NaN).
func nibbleProbes() []float32 {
	var out []float32
	around := func(f float32) {
		b := math.Float32bits(f)
		for d := -4; d <= 4; d++ {
			if v := math.Float32frombits(uint32(int64(b) + int64(d))); v == v {
				out = append(out, v)
			}
		}
	}
	for _, t := range nf4Thresholds {
		around(t)
	}
	for _, t := range fp4Thresholds {
		around(t)
		around(-t)
	}
	for b := uint32(0); b < 1<<11; b++ { // the buckets of nibble's search table
		around(math.Float32frombits(b << 21))
	}
	out = append(out, 0, float32(math.Copysign(0, -1)), 1, -1, 1.0000001, -1.0000001, 3e38, -3e38,
		float32(math.Inf(1)), float32(math.Inf(-1)), 1e-45, -1e-45)
	s := uint32(12345)
	for range 1 << 20 {
		s ^= s << 13
		s ^= s >> 17
		s ^= s << 5
		f := math.Float32frombits(s)
		if f == f {
			out = append(out, f)
		}
		out = append(out, float32(s)/float32(1<<31)-1) // uniform in [-1, 1]
	}
	return out
}

func TestNibbleSearch(t *testing.T) {
	for _, s := range nibbleProbes() {
		if got, want := nf4Book.Nibble(s), specCode(s, NF4); got != want {
			t.Fatalf("NF4 code of %v [%08x] = %d, spec %d", s, math.Float32bits(s), got, want)
		}
		if got, want := fp4Book.Nibble(s), specCode(s, FP4); got != want {
			t.Fatalf("FP4 code of %v [%08x] = %d, spec %d", s, math.Float32bits(s), got, want)
		}
	}
	nan := float32(math.NaN())
	if specCode(nan, NF4) != 15 || specCode(nan, FP4) != 3 || bucketize(nan, nf4Thresholds[:]) != 15 {
		t.Error("NaN codes")
	}
}

// specQuantize is a direct transcription of spec 8.1 (checklist), written
// independently of the package's kernels: count thresholds below s in a loop.
func specQuantize(src []float32, bs int, typ Type) ([]byte, []float32) {
	n := len(src)
	nb := (n + bs - 1) / bs
	q := make([]uint8, n+1)
	absmax := make([]float32, nb)
	for b := range nb {
		lo, hi := b*bs, min((b+1)*bs, n)
		var am float32
		nan := false
		for _, v := range src[lo:hi] {
			a := float32(math.Abs(float64(v)))
			if a != a {
				nan = true
			}
			am = max(am, a)
		}
		if nan {
			am = float32(math.NaN())
		}
		div := am
		if !(div >= float32(1e-38)) && !nan {
			div = float32(1e-38)
		}
		partial := hi-lo < bs
		absmax[b] = am
		if partial {
			absmax[b] = div
		}
		inv := float32(1) / div
		for i := lo; i < hi; i++ {
			var s float32
			if partial {
				s = src[i] / div
			} else {
				s = src[i] * inv
			}
			s = min(max(s, -1), 1) // Go's min/max propagate NaN, like torch.clamp
			q[i] = specCode(s, typ)
		}
	}
	q[n] = specCode(0, typ)
	packed := make([]byte, (n+1)/2)
	for k := range packed {
		packed[k] = q[2*k]<<4 | q[2*k+1]
	}
	return packed, absmax
}

func specCode(s float32, typ Type) uint8 {
	code := nf4Code
	order := [16]uint8{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	if typ == FP4 {
		// bitsandbytes' default backend: argsort of quant_map (the values
		// [0, 1/192, 8/12, 1, 4/12, 6/12, 2/12, 3/12, +0, -1/192, ...],
		// stable: index 0 before 8), midpoints of the sorted values.
		code = fp4Code
		order = [16]uint8{11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3}
	}
	if s != s {
		return order[15] // torch.bucketize puts NaN after every boundary
	}
	var c int
	for i := range 15 {
		if float32(float32(code[order[i]]+code[order[i+1]])/2) < s {
			c++
		}
	}
	return order[c]
}

func TestQuantizeMatchesSpec(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	for _, bs := range []int{32, 64, 128, 256, 512, 1024, 2048, 4096} {
		for _, typ := range []Type{NF4, FP4} {
			for _, n := range []int{1, 2, 3, bs - 1, bs, bs + 1, 3*bs + 5, 7*bs + 2} {
				x := randFloats(uint64(n*bs), n, 0.05)
				// A zero block, a tiny block and specials in some blocks.
				if n > 2*bs {
					clear(x[bs : 2*bs])
					x[2*bs] = 1e-41
					for i := 2*bs + 1; i < 3*bs; i++ {
						x[i] = 1e-42
					}
					x[3*bs+1] = inf
				}
				if n > 4*bs {
					x[4*bs+3] = nan
					x[5*bs] = float32(math.Inf(-1))
				}
				packed := make([]byte, PackedLen(n))
				absmax := make([]float32, NumBlocks(n, bs))
				if err := Quantize(packed, absmax, x, bs, typ); err != nil {
					t.Fatal(err)
				}
				wp, wa := specQuantize(x, bs, typ)
				if !slices.Equal(packed, wp) {
					t.Errorf("bs %d %v n %d: packed differs from the spec transcription", bs, typ, n)
				}
				for i := range wa {
					if math.Float32bits(absmax[i]) != math.Float32bits(wa[i]) && !(absmax[i] != absmax[i] && wa[i] != wa[i]) {
						t.Errorf("bs %d %v n %d: absmax[%d] %v, want %v", bs, typ, n, i, absmax[i], wa[i])
					}
				}
			}
		}
	}
}

func TestQuantizeHandCases(t *testing.T) {
	nan := float32(math.NaN())
	rep := func(v float32, n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	bytesRep := func(b byte, n int) []byte {
		out := make([]byte, n)
		for i := range out {
			out[i] = b
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		x      []float32
		bs     int
		typ    Type
		packed []byte
		absmax []uint32 // bits
	}{
		// 2.5: all-zero full block → 0x77, absmax 0.0; all-zero partial block → absmax f32(1e-38).
		{"zero full block", make([]float32, 64), 64, NF4, bytesRep(0x77, 32), []uint32{0}},
		{"zero partial block", make([]float32, 74), 64, NF4, bytesRep(0x77, 37), []uint32{0, 0x006ce3ee}},
		{"zero fp4", make([]float32, 64), 64, FP4, bytesRep(0x00, 32), []uint32{0}},
		// Odd n: s = 1, -1, 0.5 → NF4 15, 0, 12 (t11 < 0.5 < t12), pad nibble 7.
		{"odd nf4", []float32{1, -1, 0.5}, 64, NF4, []byte{0xF0, 0xC7}, []uint32{0x3f800000}},
		// FP4: 1 → 0b0011, -1 → 0b1011, 0.5 → 0b0101, pad 0.
		{"odd fp4", []float32{1, -1, 0.5}, 64, FP4, []byte{0x3B, 0x50}, []uint32{0x3f800000}},
		// FP4 -0.0 sorts with +0.0 (code 0); 0.25/2 = 0.125 → 0b110.
		{"fp4 negzero", []float32{2, float32(math.Copysign(0, -1)), 0.25, -0.25}, 64, FP4, []byte{0x30, 0x6E}, []uint32{0x40000000}},
		// Values that round to zero, as bitsandbytes' pure-PyTorch path codes
		// them: the bucket just above the +0.0 midpoint is quant_map index 8
		// (+0.0), the one at or below it index 0: a small positive value
		// gets 8, a small negative value, +0.0 and -0.0 get 0 (the CUDA
		// kernel's sign-bit rule gives the opposite; checkpoints made on the
		// CPU, like the project's fixtures, follow this one).
		{"fp4 near zero", []float32{1, 0.001, -0.001, 0, float32(math.Copysign(0, -1)), 0.0026, -0.0026, 0.0027}, 64, FP4,
			[]byte{0x38, 0x00, 0x08, 0x01}, []uint32{0x3f800000}},
		// NaN: absmax NaN, s = NaN, bucketized after every boundary: rank 15,
		// FP4 code 3 (1.0).
		{"fp4 nan block", append([]float32{nan}, rep(0.5, 63)...), 64, FP4, bytesRep(0x33, 32), []uint32{0x7fc00000}},
		// A NaN makes the whole block NaN: absmax NaN, every NF4 code 15.
		{"nan block", append([]float32{nan}, rep(0.5, 63)...), 64, NF4, bytesRep(0xFF, 32), []uint32{0x7fc00000}},
		// Inf: 1/inf = 0, s = 0 (code 7) except inf·0 = NaN (code 15).
		{"inf block", append([]float32{float32(math.Inf(1))}, rep(0.5, 63)...), 64, NF4, append([]byte{0xF7}, bytesRep(0x77, 31)...), []uint32{0x7f800000}},
		// Subnormal absmax: divisor clamps to 1e-38; s = 1e-40·f32(1e38) ≈ 0.01 → code 7.
		{"tiny full", rep(1e-40, 32), 32, NF4, bytesRep(0x77, 16), []uint32{math.Float32bits(1e-40)}},
		{"tiny partial", rep(1e-40, 31), 32, NF4, bytesRep(0x77, 16), []uint32{0x006ce3ee}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			packed := make([]byte, PackedLen(len(tc.x)))
			absmax := make([]float32, NumBlocks(len(tc.x), tc.bs))
			if err := Quantize(packed, absmax, tc.x, tc.bs, tc.typ); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(packed, tc.packed) {
				t.Errorf("packed % x, want % x", packed, tc.packed)
			}
			got := f32bits(absmax)
			for i := range got {
				if tc.absmax[i] == 0x7fc00000 && absmax[i] != absmax[i] {
					continue
				}
				if got[i] != tc.absmax[i] {
					t.Errorf("absmax[%d] %08x, want %08x", i, got[i], tc.absmax[i])
				}
			}
		})
	}
}

func TestQuantizeTieRule(t *testing.T) {
	// absmax 1 gives inv = 1 and s = x: an exact threshold goes to the lower
	// code, the next float up to the upper one.
	for i, th := range nf4Thresholds {
		x := make([]float32, 64)
		x[0] = 1
		x[2] = th
		x[3] = math.Nextafter32(th, 2)
		packed := make([]byte, 32)
		absmax := make([]float32, 1)
		if err := Quantize(packed, absmax, x, 64, NF4); err != nil {
			t.Fatal(err)
		}
		if packed[1] != byte(i)<<4|byte(i+1) {
			t.Errorf("threshold %d: byte %02x, want %x%x", i, packed[1], i, i+1)
		}
	}
}

func TestFullVsPartialScaling(t *testing.T) {
	// Find (a, x) where x·f32(1/a) and x/a straddle an NF4 threshold; a full
	// block must use the former, the partial last block the latter (2.3).
	found := 0
	for ai := 0; ai < 4000 && found < 3; ai++ {
		a := 0.3 + float32(ai)*0.000917
		inv := 1 / a
		for ti, th := range nf4Thresholds {
			x := th * a
			for d := int32(-3); d <= 3; d++ {
				xv := math.Float32frombits(uint32(int32(math.Float32bits(x)) + d))
				m, q := nf4Book.Nibble(xv*inv), nf4Book.Nibble(xv/a)
				if m == q || !(float32(math.Abs(float64(xv))) < a) {
					continue
				}
				found++
				full := make([]float32, 32)
				full[0], full[1] = a, xv
				part := []float32{a, xv, 0}
				for _, c := range []struct {
					x    []float32
					want uint8
				}{{full, m}, {part, q}} {
					p := make([]byte, PackedLen(len(c.x)))
					if err := Quantize(p, make([]float32, 1), c.x, 32, NF4); err != nil {
						t.Fatal(err)
					}
					if p[0]&15 != c.want {
						t.Errorf("a=%v x=%v (threshold %d) len %d: code %d, want %d", a, xv, ti, len(c.x), p[0]&15, c.want)
					}
				}
			}
		}
	}
	if found == 0 {
		t.Fatal("no straddling case found")
	}
}

func TestQuantizeErrors(t *testing.T) {
	x := make([]float32, 100)
	for _, bs := range []int{0, 16, 48, 8192, -64} {
		if err := Quantize(make([]byte, 50), make([]float32, 2), x, bs, NF4); !errors.Is(err, ErrBlocksize) {
			t.Errorf("blocksize %d: %v", bs, err)
		}
	}
	if err := Quantize(make([]byte, 49), make([]float32, 2), x, 64, NF4); !errors.Is(err, ErrLength) {
		t.Errorf("short dst: %v", err)
	}
	if err := Quantize(make([]byte, 50), make([]float32, 1), x, 64, NF4); !errors.Is(err, ErrLength) {
		t.Errorf("short absmax: %v", err)
	}
	if err := Quantize(make([]byte, 50), make([]float32, 2), x, 64, Type(7)); !errors.Is(err, ErrType) {
		t.Errorf("bad type: %v", err)
	}
}

func TestQuantizeDeterministicAcrossThreads(t *testing.T) {
	x := randFloats(7, 1<<20+77, 0.02)
	run := func(procs int) ([]byte, []float32) {
		old := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(old)
		p := make([]byte, PackedLen(len(x)))
		a := make([]float32, NumBlocks(len(x), 64))
		if err := Quantize(p, a, x, 64, NF4); err != nil {
			t.Fatal(err)
		}
		return p, a
	}
	p1, a1 := run(1)
	p4, a4 := run(4)
	if !slices.Equal(p1, p4) || !slices.Equal(a1, a4) {
		t.Error("result depends on GOMAXPROCS")
	}
	if wp, wa := specQuantize(x, 64, NF4); !slices.Equal(p1, wp) || !slices.Equal(a1, wa) {
		t.Error("differs from the spec transcription")
	}
}

func TestDequantize(t *testing.T) {
	code := nf4Code
	// Two blocks of 32, the second partial with 3 elements (odd: the last
	// byte's low nibble is ignored).
	packed := make([]byte, PackedLen(35))
	packed[0] = 0xF0  // 1·2, -1·2
	packed[16] = 0x7C // block 1: 0·0.5, code[12]·0.5
	packed[17] = 0x3F // code[3]·0.5, (padding)
	dst := make([]float32, 35)
	if err := Dequantize(dst, packed, []float32{2, 0.5}, 32, &code); err != nil {
		t.Fatal(err)
	}
	want := map[int]float32{0: 2, 1: -2, 2: code[0] * 2, 32: 0, 33: code[12] * 0.5, 34: code[3] * 0.5}
	for i, w := range want {
		if dst[i] != w {
			t.Errorf("dst[%d] = %v, want %v", i, dst[i], w)
		}
	}
	if err := Dequantize(dst, packed[:17], []float32{2, 0.5}, 32, &code); !errors.Is(err, ErrLength) {
		t.Errorf("short packed: %v", err)
	}
	// Round trip error is bounded by half the widest NF4 gap times absmax.
	x := randFloats(3, 10007, 1)
	for _, typ := range []Type{NF4, FP4} {
		q, err := QuantizeTensor(x, []int64{10007}, Options{Type: typ, DoubleQuant: true})
		if err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := q.State.Dequantize(y, q.Packed); err != nil {
			t.Fatal(err)
		}
		am := q.State.BlockAbsmax()
		for i := range x {
			if d := math.Abs(float64(x[i] - y[i])); d > 0.17*float64(am[i/64])+1e-6 {
				t.Fatalf("%v: element %d: %v → %v (absmax %v)", typ, i, x[i], y[i], am[i/64])
			}
		}
	}
}

func TestMeanOffset(t *testing.T) {
	if MeanOffset(nil) != 0 {
		t.Error("empty")
	}
	if got := MeanOffset([]float32{1, 2, 3}); got != 2 {
		t.Errorf("mean(1,2,3) = %v", got)
	}
	// Hand-evaluated order for 9 values: one 8-lane vector (sizeILP = 0, so
	// it lands in accumulator 0), then the scalar result starts with the tail
	// x[8] = 2^24 and adds the lanes in order; each 2^24 + 1 is a tie that
	// rounds to even, back to 2^24. A front-to-back sum would give 2^24 + 8.
	x := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1 << 24}
	if got := torchSum(x); got != 1<<24 {
		t.Errorf("torchSum = %v, want 2^24", got)
	}
	// Close to the float64 mean at every size, including the cascade levels.
	for _, n := range []int{1, 7, 8, 9, 31, 32, 33, 100, 511, 512, 1000, 4096, 65536, 100003} {
		a := randFloats(uint64(n), n, 1)
		for i := range a {
			a[i] = float32(math.Abs(float64(a[i]))) + 0.01
		}
		var s float64
		for _, v := range a {
			s += float64(v)
		}
		want := s / float64(n)
		if got := MeanOffset(a); math.Abs(float64(got)-want) > 4e-6*want {
			t.Errorf("n=%d: MeanOffset %v, float64 mean %v", n, got, want)
		}
	}
}

func TestDoubleQuantize(t *testing.T) {
	// Equal absmax values: a' = 0 → code 127 everywhere; nested absmax 0 for
	// the full block of 256, f32(1e-38) for the partial one; decoding gives
	// back exactly the offset.
	am := make([]float32, 300)
	for i := range am {
		am[i] = 0.05
	}
	off := float32(0.05)
	nd := DoubleQuantize(am, off)
	for i, c := range nd.Codes {
		if c != 127 {
			t.Fatalf("code[%d] = %d", i, c)
		}
	}
	if len(nd.Absmax) != 2 || nd.Absmax[0] != 0 || math.Float32bits(nd.Absmax[1]) != 0x006ce3ee {
		t.Errorf("nested absmax %v", nd.Absmax)
	}
	qs := QuantState{Nested: nd}
	for i, a := range qs.BlockAbsmax() {
		if a != off {
			t.Fatalf("BlockAbsmax[%d] = %v, want %v", i, a, off)
		}
	}
	// Spec 4 by hand: f32(f32(dyn[q]·nabs) + offset), no FMA.
	nd2 := &Nested{Codes: []uint8{0, 255, 200}, Offset: 0.03125, Absmax: []float32{0.1}, Map: dynamicMap, Blocksize: 256}
	qs2 := QuantState{Nested: nd2}
	got := qs2.BlockAbsmax()
	for i, c := range nd2.Codes {
		if want := float32(dynamicMap[c]*0.1) + 0.03125; got[i] != want {
			t.Errorf("BlockAbsmax[%d] = %v, want %v", i, got[i], want)
		}
	}
	// 8-bit ties go to the lower code: s exactly at a midpoint.
	src := []float32{1, dynamicMidpoints[200], math.Nextafter32(dynamicMidpoints[200], 2)}
	codes := make([]byte, 3)
	abs := make([]float32, 1)
	if err := QuantizeBlockwise(codes, abs, src, 256, &dynamicMap); err != nil {
		t.Fatal(err)
	}
	if codes[0] != 255 || codes[1] != 200 || codes[2] != 201 {
		t.Errorf("codes %v, want [255 200 201]", codes)
	}
	back := make([]float32, 3)
	if err := DequantizeBlockwise(back, codes, abs, 256, &dynamicMap); err != nil {
		t.Fatal(err)
	}
	if back[0] != 1 || back[1] != dynamicMap[200] {
		t.Errorf("dequantized %v", back)
	}
	// A NaN absmax maps to code 255 (bucketize puts NaN last).
	if err := QuantizeBlockwise(codes[:1], abs, []float32{float32(math.NaN())}, 256, &dynamicMap); err != nil || codes[0] != 255 {
		t.Errorf("NaN: code %d, %v", codes[0], err)
	}
}

func TestMinDivisor(t *testing.T) {
	if math.Float32bits(minDivisor) != minDivisorBits || minDivisor != float32(1e-38) {
		t.Errorf("minDivisor %08x", math.Float32bits(minDivisor))
	}
}
