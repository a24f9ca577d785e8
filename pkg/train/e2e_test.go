package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/peft"
)

func write(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func run(t *testing.T, code int, stdin []byte, args ...string) testbin.Result {
	t.Helper()
	r := testbin.Run(t, stdin, testbin.Build(t, "lora-train"), args...)
	if r.Code != code {
		t.Fatalf("lora-train %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, code, r.Stdout, r.Stderr)
	}
	if strings.Contains(r.Stderr, "goroutine ") || strings.Contains(r.Stderr, "panic") {
		t.Fatalf("stack trace: %s", r.Stderr)
	}
	return r
}

// analyze reads an adapter back as lora-inspect does.
func analyze(t *testing.T, path string, stdin []byte) (*peft.Adapter, *peft.Config) {
	t.Helper()
	src, err := checkpoint.Open(path, bytes.NewReader(stdin))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cfg, err := peft.Parse(src.Files["adapter_config.json"])
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var ts []peft.Tensor
	for _, ti := range src.Tensors {
		if ti.DType != "F32" || !strings.HasPrefix(ti.Name, peft.Prefix) {
			t.Errorf("tensor %s %s", ti.Name, ti.DType)
		}
		ts = append(ts, peft.Tensor{Name: ti.Name, Shape: ti.Shape})
	}
	if src.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", src.Metadata)
	}
	a, err := peft.Analyze(ts, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Warnings) > 0 {
		t.Errorf("warnings: %v", a.Warnings)
	}
	return a, cfg
}

func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	tiny := fx(t, "peft", "tiny")
	g := loadGolden(t)
	ids := write(t, filepath.Join(dir, "ids.jsonl"), goldenJSONL(g))

	t.Run("golden through the binary", func(t *testing.T) {
		out := filepath.Join(dir, "golden")
		logf := filepath.Join(dir, "golden.jsonl")
		r := run(t, 0, nil, "--base", tiny, "--data", ids, "-o", out, "--init-from", fx(t, "peft", "train", "plain", "init"),
			"--lr", "5e-3", "--schedule", "constant", "--max-grad-norm", "0", "--max-steps", "6", "--batch", "2",
			"--shuffle=false", "--dropout", "0", "--log", logf)
		if !strings.Contains(r.Stdout, "adapter written to "+out) {
			t.Errorf("stdout %q", r.Stdout)
		}
		raw, _ := os.ReadFile(logf)
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if len(lines) != 7 {
			t.Fatalf("%d log lines", len(lines))
		}
		l, err := ReadLogFile(logf, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r := l.Run; r == nil || r.Method != MethodLoRA || r.Rank != 8 || r.Alpha != 16 || r.Steps != 6 || r.Base != tiny ||
			r.Data != ids || len(r.Targets) != 4 || r.Settings.LR != 5e-3 || r.Precision != "f32" {
			t.Errorf("run header %+v", l.Run)
		}
		for i, l := range lines[1:] {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"} {
				if _, ok := m[k]; !ok {
					t.Errorf("log line %d has no %q", i+1, k)
				}
			}
			if e := math.Abs(m["loss"].(float64)-g.Loss[i]) / g.Loss[i]; e > 1e-5 || m["step"].(float64) != float64(i+1) {
				t.Errorf("log line %d: %s", i+1, l)
			}
		}
		a, cfg := analyze(t, out, nil)
		if len(a.Modules) != 8 || a.Trainable != 8*8*(64+64)-2*2*8*32 || cfg.R != 8 || cfg.LoraAlpha != 16 {
			t.Errorf("read back: %d modules, %d parameters, r %d, alpha %g", len(a.Modules), a.Trainable, cfg.R, cfg.LoraAlpha)
		}
		ev := run(t, 0, nil, "eval", "--base", tiny, "--adapter", out, "--data", ids, "--json")
		var rep EvalReport
		if err := json.Unmarshal([]byte(ev.Stdout), &rep); err != nil {
			t.Fatal(err)
		}
		if e := math.Abs(rep.Loss-g.FinalLoss) / g.FinalLoss; e > 1e-5 || len(rep.Examples) != 2 || rep.Version != 1 {
			t.Errorf("eval %+v, want loss %v", rep, g.FinalLoss)
		}
	})

	t.Run("eval of the fixture logits", func(t *testing.T) {
		var b strings.Builder
		for _, e := range fixtureIDs(t) {
			j, _ := json.Marshal(e.IDs)
			fmt.Fprintf(&b, "{\"input_ids\": %s}\n", j)
		}
		data := write(t, filepath.Join(dir, "logit-ids.jsonl"), b.String())
		for _, c := range []struct{ logits, adapter string }{{"base", ""}, {"lora_adapter", "lora"}, {"dora_adapter", "dora"}} {
			args := []string{"eval", "--base", tiny, "--data", data, "--json"}
			if c.adapter != "" {
				args = append(args, "--adapter", fx(t, "peft", c.adapter))
			}
			var rep EvalReport
			if err := json.Unmarshal([]byte(run(t, 0, nil, args...).Stdout), &rep); err != nil {
				t.Fatal(err)
			}
			_, want := fixtureCE(t, c.logits)
			if e := math.Abs(rep.Loss-want) / want; e > 1e-6 {
				t.Errorf("%s: eval loss %.9g, from the logits %.9g", c.logits, rep.Loss, want)
			}
		}
		text := run(t, 0, nil, "eval", "--base", tiny, "--data", data).Stdout
		if !strings.Contains(text, "over 22 scored tokens in 2 examples") || !strings.Contains(text, "line 2: loss") {
			t.Errorf("text report %q", text)
		}
	})

	t.Run("text forms, pack, single file", func(t *testing.T) {
		base := tinyWithTokenizer(t)
		data := write(t, filepath.Join(dir, "text.jsonl"), `{"text": "The quick brown fox jumps over the lazy dog."}
{"prompt": "2+2=", "completion": "4"}
{"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi!"}]}

{"text": "`+strings.Repeat("long line ", 10)+`"}
`)
		out := filepath.Join(dir, "text.safetensors")
		r := run(t, 0, nil, "--base", base, "--data", data, "-o", out, "--max-steps", "3", "--batch", "2", "--seq", "64",
			"--pack", "--dora", "--targets", "all-linear", "--rank", "4", "--alpha", "8", "--warmup", "0.5")
		if !strings.Contains(r.Stderr, "1 of 4 examples are longer than --seq 64") || !strings.Contains(r.Stderr, "line 5") {
			t.Errorf("truncation not reported: %q", r.Stderr)
		}
		a, cfg := analyze(t, out, nil)
		if len(a.Modules) != 14 || !cfg.UseDoRA || !a.Modules[0].DoRA() {
			t.Errorf("%d modules, dora %v", len(a.Modules), cfg.UseDoRA)
		}
		// The same run to stdout gives the same bytes.
		so := run(t, 0, nil, "--base", base, "--data", data, "-o", "-", "--max-steps", "3", "--batch", "2", "--seq", "64",
			"--pack", "--dora", "--targets", "all-linear", "--rank", "4", "--alpha", "8", "--warmup", "0.5", "--threads", "1")
		file, _ := os.ReadFile(out)
		if !bytes.Equal([]byte(so.Stdout), file) {
			t.Error("-o - differs from -o FILE (or --threads 1 from the default)")
		}
	})

	t.Run("resume", func(t *testing.T) {
		args := []string{"--base", tiny, "--data", ids, "--max-steps", "6", "--batch", "1", "--grad-accum", "1", "--lr", "1e-2",
			"--warmup", "2", "--weight-decay", "0.01", "--dropout", "0.1", "--targets", "q_proj,v_proj,down_proj"}
		full := filepath.Join(dir, "full")
		fullLog, partLog := filepath.Join(dir, "full.jsonl"), filepath.Join(dir, "part.jsonl")
		run(t, 0, nil, append(args, "-o", full, "--save-every", "4", "--log", fullLog)...)
		if _, err := os.Stat(filepath.Join(dir, "full.checkpoints", "checkpoint-4", StateFile)); err != nil {
			t.Fatal(err)
		}
		part := filepath.Join(dir, "part")
		r := run(t, 0, nil, append(args, "-o", part, "--stop-after", "3", "--save-dir", filepath.Join(dir, "ck"), "--log", partLog)...)
		if !strings.Contains(r.Stdout, "stopped after step 3 of 6") {
			t.Errorf("stdout %q", r.Stdout)
		}
		if _, err := os.Stat(part); !os.IsNotExist(err) {
			t.Error("a stopped run wrote its output")
		}
		// A stale log line beyond the checkpoint (as from a crash) is dropped.
		f, _ := os.OpenFile(partLog, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString(`{"step":4,"loss":1}` + "\n")
		f.Close()
		run(t, 0, nil, append(args, "-o", part, "--resume", filepath.Join(dir, "ck"), "--log", partLog)...)
		a, _ := os.ReadFile(filepath.Join(full, AdapterFile))
		b, _ := os.ReadFile(filepath.Join(part, AdapterFile))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Error("resumed adapter differs from the uninterrupted run")
		}
		// The logs agree on everything but the timings.
		strip := func(path string) []string {
			raw, _ := os.ReadFile(path)
			var out []string
			for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				var m map[string]any
				json.Unmarshal([]byte(l), &m)
				delete(m, "tokens_per_s")
				b, _ := json.Marshal(m)
				out = append(out, string(b))
			}
			return out
		}
		if a, b := strip(fullLog), strip(partLog); strings.Join(a, "\n") != strings.Join(b, "\n") || len(a) != 1+6 {
			t.Errorf("logs differ:\n%s\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
		r = run(t, 3, nil, append(args, "-o", part, "--resume", filepath.Join(dir, "ck", "checkpoint-3"), "--seed", "7")...)
		if !strings.Contains(r.Stderr, "seed was 42, now 7") {
			t.Errorf("stderr %q", r.Stderr)
		}
	})

	t.Run("errors", func(t *testing.T) {
		bad := write(t, filepath.Join(dir, "bad.jsonl"), "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 2, 999]}\n")
		r := run(t, 3, nil, "--base", tiny, "--data", bad, "-o", filepath.Join(dir, "x"))
		if !strings.Contains(r.Stderr, "bad.jsonl: line 2") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("stderr %q", r.Stderr)
		}
		r = run(t, 4, nil, "--base", tiny, "--data", ids, "-o", filepath.Join(dir, "x"), "--device", "cuda")
		if !strings.Contains(r.Stderr, "no usable GPU") {
			t.Errorf("stderr %q", r.Stderr)
		}
		run(t, 3, nil, "--base", tiny, "--data", write(t, filepath.Join(dir, "text1.jsonl"), "{\"text\": \"x\"}\n"), "-o", filepath.Join(dir, "x"))
		run(t, 2, nil, "--base", tiny, "--data", ids, "-o", filepath.Join(dir, "x"), "--schedule", "step")
		run(t, 2, nil, "--base", tiny, "--data", ids, "-o", filepath.Join(dir, "x"), "--eval-every", "2")
		run(t, 1, nil, "--base", filepath.Join(dir, "nope"), "--data", ids, "-o", filepath.Join(dir, "x"))
		if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
			t.Error("a failed run left its output")
		}
		if r := run(t, 0, nil, "--help"); !strings.Contains(r.Stdout, "Exit codes:") {
			t.Error("help")
		}
	})

	t.Run("bench", func(t *testing.T) {
		r := run(t, 0, nil, "bench", "--shape", filepath.Join(tiny, "config.json"), "--batch", "2", "--seq", "16", "--steps", "2", "--json")
		var b BenchResult
		if err := json.Unmarshal([]byte(r.Stdout), &b); err != nil {
			t.Fatal(err)
		}
		if b.TokensPerS <= 0 || b.Params != 123200-16384 || b.Trainable != 2*4*16*(64+64)-2*2*16*32 || b.FLOPPerS <= 0 {
			t.Errorf("%+v", b)
		}
		r = run(t, 4, nil, "bench", "--shape", "llama3-8b")
		if !strings.Contains(r.Stderr, "--force") {
			t.Errorf("stderr %q", r.Stderr)
		}
	})
}

