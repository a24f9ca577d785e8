package arch

import (
	"fmt"
	"math"
	"strings"
)

// RopeType is a rotary-embedding frequency scheme (transformers' rope_type).
type RopeType uint8

const (
	// RopeDefault: inv_freq[i] = 1 / θ^(2i/d).
	RopeDefault RopeType = iota
	// RopeLinear: the default frequencies divided by Factor (position
	// interpolation).
	RopeLinear
	// RopeLlama3: Llama 3.1's per-frequency smooth interpolation between the
	// default and default/Factor, by wavelength against
	// OriginalMaxPositions/LowFreqFactor and /HighFreqFactor.
	RopeLlama3
	// RopeLongRoPE: Phi-3's LongRoPE: inv_freq[i] = 1 / (f[i]·θ^(2i/d)) with f
	// the ShortFactor, or the LongFactor when the sequence is longer than
	// OriginalMaxPositions; cos and sin are multiplied by AttentionFactor.
	RopeLongRoPE
)

func (t RopeType) String() string {
	switch t {
	case RopeLinear:
		return "linear"
	case RopeLlama3:
		return "llama3"
	case RopeLongRoPE:
		return "longrope"
	}
	return "default"
}

// Rope is the rotary embedding of a layer: its frequencies, the number of
// head dimensions it rotates, and the scaling of cos and sin.
//
// Rotation (transformers' rotate_half, "NEOX" pairing): within the first Dims
// values of each q and k head, element j < Dims/2 pairs with j + Dims/2;
// with c, s = CosSin(...) for the position, q' = q·c + rotate_half(q)·s where
// rotate_half(q) = (−q[Dims/2:], q[:Dims/2]). Values past Dims pass through
// (partial rotary). cos and sin are computed in float32 and cast to the
// activation dtype before multiplying.
type Rope struct {
	Type RopeType
	// Theta is the base θ (rope_theta).
	Theta float64
	// Dims is the number of rotated dimensions per head: head_dim, or
	// int(head_dim · partial_rotary_factor). Even.
	Dims int
	// Factor is the scaling factor of linear and llama3 (for longrope, the
	// context extension max_position_embeddings / OriginalMaxPositions).
	Factor float64
	// LowFreqFactor and HighFreqFactor parameterise llama3.
	LowFreqFactor, HighFreqFactor float64
	// OriginalMaxPositions is the pre-extension context of llama3 and
	// longrope.
	OriginalMaxPositions int
	// ShortFactor and LongFactor are longrope's per-frequency divisors,
	// Dims/2 each.
	ShortFactor, LongFactor []float64
	// AttentionFactor multiplies cos and sin (1 except for longrope).
	AttentionFactor float64
}

// UsesLong reports whether a LongRoPE embedding uses its LongFactor for a
// batch whose largest position id is seqLen−1 (transformers compares
// max(position_ids)+1 with original_max_position_embeddings, over the whole
// batch, packed rows included).
func (r *Rope) UsesLong(seqLen int) bool {
	return r.Type == RopeLongRoPE && seqLen > r.OriginalMaxPositions
}

// InvFreq returns the Dims/2 inverse frequencies for a batch whose largest
// position id is seqLen−1 (only LongRoPE depends on it), computed in float32
// with transformers' order of operations (_compute_*_rope_parameters). The
// power θ^e is correctly rounded here; PyTorch's vectorized pow may differ by
// one ulp.
func (r *Rope) InvFreq(seqLen int) []float32 {
	var ext []float64
	if r.Type == RopeLongRoPE {
		ext = r.ShortFactor
		if r.UsesLong(seqLen) {
			ext = r.LongFactor
		}
	}
	inv := baseInvFreq(r.Theta, r.Dims, ext)
	switch r.Type {
	case RopeLinear:
		factor := float32(r.Factor)
		for i := range inv {
			inv[i] /= factor
		}
	case RopeLlama3:
		llama3Scale(inv, r)
	}
	return inv
}

