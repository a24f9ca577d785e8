package adapterops

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Method is a combination type of PEFT's add_weighted_adapter.
type Method string

// The combination methods (PEFT's combination_type values).
const (
	Linear            Method = "linear"
	Cat               Method = "cat"
	SVD               Method = "svd"
	TIES              Method = "ties"
	TIESSVD           Method = "ties_svd"
	DARELinear        Method = "dare_linear"
	DARETIES          Method = "dare_ties"
	DARELinearSVD     Method = "dare_linear_svd"
	DARETIESSVD       Method = "dare_ties_svd"
	MagnitudePrune    Method = "magnitude_prune"
	MagnitudePruneSVD Method = "magnitude_prune_svd"
)

// Methods lists every method in PEFT's documentation order.
var Methods = []Method{SVD, Linear, Cat, TIES, TIESSVD, DARETIES, DARELinear, DARETIESSVD, DARELinearSVD, MagnitudePrune, MagnitudePruneSVD}

// ParseMethod returns the method named s (case-insensitive, "-" for "_").
func ParseMethod(s string) (Method, error) {
	m := Method(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "_"))
	for _, x := range Methods {
		if m == x {
			return m, nil
		}
	}
	names := make([]string, len(Methods))
	for i, x := range Methods {
		names[i] = string(x)
	}
	return "", fmt.Errorf("%w: unknown method %q (want one of %s)", ErrOption, s, strings.Join(names, ", "))
}

// SVDBased reports whether the method combines the deltas ΔW and factors
// the result by SVD (svd and the *_svd methods).
func (m Method) SVDBased() bool { return m == SVD || strings.HasSuffix(string(m), "_svd") }

// Pruning reports whether the method needs a density.
func (m Method) Pruning() bool { return m.prune() != pruneNone }

// Elects reports whether the method elects signs (TIES), so that
// MajoritySign applies.
func (m Method) Elects() bool {
	switch m {
	case TIES, TIESSVD, DARETIES, DARETIESSVD:
		return true
	}
	return false
}

func (m Method) prune() pruneKind {
	switch m {
	case TIES, TIESSVD, MagnitudePrune, MagnitudePruneSVD:
		return pruneMagnitude
	case DARELinear, DARETIES, DARELinearSVD, DARETIESSVD:
		return pruneRandom
	}
	return pruneNone
}

// sameRank reports whether PEFT requires every adapter to have the same r.
func (m Method) sameRank() bool { return !m.SVDBased() && m != Cat }

// MajoritySign is TIES's sign election: "total" (the sign of the sum of the
// pruned values) or "frequency" (the sign of most of them).
type MajoritySign string

// The sign election methods.
const (
	SignTotal     MajoritySign = "total"
	SignFrequency MajoritySign = "frequency"
)

func (m Method) merge(sign MajoritySign) mergeKind {
	if !m.Elects() {
		return mergeSum
	}
	if sign == SignFrequency {
		return mergeTIESFreq
	}
	return mergeTIESTotal
}

// Input is one adapter to combine and its weight.
type Input struct {
	Path   string
	Weight float64
}

// ParseInput parses "PATH[:WEIGHT]": the text after the last ':' is the
// weight when it is a finite number, otherwise the whole string is the path
// (so "C:\x" or "dir:v2" stay paths). The weight defaults to 1.
func ParseInput(s string) (Input, error) {
	if s == "" {
		return Input{}, fmt.Errorf("%w: empty adapter", ErrOption)
	}
	if i := strings.LastIndexByte(s, ':'); i > 0 {
		if w, err := strconv.ParseFloat(s[i+1:], 64); err == nil {
			if math.IsNaN(w) || math.IsInf(w, 0) {
				return Input{}, fmt.Errorf("%w: adapter %q: weight %v is not finite", ErrOption, s, w)
			}
			return Input{Path: s[:i], Weight: w}, nil
		}
	}
	return Input{Path: s, Weight: 1}, nil
}
