package merge

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/lorakit/lorakit/internal/num"
)

// Schema is the version of the JSON summary.
const Schema = 1

// Summary describes a merge: what was merged into what, and what became of
// every tensor. It is lora-merge's --json object.
type Summary struct {
	Schema   int              `json:"schema"`
	Output   string           `json:"output"`
	Base     BaseSummary      `json:"base"`
	Adapters []AdapterSummary `json:"adapters"`
	// DType is the requested output dtype ("auto": each tensor keeps its own).
	DType   string       `json:"dtype"`
	Tensors TensorCounts `json:"tensors"`
	// Untied is set when a tied lm_head/embed_tokens pair was split (§7.5).
	Untied bool  `json:"untied_embeddings,omitempty"`
	Bytes  int64 `json:"bytes"`
	// Seconds and Kernel are for humans; they are not in the JSON.
	Seconds       float64 `json:"-"`
	CommitSeconds float64 `json:"-"` // of Seconds, syncing and renaming the output
	Kernel        string  `json:"-"`
	Workers       int     `json:"-"`
	// Spilled is the bytes of a streamed base that went to the spill file
	// (tensors that arrived before the output needed them).
	Spilled int64 `json:"-"`
}

// BaseSummary names the base and says how its weights were read.
type BaseSummary struct {
	Path string `json:"path"`
	// Kind: "float", "nf4-dequantized", "fp4-dequantized", "nf4-requantized"
	// or "fp4-requantized".
	Kind string `json:"kind"`
}

// AdapterSummary is one merged adapter.
type AdapterSummary struct {
	Path     string   `json:"path"`
	PEFTType string   `json:"peft_type"`
	Weight   float64  `json:"weight"`
	Modules  int      `json:"modules"`
	Rank     int      `json:"max_rank,omitempty"`
	DoRA     bool     `json:"dora,omitempty"`
	RSLoRA   bool     `json:"rslora,omitempty"`
	Replaced []string `json:"replaced,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// TensorCounts says what happened to the output tensors.
type TensorCounts struct {
	Merged      int `json:"merged"`      // changed by an adapter
	Dequantized int `json:"dequantized"` // 4-bit weights written as floats (merged or not)
	Requantized int `json:"requantized"` // merged 4-bit weights written as 4-bit
	Converted   int `json:"converted"`   // dtype changed only
	Copied      int `json:"copied"`      // unchanged bytes
}

func (s *Summary) count(j *job) {
	s.Schema = Schema
	switch {
	case j.mode == modeRequant:
		s.Tensors.Requantized++
	case len(j.contribs) > 0:
		s.Tensors.Merged++
		if j.in.quant != nil {
			s.Tensors.Dequantized++
		}
	case j.in.quant != nil && j.mode == modeCompute:
		s.Tensors.Dequantized++
	case j.mode == modeConvert:
		s.Tensors.Converted++
	default:
		s.Tensors.Copied++
	}
}

// WriteText prints the human report.
func (s *Summary) WriteText(w io.Writer, name string) {
	fmt.Fprintf(w, "%s: merged %d adapter(s) into %s (%s base) -> %s\n", name, len(s.Adapters), s.Base.Path, s.Base.Kind, s.Output)
	for _, a := range s.Adapters {
		var kind []string
		kind = append(kind, a.PEFTType)
		if a.DoRA {
			kind = append(kind, "DoRA")
		}
		if a.RSLoRA {
			kind = append(kind, "rsLoRA")
		}
		line := fmt.Sprintf("  %s: %s, %d modules", a.Path, strings.Join(kind, " "), a.Modules)
		if a.Rank > 0 {
			line += fmt.Sprintf(", rank <= %d", a.Rank)
		}
		line += ", weight " + strconv.FormatFloat(a.Weight, 'g', -1, 64)
		if len(a.Replaced) > 0 {
			line += fmt.Sprintf(", replaces %s", strings.Join(a.Replaced, ", "))
		}
		fmt.Fprintln(w, line)
		for _, warn := range a.Warnings {
			fmt.Fprintf(w, "    warning: %s\n", warn)
		}
	}
	t := s.Tensors
	fmt.Fprintf(w, "  tensors: %d merged, %d dequantized, %d requantized, %d converted, %d copied; dtype %s; %s written",
		t.Merged, t.Dequantized, t.Requantized, t.Converted, t.Copied, s.DType, num.Bytes(s.Bytes, 1))
	if s.Seconds > 0 {
		fmt.Fprintf(w, " in %.2fs", s.Seconds)
	}
	fmt.Fprintln(w)
	if s.Untied {
		fmt.Fprintln(w, "  lm_head and embed_tokens were tied: wrote a separate lm_head.weight and set tie_word_embeddings to false")
	}
}