// baseInvFreq is 1/θ^(2i/d), or 1/(ext[i]·θ^(2i/d)) with LongRoPE factors,
// in float32 as transformers and convert_hf_to_gguf.py compute it.
func baseInvFreq(theta float64, dims int, ext []float64) []float32 {
	inv := make([]float32, dims/2)
	t := float32(theta)
	for i := range inv {
		p := powf(t, float32(2*i)/float32(dims))
		if ext != nil {
			p = float32(float32(ext[i]) * p)
		}
		inv[i] = 1 / p
	}
	return inv
}

// llama3Band is a llama3 rope's parameters in float32 as PyTorch applies
// them (Python floats meet float32 tensors as float32).
type llama3Band struct {
	factor, low, old, lowWave, highWave, span float32
}

func (r *Rope) llama3Band() llama3Band {
	return llama3Band{
		factor:   float32(r.Factor),
		low:      float32(r.LowFreqFactor),
		old:      float32(r.OriginalMaxPositions),
		lowWave:  float32(float64(r.OriginalMaxPositions) / r.LowFreqFactor),
		highWave: float32(float64(r.OriginalMaxPositions) / r.HighFreqFactor),
		span:     float32(r.HighFreqFactor - r.LowFreqFactor),
	}
}

// smooth is the interpolation weight of a wavelength between the bands.
func (b llama3Band) smooth(wave float32) float32 { return float32(b.old/wave-b.low) / b.span }

// llama3Scale applies _compute_llama3_parameters to default frequencies.
func llama3Scale(inv []float32, r *Rope) {
	b := r.llama3Band()
	for i, f := range inv {
		wave := float32(2*math.Pi) / f
		scaled := f
		if wave > b.lowWave {
			scaled = f / b.factor
		}
		if !(wave < b.highWave) && !(wave > b.lowWave) {
			s := b.smooth(wave)
			// Explicit conversions keep Go from fusing into FMAs, which
			// PyTorch's CPU kernels do not use here.
			scaled = float32(float32((1-s)*scaled)/b.factor) + float32(s*scaled)
		}
		inv[i] = scaled
	}
}

// CosSin returns cos and sin for each of the positions, Dims values per
// position (the Dims/2 angles repeated twice, as transformers concatenates
// freqs with itself), each multiplied by AttentionFactor: for position p and
// angle a = float32(inv[i]·p), cos = float32(cos(a))·float32(AttentionFactor).
// seqLen chooses LongRoPE's factors (see InvFreq).
func (r *Rope) CosSin(positions []int, seqLen int) (cos, sin []float32) {
	scale := float32(r.AttentionFactor)
	if r.AttentionFactor == 0 {
		scale = 1
	}
	return cosSin(r.InvFreq(seqLen), positions, scale)
}

// cosSin expands inverse frequencies into cos and sin tables: for position
// p and angle a = float32(inv[i]·p), float32(cos(a))·scale, twice over.
func cosSin(inv []float32, positions []int, scale float32) (cos, sin []float32) {
	half, dims := len(inv), 2*len(inv)
	cos = make([]float32, len(positions)*dims)
	sin = make([]float32, len(positions)*dims)
	for n, p := range positions {
		row := n * dims
		for i, f := range inv {
			a := float32(f * float32(p))
			c := float32(math.Cos(float64(a))) * scale
			s := float32(math.Sin(float64(a))) * scale
			cos[row+i], cos[row+half+i] = c, c
			sin[row+i], sin[row+half+i] = s, s
		}
	}
	return cos, sin
}

func powf(b, e float32) float32 { return float32(math.Pow(float64(b), float64(e))) }

// Llama3Factors are the Dims/2 values of llama.cpp's rope_freqs.weight for a
// llama3 rope, as convert_hf_to_gguf.py computes them in float32: llama.cpp
// divides each default frequency by its factor (1 for short wavelengths,
// Factor for long ones, 1/((1−s)/Factor + s) between).
func (r *Rope) Llama3Factors() []float32 {
	b := r.llama3Band()
	out := baseInvFreq(r.Theta, r.Dims, nil)
	for i, freq := range out {
		wave := float32(2*math.Pi) / freq
		switch {
		case wave < b.highWave:
			out[i] = 1
		case wave > b.lowWave:
			out[i] = b.factor
		default:
			s := b.smooth(wave)
			out[i] = 1 / (float32((1-s)/b.factor) + s)
		}
	}
	return out
}

