package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/tokenizer"
	"github.com/lorakit/lorakit/pkg/train"
)

// Generator decodes greedily with a model (and optionally an adapter).
type Generator struct {
	base  *train.Base
	model *llama.Model
	tok   *tokenizer.Tokenizer
	eos   int
}

// OpenGenerator loads the model at path (a folder or file, float or 4-bit)
// and, when adapter is not empty, the PEFT adapter at adapter.
func OpenGenerator(path, adapter string, threads int) (*Generator, error) {
	base, err := train.OpenBase(path, nil)
	if err != nil {
		return nil, err
	}
	if base.Tokenizer == nil {
		base.Close()
		return nil, fmt.Errorf("%s: no tokenizer.json", path)
	}
	m, err := base.NewModel(cpu.New(threads), llama.Options{})
	if err != nil {
		base.Close()
		return nil, err
	}
	if adapter != "" {
		ad, load, err := train.OpenAdapter(adapter, nil, base.Config, 0)
		if err == nil {
			err = m.AddAdapters(ad.Specs, load)
		}
		if err != nil {
			m.Close()
			base.Close()
			return nil, err
		}
	}
	eos, ok := base.Tokenizer.SpecialTokenID("eos_token")
	if !ok {
		eos = -1
	}
	return &Generator{base: base, model: m, tok: base.Tokenizer, eos: eos}, nil
}

// Close releases the model.
func (g *Generator) Close() {
	g.model.Close()
	g.base.Close()
}

// Generate returns the greedy continuation of prompt (BOS added), at most
// maxNew tokens, stopping at EOS (not included).
func (g *Generator) Generate(prompt string, maxNew int) (string, error) {
	out, err := g.generateIDs(prompt, maxNew)
	if err != nil {
		return "", err
	}
	return g.tok.Decode(out, true), nil
}

// generateIDs is Generate returning token ids.
func (g *Generator) generateIDs(prompt string, maxNew int) ([]int, error) {
	ids := g.tok.Encode(prompt, true)
	vocab := g.model.Config().Vocab
	var out []int
	for range maxNew {
		b := llama.Batch{Rows: 1, Seq: len(ids), IDs: make([]int32, len(ids))}
		for i, id := range ids {
			b.IDs[i] = int32(id)
		}
		logits := make([]float32, len(ids)*vocab)
		if err := g.model.Logits(b, logits); err != nil {
			return nil, err
		}
		last := logits[(len(ids)-1)*vocab:]
		best := 0
		for i, v := range last {
			if v > last[best] {
				best = i
			}
		}
		if best == g.eos {
			break
		}
		out = append(out, best)
		ids = append(ids, best)
	}
	return out, nil
}

// ReadExamples reads prompt/completion JSONL.
func ReadExamples(path string) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ex []Example
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Example
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		ex = append(ex, e)
	}
	return ex, sc.Err()
}

// Score is the result of greedy generation on held-out examples.
type Score struct {
	Correct, Total int
	Outputs        []string
}

// Evaluate generates each example's completion and counts exact matches.
func (g *Generator) Evaluate(ex []Example, maxNew int) (Score, error) {
	s := Score{Total: len(ex)}
	for _, e := range ex {
		out, err := g.Generate(e.Prompt, maxNew)
		if err != nil {
			return s, err
		}
		if out == e.Completion {
			s.Correct++
		}
		s.Outputs = append(s.Outputs, out)
	}
	return s, nil
}
