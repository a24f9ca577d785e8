package adapterops

import (
	"fmt"
	"math"
	"strings"
)

// RankMethod names how Resize chooses each module's new rank.
type RankMethod string

// The rank rules. Energy and Threshold are lorakit's; SVRatio, SVFro and
// SVCumulative are kohya-ss sd-scripts resize_lora's dynamic methods, with
// its definitions (networks/resize_lora.py, index_sv_*).
const (
	// RankFixed keeps Rank triplets (a module of smaller rank keeps its own).
	RankFixed RankMethod = "rank"
	// RankEnergy keeps the smallest k with Σ_{i<k} σᵢ² >= Param·Σ σᵢ²: a
	// fraction Param of the squared Frobenius norm (√Param of the norm).
	RankEnergy RankMethod = "energy"
	// RankThreshold keeps the σᵢ >= Param·σ₁ (relative to the largest).
	RankThreshold RankMethod = "threshold"
	// RankSVRatio keeps the σᵢ > σ₁/Param (kohya sv_ratio; Param >= 1).
	RankSVRatio RankMethod = "sv_ratio"
	// RankSVFro keeps the smallest k with Σ_{i<k} σᵢ²/Σ σᵢ² >= Param²
	// (kohya sv_fro: Param is the fraction of the Frobenius norm kept).
	RankSVFro RankMethod = "sv_fro"
	// RankSVCumulative keeps the smallest k with Σ_{i<k} σᵢ/Σ σᵢ >= Param
	// (kohya sv_cumulative).
	RankSVCumulative RankMethod = "sv_cumulative"
)

// RankMethods lists the rank rules.
var RankMethods = []RankMethod{RankFixed, RankEnergy, RankThreshold, RankSVRatio, RankSVFro, RankSVCumulative}

// RankRule chooses a module's new rank from the singular values of its ΔW.
// Every rule keeps at least one triplet (a zero ΔW gets rank 1 of zeros,
// where kohya uses 1 below σ₁ <= 1e-6) and never more than the module has.
type RankRule struct {
	Method RankMethod `json:"method"`
	// Param is the rule's parameter (unused by RankFixed).
	Param float64 `json:"param,omitempty"`
	// Rank is RankFixed's rank, and the largest rank the other rules may
	// choose (0: no limit), as kohya's --new_rank.
	Rank int `json:"max_rank,omitempty"`
}

// ParseRankMethod returns the rank rule named s (case-insensitive, "-" for
// "_").
func ParseRankMethod(s string) (RankMethod, error) {
	m := RankMethod(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "_"))
	for _, x := range RankMethods {
		if m == x {
			return m, nil
		}
	}
	return "", fmt.Errorf("%w: unknown rank rule %q (want rank, energy, threshold, sv_ratio, sv_fro or sv_cumulative)", ErrOption, s)
}

// Validate checks the rule's parameters.
func (r RankRule) Validate() error {
	if r.Rank < 0 {
		return fmt.Errorf("%w: rank %d is negative", ErrOption, r.Rank)
	}
	inUnit := func(what string) error {
		if !(r.Param > 0 && r.Param <= 1) {
			return fmt.Errorf("%w: %s %v is not in (0, 1]", ErrOption, what, r.Param)
		}
		return nil
	}
	switch r.Method {
	case RankFixed:
		if r.Rank < 1 {
			return fmt.Errorf("%w: rank %d: a fixed rank must be at least 1", ErrOption, r.Rank)
		}
		return nil
	case RankEnergy:
		return inUnit("energy fraction")
	case RankThreshold:
		return inUnit("threshold")
	case RankSVFro:
		return inUnit("sv_fro fraction")
	case RankSVCumulative:
		return inUnit("sv_cumulative fraction")
	case RankSVRatio:
		if !(r.Param >= 1) || math.IsInf(r.Param, 1) {
			return fmt.Errorf("%w: sv_ratio %v must be a finite number >= 1", ErrOption, r.Param)
		}
		return nil
	}
	_, err := ParseRankMethod(string(r.Method))
	return err
}

// Choose returns the rank to keep for the singular values s (largest
// first).
func (r RankRule) Choose(s []float64) int {
	n := len(s)
	if n == 0 {
		return 0
	}
	if s[0] == 0 {
		return 1
	}
	if r.Method == RankFixed {
		return max(1, min(r.Rank, n))
	}
	k := n
	switch r.Method {
	case RankEnergy:
		k = firstReaching(s, func(x float64) float64 { return x * x }, r.Param)
	case RankSVFro:
		k = firstReaching(s, func(x float64) float64 { return x * x }, r.Param*r.Param)
	case RankSVCumulative:
		k = firstReaching(s, func(x float64) float64 { return x }, r.Param)
	case RankThreshold:
		k = 0
		for _, x := range s {
			if x >= r.Param*s[0] {
				k++
			}
		}
	case RankSVRatio:
		k = 0
		for _, x := range s {
			if x > s[0]/r.Param {
				k++
			}
		}
	}
	if r.Rank > 0 {
		k = min(k, r.Rank)
	}
	return max(1, min(k, n))
}

// firstReaching returns the smallest k with Σ_{i<k} f(sᵢ) / Σ f(sᵢ) >=
// target (n when rounding keeps the last ratio below it).
func firstReaching(s []float64, f func(float64) float64, target float64) int {
	var total float64
	for _, x := range s {
		total += f(x)
	}
	var cum float64
	for i, x := range s {
		cum += f(x)
		if cum/total >= target {
			return i + 1
		}
	}
	return len(s)
}
