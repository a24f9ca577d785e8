package jinja

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type refCase struct {
	Template string          `json:"template"`
	Vars     json.RawMessage `json:"vars"`
	Output   *string         `json:"output"`
	Error    string          `json:"error"`
}

func render(src string, vars json.RawMessage) (string, error) {
	t, err := Parse(src)
	if err != nil {
		return "", err
	}
	m := map[string]any{}
	if len(vars) > 0 {
		v, err := FromJSON(vars)
		if err != nil {
			return "", err
		}
		d := v.(*Dict)
		for _, k := range d.Keys() {
			m[k], _ = d.Get(k)
		}
	}
	res, err := t.Render(m)
	return res.Text, err
}

// TestPythonJinja compares with Python's Jinja2 3.1 configured as
// transformers configures it (testdata/cases.json, from
// tools/tokref/jinja_ref.py).
func TestPythonJinja(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []refCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		got, err := render(c.Template, c.Vars)
		switch {
		case c.Error != "":
			if err == nil {
				t.Errorf("case %d %q: got %q, want a %s", i, c.Template, got, c.Error)
			}
		case err != nil:
			t.Errorf("case %d %q: %v", i, c.Template, err)
		case got != *c.Output:
			t.Errorf("case %d %q:\n got %q\nwant %q", i, c.Template, got, *c.Output)
		}
	}
	t.Logf("%d cases", len(cases))
}

func TestTaint(t *testing.T) {
	tm, err := Parse(`{% for m in messages %}<{{ m.role }}>{{ (m.content | trim) + '|' }}{% set c = m.content.strip() %}[{{ c[1:] }}]{% endfor %}`)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []any{}
	for i, s := range []string{" ab ", "  "} {
		d := NewDict()
		d.Set("role", "assistant")
		d.Set("content", Taint(s, i))
		msgs = append(msgs, d)
	}
	res, err := tm.Render(map[string]any{"messages": msgs})
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != "<assistant>ab|[b]<assistant>|[]" {
		t.Fatalf("text %q", res.Text)
	}
	var got []string
	for _, m := range res.Marks {
		got = append(got, res.Text[m.Start:m.End]+"#"+string(rune('0'+m.Tag)))
	}
	if strings.Join(got, ",") != "ab#0,b#0,#1,#1" {
		t.Errorf("marks %q", got)
	}
}

func TestLimits(t *testing.T) {
	defer func(n int) { maxSteps = n }(maxSteps)
	maxSteps = 100_000
	for _, src := range []string{
		`{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}`,
		`{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}`,
		`{{ range(1000000) }}`,
	} {
		if _, err := render(src, nil); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}

func FuzzRender(f *testing.F) {
	for _, s := range []string{
		"{% for m in messages %}{{ m.role }}{% endfor %}",
		"{%- if x -%}{{ x | trim }}{% else %}{{ y[1:] }}{% endif %}",
		"{% set ns = namespace(a=1) %}{% set ns.a = ns.a + 1 %}{{ ns.a | tojson }}",
		"{{ 'a' ~ 1 }}{# c #}{% raw %}{{{% endraw %}",
		"{% macro m(a, b=2) %}{{ a * b }}{% endmacro %}{{ m(3) }}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tm, err := Parse(src)
		if err != nil {
			return
		}
		d := NewDict()
		d.Set("role", "user")
		d.Set("content", Taint("hi", 0))
		_, _ = tm.Render(map[string]any{"messages": []any{d}, "x": "v", "y": []any{int64(1)}})
	})
}
