package adapterops

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"math"
	"slices"

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
// >= 1 (PEFT's prune returns the tensor unchanged). Values must be finite.
func magnitudeRule(x []float32, density float64) keepRule { return magnitudeRuleN(x, density, 1) }

// magnitudeRuleN is magnitudeRule with the passes over x on nWorkers
// goroutines; the rule does not depend on nWorkers.
func magnitudeRuleN(x []float32, density float64, nWorkers int) keepRule {
	return selectRule(len(x), density, selectChunk, nWorkers,
		func(_, lo, hi int) []float32 { return x[lo:hi] }, func() []float32 { return x })
}

// Selection in two passes: a histogram of the top 16 bits of |x| finds the
// bucket holding the k-th largest, whose entries are then gathered and
// sorted. A bucket larger than maxBucket (values crowded together) falls
// back to radix selection, four passes of 8 bits over the whole tensor.
const (
	bucketShift = 15 // the bits of |x| are 31 wide
	buckets     = 1 << (31 - bucketShift)
	maxBucket   = 1 << 22
	selectChunk = 1 << 16 // entries a goroutine takes at a time
)

// selectRule is magnitudeRule for a tensor of n entries given in blocks:
// block(w, lo, hi) returns entries [lo, hi) (lo a multiple of blockLen),
// valid until worker w's next call; it is called on nWorkers goroutines,
// twice per entry. whole returns the whole tensor for the radix fallback.
func selectRule(n int, density float64, blockLen, nWorkers int, block func(w, lo, hi int) []float32, whole func() []float32) keepRule {
	if density >= 1 {
		return keepRule{all: true}
	}
	k := int(density * float64(n))
	if k <= 0 {
		return keepRule{none: true}
	}
	if k >= n {
		return keepRule{all: true}
	}
	nw := max(1, min(nWorkers, (n+blockLen-1)/blockLen))
	hists := make([][]int64, nw) // integer counts: the sum does not depend on the split
	for w := range hists {
		hists[w] = make([]int64, buckets)
	}
	parallelBlocks(n, blockLen, nw, func(w, lo, hi int) {
		h := hists[w]
		for _, v := range block(w, lo, hi) {
			h[(math.Float32bits(v)&^signBit)>>bucketShift]++
		}
	})
	bucket, remaining := 0, k
	for b := buckets - 1; b >= 0; b-- {
		var c int64
		for _, h := range hists {
			c += h[b]
		}
		if c >= int64(remaining) {
			bucket = b
			if c > maxBucket {
				return radixRule(whole(), k)
			}
			break
		}
		remaining -= int(c)
	}
	// The bucket's entries as bits<<32 | index, block by block.
	found := make([][]uint64, (n+blockLen-1)/blockLen)
	parallelBlocks(n, blockLen, nw, func(w, lo, hi int) {
		var got []uint64
		for i, v := range block(w, lo, hi) {
			if b := math.Float32bits(v) &^ signBit; int(b>>bucketShift) == bucket {
				got = append(got, uint64(b)<<32|uint64(lo+i))
			}
		}
		found[lo/blockLen] = got
	})
	all := slices.Concat(found...)
	// Largest magnitude first; equal magnitudes in index order.
	slices.SortStableFunc(all, func(a, b uint64) int { return cmp.Compare(b>>32, a>>32) })
	last := all[remaining-1]
	return keepRule{thr: uint32(last >> 32), cut: int64(last & (1<<32 - 1))}
}

