package tier

import (
	"slices"
	"testing"
)

func TestChoose(t *testing.T) {
	x86 := []Tier{Generic, AVX2, AVX512}
	for _, c := range []struct {
		env      string
		sup      []Tier
		act, req Tier
		note     bool
	}{
		{"", x86, AVX512, AVX512, false},
		{"auto", x86, AVX512, AVX512, false},
		{"AVX2", x86, AVX2, AVX2, false},
		{"generic", x86, Generic, Generic, false},
		{"avx512", []Tier{Generic, AVX2}, AVX2, AVX512, true},
		{"neon", x86, Generic, NEON, true},
		{"sse9", x86, AVX512, AVX512, true},
		{"neon", []Tier{Generic, NEON}, NEON, NEON, false},
		{"avx2", []Tier{Generic, NEON}, Generic, AVX2, true},
		{"", []Tier{Generic}, Generic, Generic, false},
	} {
		act, req, note := choose(c.env, c.sup)
		if act != c.act || req != c.req || (note != "") != c.note {
			t.Errorf("choose(%q, %v) = %v, %v, %q; want %v, %v, note %v", c.env, c.sup, act, req, note, c.act, c.req, c.note)
		}
	}
}

func TestActive(t *testing.T) {
	sup := Supported()
	if sup[0] != Generic || !slices.Contains(sup, Active()) {
		t.Fatalf("active %v not in supported %v", Active(), sup)
	}
	t.Logf("active %s, requested %s, supported %v, note %q", Active(), Requested(), sup, Note())
	if !Has(Generic) || Has(AVX2) != (Active() == AVX2 || Active() == AVX512) {
		t.Error("Has disagrees with Active")
	}
	for _, n := range []Tier{Generic, AVX2, AVX512, NEON} {
		if p, auto, ok := Parse(n.String()); !ok || auto || p != n {
			t.Errorf("Parse(%q) = %v, %v, %v", n, p, auto, ok)
		}
	}
}
