package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/arch"
)

// placeholders maps each path the README's examples use to what stands for
// it in the test's working folder: the shipped tiny Llama and its adapter,
// the bitsandbytes fixture, the example data, the torch.save copies of the
// tiny model and adapter. "fixtures/…" is under shared/fixtures,
// "examples/…" under the repository's examples folder, "testdata/…" under
// pkg/torchbin/testdata.
// Placeholders named after an 8B or 1B model get the tiny one: the commands
// are the same whatever the size.
var placeholders = []struct{ path, src string }{
	{"Llama-3.1-8B", "examples/tiny-llama"},
	{"Llama-3.2-1B", "examples/tiny-llama"},
	{"M", "examples/tiny-llama"},
	{"model.safetensors", "examples/tiny-llama/model.safetensors"},
	{"llama-nf4", "fixtures/bnb/tiny-nf4"},
	{"my-adapter", "examples/tiny-lora"},
	{"A", "examples/tiny-lora"},
	{"B", "fixtures/peft/lora"},
	{"qlora-adapter", "examples/tiny-lora"},
	{"train.jsonl", "examples/data/progressions.jsonl"},
	{"chat.jsonl", "examples/data/progressions.jsonl"},
	{"d.jsonl", "examples/data/progressions.jsonl*4"}, // 64 updates: --save-every 50 saves one
	{"test.jsonl", "examples/data/progressions-test.jsonl"},
	{"adapters/math", "examples/tiny-lora"},
	{"adapters/code", "fixtures/peft/train/plain/final"},
	{"adapters/chat", "fixtures/peft/lora"},
	{"adapters/big", "examples/tiny-lora"},
	{"run1/adapter", "examples/tiny-lora"},
	{"run2/adapter", "fixtures/peft/train/plain/final"},
	{"old-adapter", "testdata/tiny-lora"},
	{"pytorch-model", "testdata/tiny-llama"},
}

// readmeExamples lists every line of the README's ```sh blocks verbatim (the
// trailing comment included). Lines run in README order in one working folder
// (so that outputs feed later lines; a line appearing twice runs once) unless
// skip gives the reason; want lists strings the stdout must hold. A README
// line missing here, or a line here missing from the README, fails the test.
var readmeExamples = []struct {
	line string
	skip string
	want []string
}{
	{line: "make demo    # builds ./bin/lora-* and runs the main job on built-in inputs", skip: "scripts/demo.sh's run (minutes on 2 cores); its steps are TestMakefile's and TestPipelineScript's"},
	{line: "go install github.com/lorakit/lorakit/cmd/...@latest    # the five tools, full speed", skip: "installs from the module proxy (the network); the builds here are make's"},
	{line: "make test    # runs every test (vet, gofmt, unit, golden, end-to-end, every CPU path)", skip: "would run this test recursively"},

	{line: "lora-inspect ./my-adapter                          # adapter: type, targets, rank, alpha, scaling, parameters", want: []string{"LORA", "16,384", "q_proj"}},
	{line: "lora-inspect ./Llama-3.1-8B ./my-adapter           # several inputs, one report each", want: []string{"Llama-3.1-8B", "my-adapter", "106,816", "16,384"}},
	{line: "lora-inspect --json ./my-adapter                   # one JSON object (an array for several inputs)", want: []string{`"schema": 1`, `"trainable_params": 16384`}},
	{line: "lora-inspect --tensors model.safetensors           # per tensor: name, dtype, shape, bytes, parameters", want: []string{"model.embed_tokens.weight", "F32"}},
	{line: "lora-inspect --deltas ./my-adapter --base ./Llama-3.1-8B   # per module ||s·B·A||, spectrum, ||ΔW||/||W0||", want: []string{"q_proj"}},
	{line: "lora-merge --base M --adapter A -o - | lora-inspect --json -", want: []string{`"kind": "model"`, `"total_params": 106816`}},
	{line: "lora-inspect plan --config llama3-8b --rank 16 --alpha 32 --targets q_proj,k_proj,v_proj,o_proj --qlora", want: []string{"13,631,488"}},

	{line: "lora-quantize ./Llama-3.1-8B -o ./Llama-3.1-8B-nf4                  # NF4 + double quantization, block 64"},
	{line: "lora-quantize model.safetensors -o model-fp4.safetensors --type fp4 --no-double-quant"},
	{line: "lora-quantize ./Llama-3.1-8B -o - | lora-inspect --json -", want: []string{`"kind": "quantized-model"`, `"quant_type": "nf4"`}},
	{line: "lora-quantize --dequantize ./Llama-3.1-8B-nf4 -o ./Llama-3.1-8B-bf16 --dtype bf16"},

	{line: "lora-merge --base ./Llama-3.1-8B --adapter ./my-adapter -o ./merged            # sharded like the base"},
	{line: "lora-merge --base ./llama-nf4 --adapter ./qlora-adapter -o merged.safetensors --dtype bf16"},
	{line: "lora-merge --base M --adapter A --adapter B --weight 0.7,0.3 -o out"},
	{line: "lora-merge --base M --adapter A -o - | lora-gguf - -o merged.gguf"},

	{line: "lora-inspect diff ./run1/adapter ./run2/adapter --json", want: []string{`"schema": 1`, `"cosine"`, `"only_in_a"`}},
	{line: "lora-merge convert ./old-adapter -o ./old-adapter-st        # adapter_model.bin → a PEFT folder with adapter_model.safetensors"},
	{line: "lora-merge convert ./pytorch-model -o pytorch-model.safetensors   # pytorch_model-0000N-of-M.bin + index → one file"},

	{line: "lora-gguf ./Llama-3.1-8B -o llama.gguf --type q8_0                  # f32 | f16 | bf16 | q8_0 | q4_0"},
	{line: "lora-gguf ./my-adapter --base ./Llama-3.1-8B -o adapter.gguf        # for llama.cpp --lora"},

	{line: "lora-train --base ./Llama-3.2-1B --data train.jsonl -o my-adapter              # LoRA r=16, alpha=32, q,k,v,o"},
	{line: "lora-train --base ./llama-nf4 --data chat.jsonl -o a --targets all-linear --pack  # QLoRA, packed rows"},
	{line: "lora-train --base M --data d.jsonl -o A --method ia3                            # IA3 vectors on k, v, down_proj"},
	{line: "lora-train --base M --data d.jsonl -o soft-prompt --method prompt --virtual-tokens 20 --lr 3e-2   # prompt tuning"},
	{line: "lora-train --base M --data d.jsonl -o prefix --method prefix --virtual-tokens 10 --lr 1e-2        # prefix tuning"},
	{line: "lora-train eval --base M --adapter soft-prompt --data test.jsonl", want: []string{"loss"}},
	{line: "lora-train --base M --data d.jsonl -o A --save-every 50 --log log.jsonl"},
	{line: "lora-train plot log.jsonl -o loss.png --smooth 10                                # or loss.svg; --log-y for a log scale",
		want: []string{"M (llama): LoRA r=16 α=32, 64 steps", "plot written to loss.png"}},
	{line: "lora-train --base M --data d.jsonl -o A --resume A.checkpoints                   # continues bit for bit"},
	{line: "lora-train eval --base M --adapter A --data test.jsonl --json", want: []string{"loss"}},
	{line: "lora-train bench --shape llama3.2-1b --batch 1 --seq 512 --steps 3", skip: "times a 1B-parameter model: about 3 minutes on a 2-core CPU"},
}

