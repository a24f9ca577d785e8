package inspect

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/peft"
)

// WriteText renders r for a person.
func WriteText(w io.Writer, r *Report) error {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	title := r.Path
	if title == "" {
		title = r.Kind
	}
	p("%s: %s", title, r.Kind)
	if r.Source != "" {
		p("  source          %s", r.Source)
	}
	switch r.Kind {
	case "adapter":
		p("  peft type       %s", r.PEFTType)
		if r.BaseModel != "" {
			p("  base model      %s", r.BaseModel)
		}
		var variants []string
		if r.DoRA {
			variants = append(variants, "DoRA")
		}
		if r.RSLoRA {
			variants = append(variants, "rsLoRA")
		}
		if len(variants) > 0 {
			p("  variant         %s", strings.Join(variants, ", "))
		}
		if len(r.Layers) > 0 {
			p("  layers          %s (%d)", spans(r.Layers), len(r.Layers))
		}
		if len(r.ModulesToSave) > 0 {
			p("  modules_to_save %s", strings.Join(r.ModulesToSave, ", "))
		}
		if pl := r.Prompt; pl != nil {
			writePrompt(p, pl, r.TrainableParams)
		} else {
			if r.VirtualTokens > 0 {
				p("  virtual tokens  %d", r.VirtualTokens)
			}
			p("  parameters      %s", num.Thousands(r.TrainableParams))
		}
		for _, dt := range sortedKeys(r.DTypes) {
			p("  dtype           %s (%s parameters)", dt, num.Thousands(r.DTypes[dt]))
		}
		p("  size            %s (%s bytes)", num.Bytes(r.Bytes, 2), num.Thousands(r.Bytes))
		writeModules(w, r.Modules)
	case "model", "quantized-model":
		writeArchitecture(p, r)
		p("  parameters      %s", num.Thousands(r.TotalParams))
		if b := r.Breakdown; b != nil {
			for _, part := range []struct {
				name string
				n    int64
			}{{"embeddings", b.Embeddings}, {"attention", b.Attention}, {"mlp", b.MLP}, {"norms", b.Norms}, {"lm_head", b.LMHead}, {"other", b.Other}} {
				if part.n > 0 {
					p("    %-13s %15s  %5.2f%%", part.name, num.Thousands(part.n), 100*float64(part.n)/float64(max(r.TotalParams, 1)))
				}
			}
		}
		for _, dt := range sortedKeys(r.DTypes) {
			p("  dtype           %-5s %s parameters", dt, num.Thousands(r.DTypes[dt]))
		}
		if r.Kind == "quantized-model" {
			dq := "no"
			if r.DoubleQuant != nil && *r.DoubleQuant {
				dq = "yes"
			}
			p("  quantization    %s, block %d, double quant %s, %.3f bits per quantized parameter (%s parameters)", r.QuantType, r.Blocksize, dq, r.BitsPerParam, num.Thousands(r.QuantizedParams))
		}
		p("  size            %s (%s bytes)", num.Bytes(r.Bytes, 2), num.Thousands(r.Bytes))
	case "gguf":
		if g := r.GGUF; g != nil {
			kind := g.Type
			if kind == "" {
				kind = "model"
			}
			p("  gguf            v%d %s, architecture %s", g.Version, kind, g.Architecture)
			if g.Name != "" {
				p("  name            %s", g.Name)
			}
			if g.FileType != nil {
				p("  file type       %s", g.FileType)
			}
			if g.LoRAAlpha != nil {
				p("  lora alpha      %g", *g.LoRAAlpha)
			}
			if g.VocabSize > 0 {
				p("  vocab           %d (%s)", g.VocabSize, g.TokenizerModel)
			}
			var types []string
			for _, t := range sortedKeys(g.TensorTypes) {
				types = append(types, fmt.Sprintf("%s×%d", t, g.TensorTypes[t]))
			}
			p("  tensors         %d (%s)", g.TensorCount, strings.Join(types, ", "))
		}
		p("  parameters      %s", num.Thousands(r.TotalParams))
		p("  size            %s (%s bytes)", num.Bytes(r.Bytes, 2), num.Thousands(r.Bytes))
	case "plan":
		if r.Architecture != "" {
			p("  base            %s, %s parameters", r.Architecture, num.Thousands(r.TotalParams))
		}
		writeArchitecture(p, r)
		if c := r.Config; c != nil && len(c.Targets) > 0 {
			p("  targets         %s", strings.Join(c.Targets, ", "))
		}
		p("  trainable       %s (%.4f%% of %s)", num.Thousands(r.TrainableParams), r.Percent, num.Thousands(r.TotalParams))
		p("  PEFT prints     %s", peft.FormatTrainable(r.TrainableParams, r.TotalParams+r.TrainableParams))
		p("  adapter size    %s in bf16, %s in f32", num.Bytes(r.AdapterBytes["bf16"], 2), num.Bytes(r.AdapterBytes["f32"], 2))
		writeModules(w, r.Modules)
		if m := r.Memory; m != nil {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "  training memory\tweights\tadapter\tgradients\tAdamW\tactivations\ttotal\t")
			for _, row := range []struct {
				name string
				m    MemoryParts
			}{{"LoRA (bf16 base)", m.LoRA}, {"QLoRA (NF4+DQ)", m.QLoRA}} {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.name, num.Bytes(row.m.Weights, 2), num.Bytes(row.m.Adapter, 2),
					num.Bytes(row.m.Gradients, 2), num.Bytes(row.m.Optimizer, 2), num.Bytes(row.m.Activations, 2), num.Bytes(row.m.Total, 2))
			}
			tw.Flush()
		}
	}
	if len(r.Deltas) > 0 {
		writeDeltas(w, r.Deltas)
	}
	if len(r.Tensors) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  name\tdtype\tshape\tbytes\tparams")
		for _, t := range r.Tensors {
			fmt.Fprintf(tw, "  %s\t%s\t%v\t%s\t%s\n", t.Name, t.DType, t.Shape, num.Thousands(t.Bytes), num.Thousands(t.Params))
		}
		tw.Flush()
	}
	for _, warn := range r.Warnings {
		p("  warning: %s", warn)
	}
	return nil
}

