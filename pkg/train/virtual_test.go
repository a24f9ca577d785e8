package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/peft"
)

// promptGolden is adapter_config.json as PEFT's PromptTuningConfig
// save_pretrained writes it for fixtures/peft/tiny (hidden 64, 4 heads, 2
// layers) and 4 virtual tokens with RANDOM init, after get_peft_model has
// filled token_dim, num_attention_heads, num_layers and
// num_transformer_submodules (_prepare_prompt_learning_config, CAUSAL_LM:
// 1): json.dumps(indent=2, sort_keys=True), without the recent keys
// (peft_version, auto_mapping, modules_to_save), as lorakit's LoRA configs.
const promptGolden = `{
  "base_model_name_or_path": "BASE",
  "inference_mode": true,
  "num_attention_heads": 4,
  "num_layers": 2,
  "num_transformer_submodules": 1,
  "num_virtual_tokens": 4,
  "peft_type": "PROMPT_TUNING",
  "prompt_tuning_init": "RANDOM",
  "prompt_tuning_init_text": null,
  "revision": null,
  "task_type": "CAUSAL_LM",
  "token_dim": 64,
  "tokenizer_kwargs": null,
  "tokenizer_name_or_path": null
}`

// prefixGolden is PrefixTuningConfig's adapter_config.json for the same
// model and 4 virtual tokens: _prepare_prompt_learning_config's GQA rule
// makes token_dim 64 / 4 · 2 = 32 and num_attention_heads the 2 KV heads;
// encoder_hidden_size defaults to token_dim; prefix_projection false.
const prefixGolden = `{
  "base_model_name_or_path": "BASE",
  "encoder_hidden_size": 32,
  "inference_mode": true,
  "num_attention_heads": 2,
  "num_layers": 2,
  "num_transformer_submodules": 1,
  "num_virtual_tokens": 4,
  "peft_type": "PREFIX_TUNING",
  "prefix_projection": false,
  "revision": null,
  "task_type": "CAUSAL_LM",
  "token_dim": 32
}`

