package inspect

import (
	"fmt"
	"sort"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/peft"
)

// Adapter reports a PEFT adapter: its config, modules and parameter counts,
// and with o.Deltas the weight-delta statistics of every LoRA module.
func Adapter(src *checkpoint.Source, o Options) (*Report, error) {
	r := &Report{Schema: Schema, Kind: "adapter", Path: src.Path, Source: src.Kind.String(), Bytes: src.Bytes,
		DTypes: map[string]int64{}}
	ma, err := model.AdapterFrom(src, model.AdapterOptions{Lenient: true, Validate: peft.ValidateOptions{AllowPromptLearning: true}})
	if err != nil {
		return nil, err
	}
	cfg, a := ma.Config, ma.Analysis
	if c := cfg; c != nil {
		r.PEFTType, r.BaseModel, r.RSLoRA = c.PeftType, c.BaseModelNameOrPath, c.UseRSLoRA
		r.VirtualTokens = c.NumVirtualTokens
		if ma.Problem != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("lorakit cannot apply this adapter: %v", ma.Problem))
		}
	} else {
		r.Warnings = append(r.Warnings, "no adapter_config.json: alpha (hence scaling) unknown; assuming alpha = r")
	}
	for _, t := range src.Tensors {
		r.DTypes[string(t.DType)] += t.NumElements()
	}
	if r.PEFTType == "" {
		r.PEFTType = inferType(a)
	}
	r.TrainableParams, r.TotalParams = a.Trainable, a.Trainable
	for _, w := range a.Warnings {
		r.Warnings = append(r.Warnings, w.String())
	}
	layers := map[int]bool{}
	type rowKey struct {
		typ   string
		rank  int
		alpha float64
		dora  bool
	}
	rows := map[rowKey]*Module{}
	var order []rowKey
	maxRank := 0
	for i := range a.Modules {
		m := &a.Modules[i]
		if cfg == nil && m.Rank > 0 {
			m.Alpha, m.Scaling = float64(m.Rank), 1
		}
		if m.Layer >= 0 {
			layers[m.Layer] = true
		}
		maxRank = max(maxRank, m.Rank)
		k := rowKey{m.Type, m.Rank, m.Alpha, m.DoRA()}
		row, ok := rows[k]
		if !ok {
			row = &Module{Name: m.Type, Rank: m.Rank, Alpha: m.Alpha, Scaling: float64(m.Scaling), DoRA: m.DoRA(), In: int(m.In), Out: int(m.Out)}
			rows[k] = row
			order = append(order, k)
		}
		if row.In != int(m.In) || row.Out != int(m.Out) {
			row.In, row.Out = 0, 0 // differing shapes across layers
		}
		row.Count++
		row.Params += m.Params
		r.DoRA = r.DoRA || m.DoRA()
	}
	sort.SliceStable(order, func(i, j int) bool { return arch.ModuleOrder(order[i].typ) < arch.ModuleOrder(order[j].typ) })
	for _, k := range order {
		r.Modules = append(r.Modules, *rows[k])
	}
	for l := range layers {
		r.Layers = append(r.Layers, l)
	}
	sort.Ints(r.Layers)
	for _, ot := range a.Others {
		if ot.Key.Role == peft.RoleFull {
			r.ModulesToSave = append(r.ModulesToSave, ot.Key.Module)
		}
	}
	r.Prompt = promptLearning(cfg, a.Trainable)
	r.Warnings = append(r.Warnings, portability(r, maxRank, cfg)...)
	if o.Tensors {
		for _, t := range src.Tensors {
			r.Tensors = append(r.Tensors, row(t, t.NumElements()))
		}
	}
	if o.Deltas {
		ds, err := deltas(ma, o)
		if err != nil {
			return nil, err
		}
		r.Deltas = ds
	}
	return r, nil
}

func inferType(a *peft.Adapter) string {
	for _, m := range a.Modules {
		switch m.Kind {
		case peft.KindIA3:
			return "IA3"
		case peft.KindAdaLoRA:
			return "ADALORA"
		}
		return "LORA"
	}
	return "unknown"
}

// portability lists features that serving stacks and converters handle
// differently or not at all (specs/peft.md §11).
func portability(r *Report, maxRank int, cfg *peft.Config) []string {
	var w []string
	if r.DoRA {
		w = append(w, "DoRA: vLLM and llama.cpp do not apply lora_magnitude_vector; merge with lora-merge first")
	}
	if len(r.ModulesToSave) > 0 {
		w = append(w, "modules_to_save tensors: vLLM refuses them and llama.cpp's converter rejects them")
	}
	if maxRank > 64 {
		w = append(w, fmt.Sprintf("rank %d exceeds vLLM's usual --max-lora-rank (16 by default, 64 commonly)", maxRank))
	} else if maxRank > 16 {
		w = append(w, fmt.Sprintf("rank %d exceeds vLLM's default --max-lora-rank 16", maxRank))
	}
	if cfg != nil {
		if cfg.UseRSLoRA {
			w = append(w, "rsLoRA scaling alpha/sqrt(r): some serving stacks apply alpha/r")
		}
		if len(cfg.AlphaPattern) > 0 || len(cfg.RankPattern) > 0 {
			w = append(w, "rank_pattern/alpha_pattern: per-module alpha is ignored by vLLM and by llama.cpp (one alpha per file; lora-gguf folds it in)")
		}
	}
	return w
}