// longRopeAttentionFactor is transformers' default LongRoPE attention factor:
// 1 when factor ≤ 1, else √(1 + ln(factor)/ln(original_max_position_embeddings)).
func longRopeAttentionFactor(factor float64, original int) float64 {
	if factor <= 1 {
		return 1
	}
	return math.Sqrt(1 + math.Log(factor)/math.Log(float64(original)))
}

// standardRopes are the rope types every architecture's model computes
// (linear and llama3 are frequency tables like the default).
var standardRopes = []RopeType{RopeDefault, RopeLinear, RopeLlama3}

// ropeOptions say what an architecture accepts in its rope configuration.
type ropeOptions struct {
	types       []RopeType
	partial     bool              // partial_rotary_factor may differ from 1
	aliases     map[string]string // legacy rope_type names ("su" → "longrope")
	headDim     int
	maxPos      int // max_position_embeddings
	originalMax int // top-level original_max_position_embeddings (Phi-3), 0 if none
}

// ropeBlock picks the rope block of a config: rope_scaling (v4, and what v5
// converts first when present), else rope_parameters (v5). nested reports a
// v5 block keyed by layer type ("full_attention", "sliding_attention").
func ropeBlock(o *object) (block *object, key string, nested bool, err error) {
	key = "rope_scaling"
	if block, err = o.sub(key); err != nil {
		return nil, "", false, err
	}
	if block == nil {
		key = "rope_parameters"
		if block, err = o.sub(key); err != nil {
			return nil, "", false, err
		}
	}
	if block != nil && (block.present("full_attention") || block.present("sliding_attention")) {
		nested = true
	}
	return block, key, nested, nil
}