// writeArchitecture writes the model_type, shape, specifics and rope lines
// of a model or plan report.
func writeArchitecture(p func(string, ...any), r *Report) {
	c := r.Config
	if r.Architecture != "" || r.ModelType != "" {
		what := "model_type " + cmp.Or(r.ModelType, "unset")
		switch {
		case c != nil && c.Family != "":
			what += ": " + c.Family
			if c.GGUF != "" {
				what += ", GGUF " + c.GGUF
			}
		case r.ModelType != "":
			what += ": not in lorakit's registry (" + arch.SupportedList() + "); inspect, quantize and merge work by tensor names"
		}
		if r.Kind != "plan" {
			p("  architecture    %s (%s)", cmp.Or(r.Architecture, "-"), what)
		} else {
			p("  model           %s", what)
		}
	}
	if c == nil {
		return
	}
	var shape []string
	for _, f := range []struct {
		n      int
		format string
	}{{c.Hidden, "hidden %d"}, {c.Intermediate, "intermediate %d"}, {c.Layers, "%d layers"}, {c.Heads, "%d heads"},
		{c.KVHeads, "%d kv heads"}, {c.HeadDim, "head_dim %d"}, {c.Vocab, "vocab %d"}, {c.MaxPositions, "context %d"}} {
		if f.n > 0 {
			shape = append(shape, fmt.Sprintf(f.format, f.n))
		}
	}
	if c.Tied {
		shape = append(shape, "tied embeddings")
	}
	if len(shape) > 0 {
		p("  shape           %s", strings.Join(shape, ", "))
	}
	if len(c.Specifics) > 0 {
		p("  specifics       %s", strings.Join(c.Specifics, "; "))
	}
	switch {
	case len(c.Ropes) > 0:
		p("  rope            %s", strings.Join(c.Ropes, "; "))
	case c.RopeTheta > 0:
		p("  rope            θ=%g", c.RopeTheta)
	}
}

func writeModules(w io.Writer, ms []Module) {
	if len(ms) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  module\trank\talpha\tscaling\tlayers\tparameters\t")
	for _, m := range ms {
		name := m.Name
		if m.DoRA {
			name += " (DoRA)"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%g\t%g\t%d\t%s\t\n", name, m.Rank, m.Alpha, m.Scaling, m.Count, num.Thousands(m.Params))
	}
	tw.Flush()
}

// spans renders sorted layer indices as ranges: 0-31, 40.
func spans(xs []int) string {
	var parts []string
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(xs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", xs[i], xs[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// writePrompt renders a prompt-learning adapter's section.
func writePrompt(p func(string, ...any), pl *PromptLearning, params int64) {
	p("  method          %s", pl.Method)
	p("  virtual tokens  %d", pl.VirtualTokens)
	switch {
	case pl.Method == "prefix tuning":
		p("  layers          %d, each with %d past keys and values of %d (%d kv heads × head dim %d)",
			pl.Layers, pl.VirtualTokens, pl.TokenDim, pl.Heads, pl.HeadDim)
	case pl.TokenDim > 0:
		p("  token dim       %d (the model's hidden size; the model has %d layers, %d attention heads)", pl.TokenDim, pl.Layers, pl.Heads)
	}
	if pl.PrefixProjection {
		p("  projection      prefix_projection (an MLP makes the keys and values)")
	}
	switch {
	case pl.Init == "TEXT":
		p("  init            TEXT %q", pl.InitText)
	case pl.Init != "":
		p("  init            %s", pl.Init)
	}
	if pl.BaseParams > 0 {
		p("  parameters      %s (%.4f%% of the base's %s)", num.Thousands(params), pl.Percent, num.Thousands(pl.BaseParams))
	} else {
		p("  parameters      %s", num.Thousands(params))
	}
	p("  use             %s", pl.Use)
}
