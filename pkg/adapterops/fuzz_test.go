package adapterops

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

func FuzzParseInput(f *testing.F) {
	for _, s := range []string{"a", "a:0.5", "dir/a:-1e-3", "C:\\x", "dir:v2", "a:nan", "a:inf", ":1", "a:", "a:b:2", "x:0x1p-2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		in, err := ParseInput(s)
		if err != nil {
			if !errors.Is(err, ErrOption) {
				t.Fatalf("%q: error %v does not wrap ErrOption", s, err)
			}
			return
		}
		if in.Path == "" || math.IsNaN(in.Weight) || math.IsInf(in.Weight, 0) {
			t.Fatalf("%q: %+v", s, in)
		}
		// Either the whole string is the path (weight 1) or path:weight.
		if in.Path != s {
			i := strings.LastIndexByte(s, ':')
			if in.Path != s[:i] {
				t.Fatalf("%q: path %q", s, in.Path)
			}
			if w, err := strconv.ParseFloat(s[i+1:], 64); err != nil || w != in.Weight {
				t.Fatalf("%q: weight %v", s, in.Weight)
			}
		} else if in.Weight != 1 {
			t.Fatalf("%q: weight %v without a suffix", s, in.Weight)
		}
	})
}

func FuzzParseNames(f *testing.F) {
	for _, s := range []string{"svd", "DARE-TIES", " ties_svd ", "sv_fro", "energy", "Rank", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := ParseMethod(s); err == nil {
			if again, err := ParseMethod(string(m)); err != nil || again != m {
				t.Fatalf("%q: %q does not parse back", s, m)
			}
		} else if !errors.Is(err, ErrOption) {
			t.Fatalf("%q: %v", s, err)
		}
		if m, err := ParseRankMethod(s); err == nil {
			if again, err := ParseRankMethod(string(m)); err != nil || again != m {
				t.Fatalf("%q: %q does not parse back", s, m)
			}
		} else if !errors.Is(err, ErrOption) {
			t.Fatalf("%q: %v", s, err)
		}
	})
}

// FuzzRankRule: any valid rule on any non-negative sorted spectrum keeps
// between 1 and len(s) triplets, within its cap.
func FuzzRankRule(f *testing.F) {
	f.Add("energy", 0.9, 0, []byte{200, 100, 50, 1, 0})
	f.Add("sv_ratio", 4.0, 3, []byte{9, 9, 9})
	f.Add("rank", 0.0, 2, []byte{0, 0})
	f.Fuzz(func(t *testing.T, method string, param float64, rank int, spectrum []byte) {
		r := RankRule{Method: RankMethod(method), Param: param, Rank: rank}
		if r.Validate() != nil || len(spectrum) == 0 {
			return
		}
		s := make([]float64, len(spectrum))
		for i, b := range spectrum {
			s[i] = float64(b) / 7
		}
		slicesSortDesc(s)
		k := r.Choose(s)
		if k < 1 || k > len(s) || (r.Rank > 0 && k > r.Rank) {
			t.Fatalf("%+v on %v: rank %d", r, s, k)
		}
	})
}