// radixRule is the rule keeping the k entries of largest magnitude by radix
// selection on the bits of |x| (the order of non-negative floats), four
// passes over x.
func radixRule(x []float32, k int) keepRule {
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
// A dropped entry becomes v·0 (PEFT multiplies by the mask: −0 for
// negatives), computed as its sign bit alone.
func (p pruner) apply(x []float32, base int64) {
	switch p.kind {
	case pruneMagnitude:
		r := p.rule
		switch {
		case r.all:
			return
		case r.none:
			for i, v := range x {
				x[i] = math.Float32frombits(math.Float32bits(v) & signBit)
			}
			return
		}
		for i, v := range x {
			bits := math.Float32bits(v)
			b := bits &^ signBit
			keep := (r.thr - b) >> 31 // 1 when b > thr (both below 2³¹): no branch
			if b == r.thr && base+int64(i) <= r.cut {
				keep = 1
			}
			x[i] = math.Float32frombits(bits & (signBit | -keep))
		}
	case pruneRandom:
		for i, v := range x {
			m := ^uint32(0)
			if compute.DropoutDrops(p.key, int(base)+i, p.threshold) {
				m = signBit // v·0, a conditional move rather than a branch
			}
			x[i] = math.Float32frombits(math.Float32bits(v)&m) / p.inv
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
// weighted = t·w (rounded: never fused into the sum), sums along the
// adapters in order from zero, and for TIES the elected sign is + when the
// sum (of the unweighted values, or of their signs) is >= 0, the weighted
// values of that sign are summed and divided by their number (at least 1).
// The loops run adapter by adapter over the whole block.
func mergeInto(dst []float32, ts [][]float32, ws []float32, kind mergeKind) {
	n := len(dst)
	if kind == mergeSum {
		for i, t := range ts {
			t, w := t[:n], ws[i]
			if i == 0 {
				for j, x := range t {
					dst[j] = 0 + float32(x*w)
				}
				continue
			}
			for j, x := range t {
				dst[j] += float32(x * w)
			}
		}
		return
	}
	mergeTIES(dst, ts, ws, kind == mergeTIESFreq)
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

// mergeTIES is mergeInto's TIES merge, chunk by chunk of entries kept in
// L1: the vote, the election, then the disjoint mean. Every step is
// computed on the bits without branches (the signs of pruned values are
// random), with the arithmetic of mergeReference in the tests: a vote is
// never −0 (sums from +0 round to +0), so its sign bit is the election,
// + for a vote >= 0; an entry agrees when it is non-zero with that sign
// bit; adding +0 for the others leaves a sum unchanged (never −0 either).
func mergeTIES(dst []float32, ts [][]float32, ws []float32, frequency bool) {
	const chunk = 256
	var vote, acc, cnt [chunk]float32
	for c0 := 0; c0 < len(dst); c0 += chunk {
		d := dst[c0:min(c0+chunk, len(dst))]
		vote, acc, cnt := vote[:len(d)], acc[:len(d)], cnt[:len(d)]
		clear(vote)
		clear(acc)
		clear(cnt)
		for _, t := range ts {
			t := t[c0 : c0+len(d)]
			for j, x := range t {
				if frequency { // sign(x): ±1, or +0 for ±0
					bits := math.Float32bits(x)
					nonzero := (bits&^signBit + 0x7fffffff) >> 31
					x = math.Float32frombits((bits&signBit | 0x3f800000) & -nonzero)
				}
				vote[j] += x
			}
		}
		for i, t := range ts {
			t, w := t[c0:c0+len(d)], ws[i]
			for j, x := range t {
				bits := math.Float32bits(x)
				nonzero := (bits&^signBit + 0x7fffffff) >> 31
				same := 1 ^ (bits^math.Float32bits(vote[j]))>>31
				m := -(nonzero & same)
				acc[j] += math.Float32frombits(math.Float32bits(float32(x*w)) & m)
				cnt[j] += math.Float32frombits(0x3f800000 & m) // 1 or +0
			}
		}
		for j, n := range cnt {
			// max(n, 1): n is a count, 0 becomes 1.
			bits := math.Float32bits(n)
			zero := 1 ^ (bits+0x7fffffff)>>31
			d[j] = acc[j] / math.Float32frombits(bits|0x3f800000&-zero)
		}
	}
}