// TestChatTemplateFlags: --chat-template-kwargs and --enable-thinking reach
// the chat template in eval and in training (and the run's log records
// them); a bad or contradicting value is a usage error.
func TestChatTemplateFlags(t *testing.T) {
	base := tinyWithTokenizer(t)
	think := "{% if enable_thinking is defined and not enable_thinking %}{{ '<think></think>' }}{% endif %}"
	tmpl := "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|begin|>assistant\\n' }}" + think +
		"{{ m['content'] + '<|end|>' }}{% else %}{{ '<|begin|>' + m['role'] + '\\n' + m['content'] + '<|end|>' }}{% endif %}{% endfor %}" +
		"{% if add_generation_prompt %}{{ '<|begin|>assistant\\n' }}" + think + "{% endif %}"
	cfg, _ := json.Marshal(map[string]any{"bos_token": "<|begin|>", "eos_token": "<|end|>", "pad_token": "<|pad|>", "chat_template": tmpl})
	write(t, filepath.Join(base, "tokenizer_config.json"), string(cfg))
	data := write(t, filepath.Join(t.TempDir(), "chat.jsonl"),
		`{"messages": [{"role": "user", "content": "2 4 6"}, {"role": "assistant", "content": "8 10"}]}`+"\n")
	eval := func(flags ...string) EvalResult {
		t.Helper()
		var rep EvalReport
		r := run(t, 0, nil, append([]string{"eval", "--base", base, "--data", data, "--json"}, flags...)...)
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
			t.Fatal(err)
		}
		return rep.EvalResult
	}
	plain, off := eval(), eval("--enable-thinking=false")
	if plain.Targets != off.Targets || plain.Loss == off.Loss {
		t.Errorf("--enable-thinking=false: loss %v over %d targets, without it %v over %d (want another loss, the same targets)",
			off.Loss, off.Targets, plain.Loss, plain.Targets)
	}
	if kw := eval("--chat-template-kwargs", `{"enable_thinking": false}`); kw.Loss != off.Loss {
		t.Errorf("--chat-template-kwargs: loss %v, --enable-thinking=false %v", kw.Loss, off.Loss)
	}
	if on := eval("--enable-thinking"); on.Loss != plain.Loss {
		t.Errorf("--enable-thinking: loss %v, without it %v", on.Loss, plain.Loss)
	}

	logf := filepath.Join(t.TempDir(), "log.jsonl")
	run(t, 0, nil, "--base", base, "--data", data, "-o", filepath.Join(t.TempDir(), "a"), "--max-steps", "1", "--log", logf,
		"--chat-template-kwargs", `{"enable_thinking": false, "date_string": "1 Jan 2026"}`)
	l, err := ReadLogFile(logf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Run == nil || l.Run.ChatTemplateKwargs["enable_thinking"] != false || l.Run.ChatTemplateKwargs["date_string"] != "1 Jan 2026" {
		t.Errorf("run header %+v", l.Run)
	}
	if math.Abs(l.Steps[0].Loss-off.Loss) > 1e-5*off.Loss {
		t.Errorf("first training loss %v, eval loss with the same template variables %v", l.Steps[0].Loss, off.Loss)
	}

	for _, c := range []struct{ flags []string }{
		{[]string{"--chat-template-kwargs", `{"enable_thinking": false`}},
		{[]string{"--chat-template-kwargs", `[]`}},
		{[]string{"--chat-template-kwargs", `{"messages": []}`}},
		{[]string{"--chat-template-kwargs", `{"enable_thinking": true}`, "--enable-thinking=false"}},
	} {
		r := run(t, 2, nil, append([]string{"eval", "--base", base, "--data", data}, c.flags...)...)
		if !strings.Contains(r.Stderr, "--chat-template-kwargs") && !strings.Contains(r.Stderr, "--enable-thinking") {
			t.Errorf("%v: %s", c.flags, r.Stderr)
		}
	}
}
