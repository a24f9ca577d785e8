package adapterops

import (
	"encoding/binary"
	"hash/fnv"
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
)

// DARETensor names the tensor whose entries a DARE mask drops.
type DARETensor uint8

// The tensors DARE prunes: lora_A and lora_B of each adapter (dare_linear,
// dare_ties) or its ΔW (dare_linear_svd, dare_ties_svd).
const (
	DARELoraA  DARETensor = 1
	DARELoraB  DARETensor = 2
	DAREDeltaW DARETensor = 3
)

// dareKey is the dropout key of one tensor's DARE mask.
func dareKey(seed uint64, module string, t DARETensor, adapter int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(module))
	h.Write([]byte{0, byte(t)})
	h.Write(binary.LittleEndian.AppendUint64(nil, uint64(adapter)))
	return compute.DropoutKey(seed, h.Sum64())
}

// dareThreshold is the dropout threshold of a density: entries are dropped
// with probability 1 − density.
func dareThreshold(density float64) uint32 {
	return compute.DropoutThreshold(float32(1 - density))
}

// DAREKeep reports whether DARE keeps entry index (row-major) of tensor t of
// the adapter at position adapter (0-based, in the order given) in module
// (its path relative to the model, e.g. "model.layers.0.self_attn.q_proj").
// DARE is dropout on the adapter's parameters, and lorakit draws its mask as
// lora-train draws dropout masks (package compute):
//
//	stream = FNV-1a-64(module ‖ 0x00 ‖ t ‖ adapter as 8 bytes little-endian)
//	key    = compute.DropoutKey(seed, stream)
//	keep   = !compute.DropoutDrops(key, index, compute.DropoutThreshold(float32(1 − density)))
//
// so each entry is kept with probability density (to 2⁻²⁴), independently,
// and the mask depends on nothing else (not on threads or order). This
// replaces PEFT's torch.bernoulli(density), whose stream cannot be
// reproduced; the kept entries are divided by density as in PEFT.
func DAREKeep(seed uint64, module string, t DARETensor, adapter int, index int64, density float64) bool {
	return !compute.DropoutDrops(dareKey(seed, module, t, adapter), int(index), dareThreshold(density))
}

// keepRule selects the entries of a tensor that magnitude pruning keeps:
// |x| above thr, and those equal to thr up to flat index cut (so exactly k
// entries, the lowest indices winning ties).
type keepRule struct {
	all, none bool
	thr       uint32 // bits of |x|
	cut       int64
}

const signBit = 1 << 31

func (k keepRule) keep(x float32, index int64) bool {
	if k.all {
		return true
	}
	if k.none {
		return false
	}
	b := math.Float32bits(x) &^ signBit
	return b > k.thr || (b == k.thr && index <= k.cut)
}

// magnitudeRule returns the rule keeping PEFT's k = int(density·numel)
// entries of largest magnitude (torch.topk), and everything when density
// >= 1 (PEFT's prune returns the tensor unchanged). Values must be finite;
// the threshold is found by radix selection on the bits of |x| (the order of
// non-negative floats), four passes over x.
func magnitudeRule(x []float32, density float64) keepRule {
	if density >= 1 {
		return keepRule{all: true}
	}
	k := int(density * float64(len(x)))
	if k <= 0 {
		return keepRule{none: true}
	}
	if k >= len(x) {
		return keepRule{all: true}
	}
	var prefix, mask uint32
	remaining := k // entries still to take among those matching prefix
	for shift := 24; shift >= 0; shift -= 8 {
		var hist [256]int
		for _, v := range x {
			if b := math.Float32bits(v) &^ signBit; b&mask == prefix {
				hist[(b>>shift)&0xff]++
			}
		}
		for d := 255; d >= 0; d-- {
			if hist[d] >= remaining {
				prefix |= uint32(d) << shift
				mask |= 0xff << shift
				break
			}
			remaining -= hist[d]
		}
	}
	// remaining >= 1 entries equal to prefix are kept: find the index of
	// the last one.
	r := keepRule{thr: prefix}
	for i, v := range x {
		if math.Float32bits(v)&^signBit == prefix {
			remaining--
			if remaining == 0 {
				r.cut = int64(i)
				break
			}
		}
	}
	return r
}

// pruner prunes the entries of one tensor: magnitude (rule), DARE (random,
// rescaled by 1/density) or nothing.
type pruner struct {
	kind      pruneKind
	rule      keepRule
	key       uint64  // DARE
	threshold uint32  // DARE
	inv       float32 // PEFT divides by density in the tensor's dtype
}

type pruneKind uint8

const (
	pruneNone pruneKind = iota
	pruneMagnitude
	pruneRandom
)

func newRandomPruner(seed uint64, module string, t DARETensor, adapter int, density float64) pruner {
	if density >= 1 {
		return pruner{kind: pruneNone}
	}
	return pruner{kind: pruneRandom, key: dareKey(seed, module, t, adapter), threshold: dareThreshold(density), inv: float32(density)}
}

// apply prunes x in place; base is the flat index of x[0] in the tensor.
func (p pruner) apply(x []float32, base int64) {
	switch p.kind {
	case pruneMagnitude:
		for i, v := range x {
			if !p.rule.keep(v, base+int64(i)) {
				x[i] = v * 0 // PEFT multiplies by the mask (−0 for negatives)
			}
		}
	case pruneRandom:
		for i, v := range x {
			if compute.DropoutDrops(p.key, int(base)+i, p.threshold) {
				v *= 0
			}
			x[i] = v / p.inv
		}
	}
}

// mergeKind combines pruned tensors.
type mergeKind uint8

const (
	mergeSum       mergeKind = iota // Σ wᵢ·tᵢ (task_arithmetic)
	mergeTIESTotal                  // sign elected by Σ tᵢ, disjoint mean
	mergeTIESFreq                   // sign elected by Σ sign(tᵢ), disjoint mean
)

// mergeInto writes the combination of the tensors ts (pruned, unweighted)
// with weights ws into dst, in float32 in PEFT's order of operations:
// weighted = t·w, sums along the adapters in order from zero, and for TIES
// the elected sign is + when the sum (of the unweighted values, or of their
// signs) is >= 0, the weighted values of that sign are summed and divided by
// their number (at least 1).
func mergeInto(dst []float32, ts [][]float32, ws []float32, kind mergeKind) {
	for j := range dst {
		if kind == mergeSum {
			var acc float32
			for i, t := range ts {
				acc += t[j] * ws[i]
			}
			dst[j] = acc
			continue
		}
		var elect float32
		for _, t := range ts {
			if kind == mergeTIESTotal {
				elect += t[j]
			} else {
				elect += sign32(t[j])
			}
		}
		maj := float32(1)
		if elect < 0 {
			maj = -1
		}
		var acc, n float32
		for i, t := range ts {
			if sign32(t[j]) == maj {
				acc += t[j] * ws[i]
				n++
			}
		}
		dst[j] = acc / max(n, 1)
	}
}

func sign32(x float32) float32 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}
