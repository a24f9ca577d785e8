package quantize

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// tensorData returns a tensor's bytes by name.
type tensorData func(name string) ([]byte, error)

// openData gives random access to src's tensors. A file or folder is read
// in place (memory-mapped); a stream, whose tensors come in file order while
// the output needs another order, is first copied to a temporary
// safetensors file in dir, removed by the returned cleanup (or by an
// interrupt). Memory stays bounded by one tensor.
func openData(ctx context.Context, src *checkpoint.Source, dir string, c *output.Cleanup) (tensorData, func(), error) {
	if src.Random() {
		return src.Data, func() {}, nil
	}
	return spool(ctx, src, dir, c, src.Tensors, func(t safetensors.TensorInfo, data []byte, w *safetensors.Writer) error {
		return w.WriteTensor(t.Name, data)
	})
}

// spoolQuantized reads a streamed src once, quantizing each weight as it
// arrives (first pass and packed codes, on the pool) and spooling the packed
// codes and the other tensors — the output's data, not the input's — to a
// temporary safetensors file in dir, whose tensors the returned function
// reads.
func spoolQuantized(ctx context.Context, src *checkpoint.Source, dir string, weights map[string]*weight, p *pool, opts Options) (tensorData, func(), error) {
	infos := make([]safetensors.TensorInfo, len(src.Tensors))
	for i, t := range src.Tensors {
		infos[i] = t
		if weights[t.Name] != nil {
			infos[i] = safetensors.TensorInfo{Name: t.Name, DType: dtype.U8, Shape: []int64{int64(nf4.PackedLen(int(t.NumElements()))), 1}}
		}
	}
	return spool(ctx, src, dir, opts.Cleanup, infos, func(t safetensors.TensorInfo, data []byte, sw *safetensors.Writer) error {
		w := weights[t.Name]
		if w == nil {
			return sw.WriteTensor(t.Name, data)
		}
		get := func(string) ([]byte, error) { return data, nil }
		if err := runAll(ctx, p, []*job{w.absmaxJob(get, opts)}); err != nil {
			return err
		}
		q := w.quantizeJob(get, opts) // after the state exists
		if err := runAll(ctx, p, []*job{q}); err != nil {
			return err
		}
		return sw.WriteTensor(t.Name, q.out)
	})
}

// spool writes the tensors infos (in src's order) to a temporary file in
// dir, each produced by put from the stream's tensor, and opens it.
func spool(ctx context.Context, src *checkpoint.Source, dir string, c *output.Cleanup, infos []safetensors.TensorInfo,
	put func(t safetensors.TensorInfo, data []byte, w *safetensors.Writer) error) (tensorData, func(), error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := output.CreateFile(filepath.Join(dir, "lora-quantize-spool.safetensors"), c)
	if err != nil {
		return nil, nil, fmt.Errorf("spooling %s: %w", src.Path, err)
	}
	sw, err := safetensors.NewWriterOrdered(f, nil, infos)
	if err != nil {
		f.Abort()
		return nil, nil, err
	}
	err = src.Each(func(t safetensors.TensorInfo, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return put(t, data, sw)
	})
	if err == nil {
		err = sw.Close()
	}
	if err != nil {
		f.Abort()
		return nil, nil, err
	}
	set, err := safetensors.OpenSet(f.Name())
	if err != nil {
		f.Abort()
		return nil, nil, err
	}
	return set.Data, func() { set.Close(); f.Abort() }, nil
}

// spoolDir is where a streamed input is spooled: opts.TempDir, else the
// folder the output goes to (it must hold the output anyway), else TMPDIR.
func spoolDir(tempDir, out string) string {
	if tempDir != "" {
		return tempDir
	}
	if out == "-" {
		return os.TempDir()
	}
	return filepath.Dir(filepath.Clean(out))
}