// parseRope reads one rope configuration: the block (nil when the config has
// none) and the top-level rope_theta and partial_rotary_factor, which a value
// inside the block overrides (transformers v5's precedence; v4 files keep θ
// at the top level). topTheta is the θ to use when neither says.
func parseRope(o, block *object, opt ropeOptions, topTheta float64) (*Rope, error) {
	r := &Rope{Type: RopeDefault, Theta: topTheta, AttentionFactor: 1}
	partial, err := o.float("partial_rotary_factor", 1, 0, 1)
	if err != nil {
		return nil, err
	}
	name := "default"
	if block != nil {
		if r.Theta, err = block.float("rope_theta", r.Theta, 0, math.MaxFloat32); err != nil {
			return nil, err
		}
		if partial, err = block.float("partial_rotary_factor", partial, 0, 1); err != nil {
			return nil, err
		}
		legacy, err := block.str("type", "default")
		if err != nil {
			return nil, err
		}
		if name, err = block.str("rope_type", legacy); err != nil {
			return nil, err
		}
		if a, ok := opt.aliases[name]; ok {
			name = a
		}
	}
	if !(r.Theta >= 1 && r.Theta <= 1e30) {
		return nil, o.errorf("rope_theta", "%v is out of range [1, 1e30]", r.Theta)
	}
	if partial != 1 && !opt.partial {
		return nil, fmt.Errorf("%w: %s = %v: partial rotary embeddings are only supported for phi3", ErrUnsupported, o.key("partial_rotary_factor"), partial)
	}
	if !(partial > 0) {
		return nil, o.errorf("partial_rotary_factor", "%v must be positive", partial)
	}
	r.Dims = int(float64(opt.headDim) * partial)
	if r.Dims <= 0 || r.Dims%2 != 0 {
		return nil, o.errorf("partial_rotary_factor", "rotates %d of head_dim %d dimensions; must be even and positive", r.Dims, opt.headDim)
	}
	var typ RopeType
	switch name {
	case "default":
		typ = RopeDefault
	case "linear":
		typ = RopeLinear
	case "llama3":
		typ = RopeLlama3
	case "longrope":
		typ = RopeLongRoPE
	default:
		typ = 255
	}
	if !containsType(opt.types, typ) && block != nil {
		var names []string
		for _, t := range opt.types {
			names = append(names, t.String())
		}
		return nil, fmt.Errorf("%w: %s.rope_type %q (supported: %s)", ErrUnsupported, block.where, name, strings.Join(names, ", "))
	}
	r.Type = typ
	switch typ {
	case RopeLinear:
		if r.Factor, err = requireFloat(block, "factor", 1e-6, 1e6); err != nil {
			return nil, err
		}
	case RopeLlama3:
		if r.Factor, err = requireFloat(block, "factor", 1e-6, 1e6); err != nil {
			return nil, err
		}
		if r.LowFreqFactor, err = requireFloat(block, "low_freq_factor", 1e-6, 1e6); err != nil {
			return nil, err
		}
		if r.HighFreqFactor, err = requireFloat(block, "high_freq_factor", 1e-6, 1e6); err != nil {
			return nil, err
		}
		if !(r.HighFreqFactor > r.LowFreqFactor) {
			return nil, block.errorf("high_freq_factor", "%v must exceed low_freq_factor %v", r.HighFreqFactor, r.LowFreqFactor)
		}
		// v5 defaults the original context to max_position_embeddings.
		if r.OriginalMaxPositions, err = block.integer("original_max_position_embeddings", opt.maxPos, 1, 1<<26); err != nil {
			return nil, err
		}
	case RopeLongRoPE:
		if err := parseLongRoPE(block, r, opt); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func parseLongRoPE(block *object, r *Rope, opt ropeOptions) error {
	var err error
	half := r.Dims / 2
	for _, f := range []struct {
		key string
		dst *[]float64
	}{{"short_factor", &r.ShortFactor}, {"long_factor", &r.LongFactor}} {
		if *f.dst, err = block.floats(f.key, 1<<12); err != nil {
			return err
		}
		if len(*f.dst) != half {
			return block.errorf(f.key, "has %d values; want rotary dims / 2 = %d", len(*f.dst), half)
		}
		for i, v := range *f.dst {
			if !(v >= 1e-6 && v <= 1e6) {
				return block.errorf(f.key, "entry %d = %v is out of range [1e-6, 1e6]", i, v)
			}
		}
	}
	// Phi-3 keeps the pre-extension context at the top level, and transformers
	// uses it (and the ratio max_position_embeddings / it) over any value in
	// the block.
	r.OriginalMaxPositions = opt.originalMax
	if r.OriginalMaxPositions == 0 {
		if r.OriginalMaxPositions, err = block.integer("original_max_position_embeddings", opt.maxPos, 1, 1<<26); err != nil {
			return err
		}
	}
	r.Factor = float64(opt.maxPos) / float64(r.OriginalMaxPositions)
	if f, ok, err := block.number("factor"); err != nil {
		return err
	} else if ok && f != r.Factor {
		// transformers 4.x ignores rope_scaling.factor for Phi-3 (it uses the
		// ratio of contexts); 5.x prefers it. Refuse what the two read apart.
		return fmt.Errorf("%w: %s.factor = %v differs from max_position_embeddings / original_max_position_embeddings = %v, which transformers versions read differently; set attention_factor explicitly or remove factor", ErrUnsupported, block.where, f, r.Factor)
	}
	if r.AttentionFactor, err = block.float("attention_factor", 0, 0, 1e6); err != nil {
		return err
	}
	if r.AttentionFactor == 0 {
		r.AttentionFactor = longRopeAttentionFactor(r.Factor, r.OriginalMaxPositions)
	}
	return nil
}

func requireFloat(o *object, k string, lo, hi float64) (float64, error) {
	if !o.present(k) || o.isNull(k) {
		return 0, o.errorf(k, "missing")
	}
	return o.float(k, 0, lo, hi)
}

func containsType(ts []RopeType, t RopeType) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// String describes the rope for reports: "llama3 θ=500000 factor 8 (orig 8192)".
func (r *Rope) String() string {
	s := fmt.Sprintf("%s θ=%g", r.Type, r.Theta)
	switch r.Type {
	case RopeLinear:
		s += fmt.Sprintf(" factor %g", r.Factor)
	case RopeLlama3:
		s += fmt.Sprintf(" factor %g low %g high %g original %d", r.Factor, r.LowFreqFactor, r.HighFreqFactor, r.OriginalMaxPositions)
	case RopeLongRoPE:
		s += fmt.Sprintf(" original %d attention factor %.6g", r.OriginalMaxPositions, r.AttentionFactor)
	}
	return s
}
