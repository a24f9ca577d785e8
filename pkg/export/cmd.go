package export

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/output"
)

// Cmd is the lora-gguf command line: a model or an adapter in, a GGUF file out.
type Cmd struct {
	Input   string `arg:"" name:"in" help:"A model (HF folder, .safetensors file, 4-bit bitsandbytes checkpoint) or a PEFT LoRA adapter (folder or file), or '-' for a safetensors stream on stdin."`
	Output  string `short:"o" required:"" placeholder:"OUT.gguf" help:"The GGUF file to write (atomically), or '-' for stdout."`
	Type    string `short:"t" default:"auto" enum:"auto,f32,f16,bf16,q8_0,q4_0" help:"Type of the 2-D weights: auto (models: bf16 for bf16 checkpoints, else f16; adapters: f32), f32, f16, bf16, q8_0, q4_0. Norms and 1-D tensors are always f32; adapters take f32, f16 or bf16."`
	Base    string `placeholder:"MODEL" help:"For an adapter: its base model (HF folder, .safetensors file, GGUF model, config.json or a built-in shape), for the head counts and shapes."`
	Name    string `help:"general.name (default: the input's folder or file name)."`
	NoVocab bool   `name:"no-vocab" help:"Write no vocabulary (tokenizer.ggml.model no_vocab): llama.cpp decodes token ids but cannot tokenize text."`
	Pre     string `placeholder:"NAME" help:"tokenizer.ggml.pre for a byte-level BPE tokenizer whose pre-tokenizer lorakit does not recognise (e.g. llama-bpe)."`
	Threads int    `default:"0" help:"Conversion threads (0: all cores). The output does not depend on it."`
	JSON    bool   `help:"Print the report as one JSON object."`
}

// Help is appended to --help.
func (c *Cmd) Help() string {
	return `A model becomes a GGUF model (general.architecture llama) with every metadata key
llama.cpp requires, the q/k row permutation, Llama 3.1 rope scaling as
rope_freqs.weight and the tokenizer of tokenizer.json (a minimal byte vocabulary
when there is none). An adapter becomes a GGUF LoRA adapter for llama.cpp's --lora,
with PEFT's scaling (alpha/r, rsLoRA, rank and alpha patterns) reproduced exactly.
DoRA adapters cannot be represented: merge them with lora-merge, then export the model.

The report goes to stdout (stderr when the GGUF goes to stdout).`
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

// Run exports the input.
func (c *Cmd) Run(ctx *cli.Context) error {
	if c.Input == "-" && c.Base == "-" {
		return errclass.Usagef("'-' (stdin) may be given once")
	}
	if st, err := os.Stat(c.Output); err == nil && st.IsDir() {
		return errclass.Usagef("-o %s is a folder; name the GGUF file to write", c.Output)
	}
	src, err := checkpoint.Open(c.Input, ctx.Stdin)
	if err != nil {
		return err
	}
	defer src.Close()
	var plan *Plan
	if src.IsAdapter() {
		plan, err = c.planAdapter(src)
	} else {
		if c.Base != "" {
			return errclass.Usagef("--base is for adapters; %s is a model", c.Input)
		}
		o := ModelOptions{Name: c.Name, NoVocab: c.NoVocab, Pre: c.Pre}
		if c.Type == "auto" {
			o.Auto = true
		} else if o.Type, err = gguf.ParseType(c.Type); err != nil {
			return errclass.Usagef("--type %s", c.Type)
		}
		plan, err = PlanModel(src, o)
	}
	if err != nil {
		return err
	}
	for _, w := range plan.Warnings {
		ctx.Warnf("%s", w)
	}
	out, err := output.Open(c.Output, output.Options{Stdout: ctx.Stdout, Cleanup: ctx.Cleanup})
	if err != nil {
		return err
	}
	start := time.Now()
	prog := ctx.NewProgress("lora-gguf", plan.Size())
	st, err := plan.Write(ctx, out.Writer, WriteOptions{Threads: c.Threads, Progress: prog.Add})
	prog.Done()
	if err != nil {
		out.Abort()
		return err
	}
	if err := out.Commit(); err != nil {
		return err
	}
	r := c.report(plan, st, time.Since(start))
	for name, n := range st.F16Overflows {
		ctx.Warnf("%s: %d values beyond ±65504 became ±Inf in F16 (use --type bf16 or f32)", name, n)
	}
	if ctx.Quiet {
		return nil
	}
	w := ctx.Stdout
	if out.Stdout {
		w = ctx.Stderr
	}
	if c.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return writeReport(w, r)
}

func (c *Cmd) planAdapter(src *checkpoint.Source) (*Plan, error) {
	if c.NoVocab || c.Pre != "" {
		return nil, errclass.Usagef("--no-vocab and --pre are for models; %s is an adapter", c.Input)
	}
	var base *Base
	var err error
	switch {
	case c.Base != "":
		base, err = OpenBase(c.Base)
	case src.Files["config.json"] != nil:
		var cfg *checkpoint.Config
		if cfg, err = src.Config(); err == nil {
			base, err = BaseFromConfig(c.Input+" (carried config.json)", cfg)
		}
	default:
		return nil, errclass.Usagef("%s is an adapter: give its base model with --base MODEL (for the head counts and shapes)", c.Input)
	}
	if err != nil {
		return nil, err
	}
	o := AdapterOptions{Name: c.Name, Type: gguf.TypeF32}
	switch c.Type {
	case "auto", "f32":
	case "f16", "bf16":
		o.Type, _ = gguf.ParseType(c.Type)
	default:
		return nil, errclass.Usagef("--type %s: adapters are written as f32, f16 or bf16 (llama.cpp's export-lora refuses quantized adapters)", c.Type)
	}
	return PlanAdapter(src, base, o)
}

func (c *Cmd) report(p *Plan, st *Stats, el time.Duration) *Report {
	r := &Report{Schema: 1, Kind: p.Kind, Input: c.Input, Output: c.Output, Tensors: len(p.Tensors),
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

func writeReport(w io.Writer, r *Report) error {
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