// readmeFolder is a working folder holding every placeholder.
func readmeFolder(t *testing.T) string {
	t.Helper()
	fix := testbin.Fixtures(t)
	ex := examples(t)
	td := filepath.Join(testbin.Root(t), "pkg", "torchbin", "testdata")
	work := t.TempDir()
	for _, p := range placeholders {
		src, times := p.src, 1
		if i := strings.IndexByte(src, '*'); i >= 0 {
			src, times = src[:i], int(src[i+1]-'0')
		}
		switch {
		case strings.HasPrefix(src, "fixtures/"):
			src = filepath.Join(fix, strings.TrimPrefix(src, "fixtures/"))
		case strings.HasPrefix(src, "examples/"):
			src = filepath.Join(ex, strings.TrimPrefix(src, "examples/"))
		case strings.HasPrefix(src, "testdata/"):
			src = filepath.Join(td, strings.TrimPrefix(src, "testdata/"))
		}
		dst := filepath.Join(work, p.path)
		copyTree(t, src, dst)
		if times > 1 {
			b, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, bytes.Repeat(b, times), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return work
}

// readmeLines returns the lines of README.md's ```sh blocks.
func readmeLines(t *testing.T) []string {
	return readmeBlocks(t, "sh", false)
}

// readmeBlocks returns the lines of README.md's ```lang blocks (the blank
// ones too when keepBlank).
func readmeBlocks(t *testing.T, lang string, keepBlank bool) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testbin.Root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case !in && l == "```"+lang:
			in = true
		case in && strings.HasPrefix(l, "```"):
			in = false
		case in && (keepBlank || strings.TrimSpace(l) != ""):
			lines = append(lines, strings.TrimRight(l, " \t"))
		}
	}
	if in {
		t.Fatalf("README.md: unterminated ```%s block", lang)
	}
	return lines
}

