package peft

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"testing"
)

// TestRegexPython compares Go matching with Python's re on the same
// patterns and names (testdata/gen_regex_cases.py).
func TestRegexPython(t *testing.T) {
	b, err := os.ReadFile("testdata/regex_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Names []string
		Cases []struct {
			P      string
			Full   []bool
			Suffix []bool
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Cases {
		for _, form := range []struct {
			name    string
			compile func(string) (*regexp.Regexp, error)
			want    []bool
		}{{"fullmatch", fullmatchRe, c.Full}, {"pattern key", suffixRe, c.Suffix}} {
			re, err := form.compile(c.P)
			if form.want == nil {
				if !errors.Is(err, ErrUnsupportedPattern) {
					t.Errorf("%s %q: Python rejects it, Go: %v", form.name, c.P, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %q: %v", form.name, c.P, err)
				continue
			}
			for i, n := range d.Names {
				if got := re.MatchString(n); got != form.want[i] {
					t.Errorf("%s %q on %q: Go %v, Python %v", form.name, c.P, n, got, form.want[i])
				}
			}
		}
	}
}

func TestTranslatePy(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`.*\.q_proj`, `.*\.q_proj`},
		{`a\Z`, `a\z`},
		{`\u00e9`, `\x{00e9}`},
		{`\U0001F600`, `\x{0001F600}`},
		{`a{,3}`, `a{0,3}`},
		{`a{,}`, `a{0,}`},
		{`a{2,3}`, `a{2,3}`},
		{`[]a]`, `[\]a]`},
		{`[^]a]`, `[^\]a]`},
		{`(?P<n>x)`, `(?P<n>x)`},
		{`(?i)x`, `(?i)x`},
		{`(?i:x)y`, `(?i:x)y`},
		{`[\d.]`, `[\d.]`},
	} {
		got, err := translatePy(tc.in, true)
		if err != nil || got != tc.want {
			t.Errorf("translatePy(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestTranslatePyUnsupported(t *testing.T) {
	for _, p := range []string{
		`(?=x)`, `(?!x)`, `(?<=x)y`, `(?<!x)y`, `(a)\1`, `(?P<n>a)(?P=n)`, `(?(1)a|b)`, `(?>a)`,
		`(?#comment)`, `(?x)a b`, `(?a)\w`, `(?L)a`, `(?u)a`, `a(?i)b`, `\pL`, `\p{Greek}`, `\Qa.b\E`,
		`[[:alpha:]]`, `\z`, `\N{DIGIT ONE}`, `a\`, `[abc`, `\u12`, `\G`, `a*+`, `a++`, `x{2,1}`, `a{1001}`,
		`(?<n>x)`, `[\1]`,
	} {
		if _, err := fullmatchRe(p); !errors.Is(err, ErrUnsupportedPattern) {
			t.Errorf("fullmatchRe(%q) = %v, want ErrUnsupportedPattern", p, err)
		}
	}
	// Global flags are only valid at the very start of the Python pattern.
	if _, err := suffixRe(`(?i)q_proj`); !errors.Is(err, ErrUnsupportedPattern) {
		t.Errorf("suffixRe with global flag: %v", err)
	}
	if _, err := fullmatchRe(`(?i)q_proj`); err != nil {
		t.Errorf("fullmatchRe with leading global flag: %v", err)
	}
}

func FuzzPattern(f *testing.F) {
	for _, s := range []string{`.*\.q_proj`, `(?=x)`, `a{,3}`, `[]a]`, `\u00e9`, `(?i)x`, `[[:a:]]`, `\`, `(?P<n>x)`} {
		f.Add(s, "model.layers.0.self_attn.q_proj")
	}
	f.Fuzz(func(t *testing.T, p, name string) {
		for _, compile := range []func(string) (*regexp.Regexp, error){fullmatchRe, suffixRe, savedModuleRe} {
			re, err := compile(p)
			if err != nil {
				if !errors.Is(err, ErrUnsupportedPattern) {
					t.Fatalf("%q: error without ErrUnsupportedPattern: %v", p, err)
				}
				continue
			}
			re.MatchString(name)
		}
	})
}
