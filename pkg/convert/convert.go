// Package convert rewrites a checkpoint or adapter as safetensors: the
// `lora-merge convert` command. Its use is PyTorch .bin inputs (read by
// package torchbin without executing their pickle), but any input
// checkpoint.Open reads works, streams included.
//
// What is written is what safetensors.torch.save_file writes for the same
// state dict with every tensor cloned and made contiguous, with
// {"format": "pt"} metadata as transformers and PEFT save it: tensors keep
// their names, dtypes (F64 too), shapes and bytes, in the reference layout.
// A folder output is laid out as transformers and PEFT lay theirs out: an
// adapter as adapter_model.safetensors beside adapter_config.json, a model
// as model.safetensors or, for a sharded input, the same shards renamed
// (pytorch_model-00001-of-00002.bin → model-00001-of-00002.safetensors)
// with model.safetensors.index.json; the small files (configs, tokenizer)
// are carried. A single-file output carries them in its metadata, as every
// lorakit output does.
//
// Tensors that share a storage in the .bin file are written once per name,
// each with its own bytes: tied weights (embed_tokens and lm_head) become
// two equal tensors, which loaders accept whether or not they tie them
// again; Report.Tied lists them. Values that are not tensors (counters,
// hyper-parameters in a training checkpoint) are not written;
// Report.Skipped lists them.
//
// Tensors stream through the engine of package pipeline in 1 MiB pieces:
// memory stays a few tens of megabytes whatever the checkpoint's size.
package convert

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/tool"
)

// Schema is the version of the JSON report.
const Schema = 1

// Options configure Run.
type Options struct {
	tool.Env
}

// Report describes a conversion; it is the --json object.
type Report struct {
	Schema int    `json:"schema"`
	Input  string `json:"input"`
	Output string `json:"output"`
	// Kind is "adapter" or "model".
	Kind string `json:"kind"`
	// Format is the input's tensor format: "pytorch" or "safetensors".
	Format  string `json:"format"`
	Tensors int    `json:"tensors"`
	Bytes   int64  `json:"bytes"`
	// Files lists the shards written (one name for a single file or "-").
	Files []string `json:"files"`
	// Carried lists the small files carried along.
	Carried []string `json:"carried,omitempty"`
	// Tied lists the groups of tensors that shared their elements in the
	// input; each is written with its own bytes.
	Tied [][]string `json:"tied,omitempty"`
	// Skipped lists the input's values that are not tensors.
	Skipped []string `json:"skipped,omitempty"`
	Seconds float64  `json:"-"`
}

// Run converts the checkpoint or adapter at in ("-": Env.Stdin) to
// safetensors at out: a folder, a .safetensors file (.gz/.zst compressed
// by name) or "-" (Env.Stdout). The output appears atomically. Progress is
// reported in bytes written.
func Run(ctx context.Context, in, out string, o Options) (*Report, error) {
	start := time.Now()
	src, err := checkpoint.Open(in, o.In())
	if err != nil {
		return nil, err
	}
	defer src.Close()
	r := &Report{Schema: Schema, Input: in, Output: out, Kind: "model", Format: src.Format.String(),
		Tensors: len(src.Tensors), Bytes: src.Bytes, Tied: src.Tied(), Skipped: src.Skipped}
	if src.IsAdapter() {
		r.Kind = "adapter"
	}
	shards := layout(src)
	for _, sh := range shards {
		r.Files = append(r.Files, sh.Name)
	}
	if out == "-" || !output.IsDirTarget(out) {
		r.Files = []string{out}
	}
	for _, name := range checkpoint.CarriedFiles {
		if _, ok := src.Files[name]; ok {
			r.Carried = append(r.Carried, name)
		}
	}
	w, err := checkpoint.CreateWith(out, src.Files, shards, o.Output())
	if err != nil {
		return nil, err
	}
	input := pipeline.NewInput(src, pipeline.InputOptions{TempDir: o.SpillDir(out)})
	defer input.Close()
	var jobs []*pipeline.Job
	for _, t := range w.Order() {
		jobs = append(jobs, input.CopyJob(t.Name))
	}
	var done int64
	err = pipeline.Run(ctx, pipeline.Options{Workers: o.Threads}, jobs, func(j *pipeline.Job, _ int, b []byte) error {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("tensor %q: %w", j.Name, err)
		}
		done += int64(len(b))
		o.Report(done, src.Bytes)
		return nil
	})
	if err == nil {
		err = w.Commit()
	} else {
		w.Abort()
	}
	if err != nil {
		return nil, err
	}
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

// layout is the output's shards: the input's (already named as
// safetensors files), with a single one named as transformers and PEFT
// name theirs.
func layout(src *checkpoint.Source) []checkpoint.Shard {
	shards := append([]checkpoint.Shard(nil), src.Shards...)
	if len(shards) == 1 {
		shards[0].Name = "model.safetensors"
		if src.IsAdapter() {
			shards[0].Name = "adapter_model.safetensors"
		}
	}
	return shards
}

// WriteText prints the report for humans.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%s → %s: %s (%s), %s tensors, %s\n", r.Input, r.Output, r.Kind, r.Format, num.Thousands(int64(r.Tensors)), num.Bytes(r.Bytes, 1))
	if len(r.Files) > 1 || r.Files[0] != r.Output {
		fmt.Fprintf(w, "  files    %v\n", r.Files)
	}
	if len(r.Carried) > 0 {
		fmt.Fprintf(w, "  carried  %v\n", r.Carried)
	}
	for _, g := range r.Tied {
		fmt.Fprintf(w, "  tied     %v share their elements in the input; each is written with its own copy\n", g)
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "  skipped  %d values that are not tensors: %v\n", len(r.Skipped), r.Skipped)
	}
}
