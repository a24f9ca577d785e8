package layers

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/lorakit/lorakit/"

// layerOf gives every package its layer (paths relative to the module);
// a path ending in "/" covers the packages below it. ARCHITECTURE.md
// explains the layers.
var layerOf = map[string]string{
	"pkg/errclass": "base", "internal/num": "base", "internal/term": "base", "internal/pyjson": "base",
	"pkg/linalg": "base", "internal/kernels": "base", "internal/kernels/": "base",

	"pkg/dtype": "format", "pkg/safetensors": "format", "pkg/gguf": "format", "pkg/nf4": "format",
	"pkg/peft": "format", "pkg/arch": "format", "pkg/torchbin": "format", "pkg/tokenizer": "format", "pkg/tokenizer/": "format",

	"pkg/output": "io", "pkg/tool": "io", "pkg/checkpoint": "io", "pkg/pipeline": "io", "internal/randmodel": "io",

	"pkg/compute": "compute", "pkg/compute/": "compute", "kernels": "compute",

	"pkg/llama": "model", "pkg/model": "model",

	"pkg/inspect": "feature", "pkg/quantize": "feature", "pkg/merge": "feature", "pkg/export": "feature", "pkg/train": "feature",
	"pkg/adapterops": "feature", "pkg/convert": "feature",

	"internal/cli": "cli",
	"cmd/":         "cmd",

	"tools/": "dev", "e2e": "dev", "internal/testbin": "dev", "internal/teststream": "dev", "internal/layers": "dev",
	"internal/fixtureio": "dev", "internal/plaintrain": "dev",
}

// mayImport lists, for each layer, the layers its packages may import.
var mayImport = map[string][]string{
	"base":    {"base"},
	"format":  {"base", "format"},
	"io":      {"base", "format", "io"},
	"compute": {"base", "format", "compute"},
	"model":   {"base", "format", "io", "compute", "model"},
	"feature": {"base", "format", "io", "compute", "model"},
	"cli":     {"base", "format", "io"},
	"cmd":     {"base", "format", "io", "compute", "model", "feature", "cli"},
	"dev":     {"base", "format", "io", "compute", "model", "feature", "cli", "dev"},
}

// forbidden are imports the layers would allow but the design does not:
// checkpoint knows files, not adapters.
var forbidden = map[[2]string]string{
	{"pkg/checkpoint", "pkg/peft"}: "checkpoint reads files; adapter semantics belong to peft and model",
}

func layer(path string) (string, bool) {
	if l, ok := layerOf[path]; ok {
		return l, true
	}
	best := ""
	for prefix := range layerOf {
		if strings.HasSuffix(prefix, "/") && strings.HasPrefix(path, prefix) && len(prefix) > len(best) {
			best = prefix
		}
	}
	if best == "" {
		return "", false
	}
	return layerOf[best], true
}

type pkg struct {
	ImportPath string
	Imports    []string
}

// packages lists the module's packages and their (non-test) imports.
func packages(t *testing.T) []pkg {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not available")
	}
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var ps []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestLayers fails on an import that goes up or sideways where ARCHITECTURE.md
// says it must not, and on a package without a layer.
func TestLayers(t *testing.T) {
	ps := packages(t)
	if len(ps) < 30 {
		t.Fatalf("go list found %d packages", len(ps))
	}
	var problems []string
	for _, p := range ps {
		from := strings.TrimPrefix(p.ImportPath, module)
		if from == "github.com/lorakit/lorakit" {
			from = "."
		}
		fl, ok := layer(from)
		if !ok {
			problems = append(problems, from+": no layer; add it to ARCHITECTURE.md and to layerOf")
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to := strings.TrimPrefix(imp, module)
			tl, ok := layer(to)
			if !ok {
				continue // reported as a package of its own
			}
			if why, bad := forbidden[[2]string{from, to}]; bad {
				problems = append(problems, from+" imports "+to+": "+why)
			}
			if !contains(mayImport[fl], tl) {
				problems = append(problems, from+" ("+fl+") imports "+to+" ("+tl+")")
			}
			if fl == "feature" && tl == "feature" && from != to {
				problems = append(problems, from+" imports the feature package "+to+": features share code through the layers below")
			}
			if strings.HasPrefix(from, "internal/") && tl == "feature" {
				problems = append(problems, from+" imports the feature package "+to+": nothing under internal/ may")
			}
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

// TestRules checks the checker: a made-up import of each kind is caught.
func TestRules(t *testing.T) {
	for _, c := range []struct{ from, to string }{
		{"pkg/safetensors", "pkg/checkpoint"}, {"pkg/gguf", "pkg/llama"}, {"pkg/nf4", "pkg/quantize"},
		{"pkg/dtype", "pkg/train"}, {"internal/cli", "pkg/merge"}, {"pkg/merge", "internal/cli"},
		{"pkg/export", "pkg/merge"}, {"pkg/output", "pkg/train"},
	} {
		fl, _ := layer(c.from)
		tl, _ := layer(c.to)
		if contains(mayImport[fl], tl) && !(fl == "feature" && tl == "feature") {
			t.Errorf("%s → %s is allowed", c.from, c.to)
		}
	}
	if _, bad := forbidden[[2]string{"pkg/checkpoint", "pkg/peft"}]; !bad {
		t.Error("checkpoint → peft is allowed")
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