func TestPrefixConfig(t *testing.T) {
	a, err := NewVirtualAdapter(tinyConfig(t), VirtualOptions{Method: MethodPrefix, Tokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	a.Config.BaseModelNameOrPath = "BASE"
	if got, _ := a.ConfigJSON(); string(got) != prefixGolden {
		t.Errorf("config:\n%s\nwant:\n%s", got, prefixGolden)
	}
	// Gemma 2's head_dim is not hidden/heads: PEFT's prefix cannot fit.
	g, err := arch.ParseConfig([]byte(`{"model_type": "gemma2", "hidden_size": 3584, "intermediate_size": 14336,
		"num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "num_hidden_layers": 2, "vocab_size": 256}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVirtualAdapter(g, VirtualOptions{Method: MethodPrefix, Tokens: 4}); err == nil || !strings.Contains(err.Error(), "head_dim 256") {
		t.Errorf("gemma2 prefix: %v", err)
	}
}

func TestPromptConfig(t *testing.T) {
	cfg := tinyConfig(t)
	a, err := NewVirtualAdapter(cfg, VirtualOptions{Method: MethodPrompt, Tokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	a.Config.BaseModelNameOrPath = "BASE"
	got, err := a.ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != promptGolden {
		t.Errorf("config:\n%s\nwant:\n%s", got, promptGolden)
	}
	// TEXT init: PromptTuningConfig.__post_init__ requires the text and a
	// tokenizer path.
	a, err = NewVirtualAdapter(cfg, VirtualOptions{Method: MethodPrompt, Tokens: 4, InitText: "Classify: ", Tokenizer: "/m/base"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = a.ConfigJSON()
	for _, want := range []string{`"prompt_tuning_init": "TEXT"`, `"prompt_tuning_init_text": "Classify: "`, `"tokenizer_name_or_path": "/m/base"`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("TEXT config has no %s:\n%s", want, got)
		}
	}
	if _, err := NewVirtualAdapter(cfg, VirtualOptions{Method: MethodPrompt}); !errors.Is(err, ErrSettings) {
		t.Errorf("0 virtual tokens: %v", err)
	}
}

// TestPromptInitIDs: PromptEmbedding's TEXT rule, cut to P or repeated
// ⌈P/n⌉ times then cut.
func TestPromptInitIDs(t *testing.T) {
	for _, c := range []struct {
		ids  []int
		p    int
		want []int32
	}{
		{[]int{1, 2, 3}, 2, []int32{1, 2}},
		{[]int{1, 2, 3}, 3, []int32{1, 2, 3}},
		{[]int{1, 2, 3}, 7, []int32{1, 2, 3, 1, 2, 3, 1}},
		{[]int{5}, 3, []int32{5, 5, 5}},
		{nil, 3, nil},
	} {
		if got := PromptInitIDs(c.ids, c.p); !slices.Equal(got, c.want) {
			t.Errorf("PromptInitIDs(%v, %d) = %v, want %v", c.ids, c.p, got, c.want)
		}
	}
}

// TestPromptTextInit: TEXT init takes the embedding rows of the text's ids
// (BOS included, as tokenizer(text)), tiled to P; RANDOM init is N(0, 1)
// and depends on the seed.
func TestPromptTextInit(t *testing.T) {
	be := newCPU()
	m := newModel(t, be, "peft/tiny", &Adapter{}, nil, llama.Options{})
	tok := testTokenizer(t)
	a, err := NewVirtualAdapter(m.Config(), VirtualOptions{Method: MethodPrompt, Tokens: 5, InitText: "ab", Tokenizer: "x"})
	if err != nil {
		t.Fatal(err)
	}
	load, err := a.VirtualInitLoader(m, tok, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, shape, err := load(llama.PromptEmbeddings)
	if err != nil || !slices.Equal(shape, []int{5, 64}) {
		t.Fatal(shape, err)
	}
	emb := float32s(t, openST(t, fx(t, "peft", "tiny", "model.safetensors")), "model.embed_tokens.weight")
	for i, id := range []int{tokBegin, 'a', 'b', tokBegin, 'a'} {
		if !slices.Equal(got[i*64:(i+1)*64], emb[id*64:(id+1)*64]) {
			t.Errorf("virtual token %d is not the embedding of id %d", i, id)
		}
	}
	r := &Adapter{Virtual: a.Virtual, PromptInit: PromptInitRandom}
	l1, _ := r.VirtualInitLoader(m, nil, 1)
	l2, _ := r.VirtualInitLoader(m, nil, 2)
	v1, _, _ := l1(llama.PromptEmbeddings)
	v2, _, _ := l2(llama.PromptEmbeddings)
	var mean, sq float64
	for _, v := range v1 {
		mean += float64(v)
		sq += float64(v) * float64(v)
	}
	mean, sq = mean/float64(len(v1)), sq/float64(len(v1))
	if slices.Equal(v1, v2) || mean < -0.15 || mean > 0.15 || sq < 0.8 || sq > 1.2 {
		t.Errorf("RANDOM init: mean %.3g, mean square %.3g (N(0, 1)); seeds differ: %v", mean, sq, !slices.Equal(v1, v2))
	}
}

// TestVirtualRun trains prompt and prefix tuning through Run: the adapter
// holds one F32 tensor "prompt_embeddings" (get_peft_model_state_dict's
// key, no base_model.model. prefix), [P, hidden] for a prompt, [P,
// layers·2·kv] for a prefix; it reads back with OpenAdapter (its config
// byte for byte), evaluates better than before training, resumes bit for
// bit, and the options that do not apply are refused.
func TestVirtualRun(t *testing.T) {
	base := tinyWithTokenizer(t)
	for _, c := range []struct {
		method, text, peftType string
		width                  int64
	}{
		{MethodPrompt, "hi", peft.TypePromptTuning, 64},
		{MethodPrefix, "", peft.TypePrefixTuning, 2 * 2 * 32},
	} {
		t.Run(c.method, func(t *testing.T) {
			dir := t.TempDir()
			data := write(t, filepath.Join(dir, "ids.jsonl"), goldenJSONL(loadGolden(t)))
			opts := func(out string) Options {
				o := DefaultOptions()
				o.Base, o.Data, o.Output, o.Method, o.VirtualTokens, o.InitText = base, data, out, c.method, 3, c.text
				o.MaxSteps, o.Batch, o.Seq, o.Device, o.LR, o.Shuffle = 4, 1, 64, "cpu", 1e-2, false
				return o
			}
			out := filepath.Join(dir, "adapter")
			o := opts(out)
			o.LogFile = filepath.Join(dir, "log.jsonl")
			steps := 0
			o.OnStep = func(StepResult, int) { steps++ }
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			l, err := ReadLogFile(o.LogFile, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r := l.Run; r == nil || r.Method != c.method || r.VirtualTokens != 3 || r.Rank != 0 || len(l.Steps) != 4 || steps != 4 {
				t.Errorf("log %+v with %d steps; OnStep called %d times", l.Run, len(l.Steps), steps)
			}
			o = opts(filepath.Join(dir, "untrained"))
			o.LR = 1e-30
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			f := openST(t, filepath.Join(out, "adapter_model.safetensors"))
			if n := len(f.Header.Tensors); n != 1 {
				t.Fatalf("%d tensors", n)
			}
			if info, _ := f.Info(llama.PromptEmbeddings); info.DType != "F32" || !slices.Equal(info.Shape, []int64{3, c.width}) {
				t.Errorf("prompt_embeddings %s %v", info.DType, info.Shape)
			}
			raw, _ := os.ReadFile(filepath.Join(out, "adapter_config.json"))
			pc, err := peft.Parse(raw)
			if err != nil || pc.PeftType != c.peftType || pc.NumVirtualTokens != 3 || pc.BaseModelNameOrPath != base {
				t.Fatalf("config %s: %v", raw, err)
			}
			ad, _, err := OpenAdapter(out, nil, tinyConfig(t), 0)
			if err != nil || ad.Virtual != (llama.Virtual{Method: c.method, Tokens: 3}) || ad.PromptInitText != c.text {
				t.Fatalf("read back: %+v, %v", ad, err)
			}
			if again, _ := ad.ConfigJSON(); string(again) != string(raw) {
				t.Errorf("config does not round-trip:\n%s\n%s", again, raw)
			}
			if c.text != "" {
				if v, _ := pc.ExtraValue("tokenizer_name_or_path"); string(v) != `"`+base+`"` {
					t.Errorf("tokenizer_name_or_path %s", v)
				}
			}
			eval := func(adapter string) *EvalReport {
				r, err := Eval(context.Background(), EvalOptions{Base: base, Adapter: adapter, Data: data, Seq: 64, Device: "cpu"})
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			ev, ev0 := eval(out), eval(filepath.Join(dir, "untrained"))
			if !(ev.Loss < ev0.Loss) || ev.Targets != ev0.Targets {
				t.Errorf("eval loss %g over %d targets after training; %g over %d before", ev.Loss, ev.Targets, ev0.Loss, ev0.Targets)
			}

			// Resume: stop after 2 steps, continue, same bytes.
			o = opts(filepath.Join(dir, "resumed"))
			o.StopAfter, o.SaveDir = 2, filepath.Join(dir, "ck")
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			o = opts(filepath.Join(dir, "resumed"))
			o.Resume = filepath.Join(dir, "ck")
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			a1, _ := os.ReadFile(filepath.Join(out, "adapter_model.safetensors"))
			a2, _ := os.ReadFile(filepath.Join(dir, "resumed", "adapter_model.safetensors"))
			if string(a1) != string(a2) {
				t.Error("a resumed run differs from the straight run")
			}

			refusals := []struct {
				name string
				edit func(*Options)
				want string
			}{
				{"rank", func(o *Options) { o.Rank = 4 }, "--method " + c.method + " takes no --rank"},
				{"targets", func(o *Options) { o.Targets = []string{"q_proj"} }, "takes no --targets"},
				{"dora", func(o *Options) { o.DoRA = true }, "--dora"},
				{"pack", func(o *Options) { o.Pack = true }, "--pack with --method " + c.method},
				{"no tokens", func(o *Options) { o.VirtualTokens = 0 }, "needs --virtual-tokens"},
				{"tokens with lora", func(o *Options) { o.Method = MethodLoRA }, "are for --method prompt"},
			}
			if c.method == MethodPrompt {
				refusals = append(refusals, struct {
					name string
					edit func(*Options)
					want string
				}{"text from stdin", func(o *Options) { o.Base = "-" }, "tokenizer_name_or_path"})
			} else {
				refusals = append(refusals, struct {
					name string
					edit func(*Options)
					want string
				}{"init text", func(o *Options) { o.InitText = "x" }, "--init-text is for --method prompt"})
			}
			for _, r := range refusals {
				o := opts(filepath.Join(dir, "refused"))
				r.edit(&o)
				_, err := Run(context.Background(), o)
				if !errors.Is(err, errclass.Usage) || !strings.Contains(err.Error(), r.want) {
					t.Errorf("%s: %v, want a usage error with %q", r.name, err, r.want)
				}
			}
		})
	}
}
