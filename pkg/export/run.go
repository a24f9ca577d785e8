package export

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/tool"
)

// Options configure Run.
type Options struct {
	// Env gives the streams ("-" in and out), the cleanup registry, the
	// conversion threads, progress in bytes written, and warnings.
	tool.Env
	// Base is an adapter's base model (an HF folder or .safetensors file, a
	// GGUF model, a config.json or a built-in shape); "" takes the
	// config.json the adapter carries.
	Base string
	// Type is the type of the 2-D weights, unless Auto: models F32, F16,
	// BF16, Q8_0 or Q4_0; adapters F32, F16 or BF16.
	Type gguf.Type
	// Auto picks the type: for models BF16 when the checkpoint's weights are
	// bf16, else F16; for adapters F32.
	Auto bool
	// Name is general.name; "" derives it from the input path.
	Name string
	// NoVocab and Pre are ModelOptions' (models only).
	NoVocab bool
	Pre     string
}

// Report summarizes an export.
type Report struct {
	Schema   int            `json:"schema"`
	Kind     string         `json:"kind"`
	Input    string         `json:"input"`
	Output   string         `json:"output"`
	Name     string         `json:"name,omitempty"`
	Tensors  int            `json:"tensors"`
	Types    map[string]int `json:"types"`
	Params   int64          `json:"params"`
	Bytes    int64          `json:"bytes"`
	Seconds  float64        `json:"seconds"`
	Vocab    *VocabReport   `json:"vocab,omitempty"`
	Alpha    *float32       `json:"alpha,omitempty"`
	Notes    []string       `json:"notes,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
}

// VocabReport describes the tokenizer metadata written.
type VocabReport struct {
	Model   string `json:"model"`
	Pre     string `json:"pre,omitempty"`
	Tokens  int    `json:"tokens"`
	Merges  int    `json:"merges,omitempty"`
	Minimal bool   `json:"minimal,omitempty"`
}

// Run is lora-gguf as a function: it exports in (a model or a PEFT LoRA
// adapter: folder, .safetensors file, or "-" for a stream on Env.Stdin) to
// the GGUF file out ("-": Env.Stdout), atomically.
func Run(ctx context.Context, in, out string, o Options) (*Report, error) {
	if err := tool.StdinOnce(in, o.Base); err != nil {
		return nil, err
	}
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return nil, errclass.Usagef("-o %s is a folder; name the GGUF file to write", out)
	}
	src, err := checkpoint.Open(in, o.In())
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var plan *Plan
	if src.IsAdapter() {
		plan, err = planAdapter(src, in, o)
	} else {
		if o.Base != "" {
			return nil, errclass.Usagef("--base is for adapters; %s is a model", in)
		}
		plan, err = PlanModel(src, ModelOptions{Type: o.Type, Auto: o.Auto, Name: o.Name, NoVocab: o.NoVocab, Pre: o.Pre})
	}
	if err != nil {
		return nil, err
	}
	for _, w := range plan.Warnings {
		o.Warn("%s", w)
	}
	w, err := output.Open(out, o.Output())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	total := plan.Size()
	var done int64
	st, err := plan.Write(ctx, w.Writer, WriteOptions{Threads: o.Threads, TempDir: o.SpillDir(out), Progress: func(n int64) {
		done += n
		o.Report(done, total)
	}})
	if err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(st.F16Overflows)) {
		o.Warn("%s: %d values beyond ±65504 became ±Inf in F16 (use --type bf16 or f32)", name, st.F16Overflows[name])
	}
	return report(in, out, plan, st, time.Since(start)), nil
}

func planAdapter(src *checkpoint.Source, in string, o Options) (*Plan, error) {
	if o.NoVocab || o.Pre != "" {
		return nil, errclass.Usagef("--no-vocab and --pre are for models; %s is an adapter", in)
	}
	var base *Base
	var err error
	switch {
	case o.Base != "":
		base, err = OpenBase(o.Base)
	case src.Files["config.json"] != nil:
		var cfg *arch.Config
		if cfg, err = src.Config(); err == nil {
			base, err = BaseFromConfig(in+" (carried config.json)", cfg)
		}
	default:
		return nil, errclass.Usagef("%s is an adapter: give its base model with --base MODEL (for the head counts and shapes)", in)
	}
	if err != nil {
		return nil, err
	}
	ao := AdapterOptions{Name: o.Name, Type: gguf.TypeF32}
	switch {
	case o.Auto, o.Type == gguf.TypeF32:
	case o.Type == gguf.TypeF16, o.Type == gguf.TypeBF16:
		ao.Type = o.Type
	default:
		return nil, errclass.Usagef("--type %s: adapters are written as f32, f16 or bf16 (llama.cpp's export-lora refuses quantized adapters)", strings.ToLower(o.Type.String()))
	}
	return PlanAdapter(src, base, ao)
}

func report(in, out string, p *Plan, st *Stats, el time.Duration) *Report {
	r := &Report{Schema: 1, Kind: p.Kind, Input: in, Output: out, Tensors: len(p.Tensors),
		Types: map[string]int{}, Params: p.Params, Bytes: st.Bytes, Seconds: el.Seconds(), Notes: p.Notes, Warnings: p.Warnings}
	if v, ok := p.Metadata.String("general.name"); ok {
		r.Name = v
	}
	for _, t := range p.Tensors {
		r.Types[t.Type.String()]++
	}
	if v := p.Vocab; v != nil {
		r.Vocab = &VocabReport{Model: v.Model, Pre: v.Pre, Tokens: v.Size, Merges: len(v.Merges), Minimal: v.Minimal}
	}
	if a, ok := p.Metadata.Float32("adapter.lora.alpha"); ok {
		r.Alpha = &a
	}
	return r
}

// WriteText renders the report for a person.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s → %s (GGUF %s", r.Input, r.Output, r.Kind)
	if r.Name != "" {
		fmt.Fprintf(&b, " %q", r.Name)
	}
	b.WriteString(")\n")
	types := make([]string, 0, len(r.Types))
	for t := range r.Types {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool {
		return r.Types[types[i]] > r.Types[types[j]] || r.Types[types[i]] == r.Types[types[j]] && types[i] < types[j]
	})
	var ts []string
	for _, t := range types {
		ts = append(ts, fmt.Sprintf("%d %s", r.Types[t], t))
	}
	fmt.Fprintf(&b, "  tensors   %d (%s), %s parameters\n", r.Tensors, strings.Join(ts, ", "), num.Thousands(r.Params))
	if v := r.Vocab; v != nil {
		switch {
		case v.Model == TokenizerNoVocab:
			fmt.Fprintf(&b, "  vocab     none (%d token ids)\n", v.Tokens)
		case v.Minimal:
			fmt.Fprintf(&b, "  vocab     minimal byte vocabulary (%d tokens)\n", v.Tokens)
		default:
			fmt.Fprintf(&b, "  vocab     %s, pre %s, %d tokens", v.Model, v.Pre, v.Tokens)
			if v.Merges > 0 {
				fmt.Fprintf(&b, ", %d merges", v.Merges)
			}
			b.WriteString("\n")
		}
	}
	if r.Alpha != nil {
		fmt.Fprintf(&b, "  alpha     %g\n", *r.Alpha)
	}
	rate := float64(r.Bytes) / max(r.Seconds, 1e-9) / 1e6
	fmt.Fprintf(&b, "  written   %s in %.2f s (%.0f MB/s)\n", num.Bytes(r.Bytes, 1), r.Seconds, rate)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note      %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