// TestReadmeExamples runs every example command of the README on the
// shipped tiny model, adapter and data.
func TestReadmeExamples(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	t.Parallel()
	lines := readmeLines(t)
	byLine := map[string]int{}
	for i, ex := range readmeExamples {
		byLine[ex.line] = i
	}
	var order []int // readmeExamples indices in README order
	seen := map[int]bool{}
	for _, l := range lines {
		i, ok := byLine[l]
		if !ok {
			t.Errorf("README example neither mapped nor skipped (add it to readmeExamples): %q", l)
			continue
		}
		if !seen[i] {
			order = append(order, i)
		}
		seen[i] = true
	}
	for i, ex := range readmeExamples {
		if !seen[i] {
			t.Errorf("listed example not in README (remove it from readmeExamples): %q", ex.line)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	bins := binDir(t)
	work := readmeFolder(t)

	var trained []byte // A after the --save-every run, to compare the resumed run with
	for _, i := range order {
		ex := readmeExamples[i]
		if ex.skip != "" {
			t.Logf("skipped: %s\n\treason: %s", ex.line, ex.skip)
			continue
		}
		r := run(t, work, bins, nil, "bash", "-o", "pipefail", "-c", ex.line)
		if r.code != 0 {
			t.Errorf("%s\nexit %d\n%s", ex.line, r.code, r.stderr)
			continue
		}
		for _, w := range ex.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%s\noutput lacks %q:\n%s", ex.line, w, r.stdout)
			}
		}
		if strings.Contains(ex.line, "--json") {
			var v any
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
				t.Errorf("%s\n--json output is not one JSON value: %v\n%s", ex.line, err, r.stdout)
			}
		}
		// "continues bit for bit": the resumed run ends with the adapter the
		// uninterrupted run wrote.
		adapter := filepath.Join(work, "A", "adapter_model.safetensors")
		switch {
		case strings.Contains(ex.line, "--save-every"):
			b, err := os.ReadFile(adapter)
			if err != nil {
				t.Fatal(err)
			}
			trained = b
		case strings.Contains(ex.line, "--resume"):
			b, err := os.ReadFile(adapter)
			if err != nil {
				t.Fatal(err)
			}
			if trained == nil || !bytes.Equal(b, trained) {
				t.Errorf("%s: the resumed adapter differs from the uninterrupted run's", ex.line)
			}
		}
	}

	// The outputs the examples promise.
	for _, f := range []string{
		"Llama-3.1-8B-nf4/model.safetensors", "model-fp4.safetensors", "Llama-3.1-8B-bf16/model.safetensors",
		"merged/model.safetensors", "merged.safetensors", "out/model.safetensors", "merged.gguf", "llama.gguf",
		"adapter.gguf", "my-adapter/adapter_model.safetensors", "a/adapter_model.safetensors", "log.jsonl", "loss.png",
		"old-adapter-st/adapter_model.safetensors", "old-adapter-st/adapter_config.json", "pytorch-model.safetensors",
		"soft-prompt/adapter_model.safetensors", "prefix/adapter_model.safetensors",
	} {
		if st, err := os.Stat(filepath.Join(work, f)); err != nil || st.Size() == 0 {
			t.Errorf("expected output %s: %v", f, err)
		}
	}
}

// TestReadmeArchitectures holds the README's table of architectures to the
// registry: one row per architecture, in the registry's order, with its
// model_type values, family and llama.cpp architecture.
func TestReadmeArchitectures(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testbin.Root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Architectures\n")
	section, _, _ = strings.Cut(section, "\n## ")
	if !ok {
		t.Fatal("README.md has no Architectures section")
	}
	var rows [][]string
	for _, l := range strings.Split(section, "\n") {
		if strings.HasPrefix(l, "| `") && !strings.HasPrefix(l, "| `model_type`") {
			cells := strings.Split(strings.Trim(l, "|"), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			rows = append(rows, cells)
		}
	}
	all := arch.All()
	if len(rows) != len(all) {
		t.Fatalf("%d rows, the registry has %d architectures", len(rows), len(all))
	}
	for i, a := range all {
		types := "`" + a.ModelType + "`"
		if a.ModelType == "gemma3_text" {
			types += ", `gemma3`"
		}
		if r := rows[i]; len(r) != 6 || r[0] != types || r[1] != a.Name || r[2] != "`"+a.GGUFArch+"`" {
			t.Errorf("row %d %q, want %s | %s | `%s`", i, r, types, a.Name, a.GGUFArch)
		}
	}
	for _, mt := range arch.Supported() {
		if !strings.Contains(section, "`"+mt+"`") {
			t.Errorf("%s is not in the table", mt)
		}
	}
}

// TestReadmeMakefile runs the README's ```make blocks as a Makefile on
// the placeholders: every target is built, with the recipes' shell failing
// on any command of a pipeline.
func TestReadmeMakefile(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	t.Parallel()
	lines := readmeBlocks(t, "make", true)
	if len(lines) == 0 {
		t.Fatal("README.md has no ```make block")
	}
	var targets []string
	for _, l := range lines {
		if l == "" || l[0] == '\t' || l[0] == ' ' || l[0] == '#' {
			continue
		}
		if target, _, ok := strings.Cut(l, ":"); ok {
			targets = append(targets, target)
		}
	}
	bins := binDir(t)
	work := readmeFolder(t)
	makefile := "SHELL := bash\n.SHELLFLAGS := -o pipefail -c\n\n" + strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(work, "Makefile"), []byte(makefile), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range targets {
		r := run(t, work, bins, nil, "make", "--no-print-directory", target)
		if r.code != 0 {
			t.Errorf("make %s: exit %d\n%s%s", target, r.code, r.stdout, r.stderr)
			continue
		}
		if st, err := os.Stat(filepath.Join(work, target)); err != nil || (!st.IsDir() && st.Size() == 0) {
			t.Errorf("make %s: no output (%v)", target, err)
		}
	}
	if len(targets) < 8 {
		t.Errorf("only %d targets in the README's Makefile: %v", len(targets), targets)
	}
}
