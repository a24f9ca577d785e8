package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// DefaultInputMemory is the smallest memory bound of a stream's kept
// tensors.
const DefaultInputMemory = 32 << 20

// InputOptions configure NewInput.
type InputOptions struct {
	// TempDir holds the spill file of a stream; "" means os.TempDir().
	TempDir string
	// Memory bounds the bytes of a stream's tensors kept in memory (beyond
	// it they are spilled); 0 means DefaultInputMemory or the largest
	// tensor, whichever is larger.
	Memory int64
}

// Input reads the tensors of a checkpoint.Source in any order, from any
// goroutine, with bounded memory (see the package documentation). It does
// not close the source.
type Input struct {
	src *checkpoint.Source

	mu     sync.Mutex
	kept   map[string]*keptTensor
	unused map[string]bool // tensors Done before they were read: skipped
	mem    int64           // bytes of kept tensors in memory
	limit  int64
	dir    string
	spill  *os.File
	end    int64 // spill file size
	copy   []byte
	eof    bool
	err    error // sticky stream error
	closed bool
}

// keptTensor is a stream tensor read on the way: in memory, or at off in
// the spill file.
type keptTensor struct {
	info safetensors.TensorInfo
	data []byte
	off  int64
	done bool
}

// NewInput prepares random access to src's tensors.
func NewInput(src *checkpoint.Source, o InputOptions) *Input {
	in := &Input{src: src, kept: map[string]*keptTensor{}, unused: map[string]bool{}, dir: o.TempDir, limit: o.Memory}
	if in.limit <= 0 {
		in.limit = DefaultInputMemory
		for _, t := range src.Tensors {
			in.limit = max(in.limit, t.NumBytes())
		}
	}
	if in.dir == "" {
		in.dir = os.TempDir()
	}
	return in
}

// Info returns the header entry of tensor name.
func (in *Input) Info(name string) (safetensors.TensorInfo, bool) { return in.src.Info(name) }

// ReadAt fills p with the bytes of tensor name from offset off.
func (in *Input) ReadAt(name string, p []byte, off int64) error {
	t, ok := in.src.Info(name)
	if !ok {
		return fmt.Errorf("%s: %w: %q", in.src.Path, safetensors.ErrNotFound, name)
	}
	if off < 0 || off+int64(len(p)) > t.NumBytes() {
		return fmt.Errorf("%s: tensor %q: read of [%d, %d) beyond its %d bytes", in.src.Path, name, off, off+int64(len(p)), t.NumBytes())
	}
	if len(p) == 0 {
		return nil
	}
	if in.src.Random() {
		return in.src.ReadAt(name, p, off)
	}
	in.mu.Lock()
	k, err := in.reach(name)
	if err != nil {
		in.mu.Unlock()
		return err
	}
	if k.data != nil { // copied under the lock: Done may release the memory
		copy(p, k.data[off:])
		in.mu.Unlock()
		return nil
	}
	f, at := in.spill, k.off+off
	in.mu.Unlock()
	if _, err := f.ReadAt(p, at); err != nil {
		return fmt.Errorf("%s: tensor %q: spill file: %w", in.src.Path, name, err)
	}
	return nil
}

// CopyJob copies tensor name unchanged (pipeline.CopyJob), then marks it
// Done.
func (in *Input) CopyJob(name string) *Job {
	t, _ := in.Info(name)
	j := CopyJob(name, t.NumBytes(), func(p []byte, off int64) error { return in.ReadAt(name, p, off) })
	j.Finish = func() error { in.Done(name); return nil }
	return j
}

// Read returns the whole bytes of tensor name in a new slice: for small
// tensors (quant states, adapter tensors).
func (in *Input) Read(name string) ([]byte, error) {
	t, _ := in.src.Info(name) // ReadAt reports a missing tensor
	b := make([]byte, t.NumBytes())
	if err := in.ReadAt(name, b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// Done says tensor name will not be read again: a stream's copy is
// released, and a tensor not read yet will be skipped. Reading it
// afterwards is an error.
func (in *Input) Done(name string) {
	if in.src.Random() {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	k, ok := in.kept[name]
	if !ok {
		in.unused[name] = true
		return
	}
	if k.data != nil {
		in.mem -= int64(len(k.data))
		release(k.data)
		k.data = nil
	}
	k.done = true
}

// Close releases the kept tensors and the spill file.
func (in *Input) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil
	}
	in.closed = true
	for _, k := range in.kept {
		if k.data != nil {
			release(k.data)
			k.data = nil
		}
	}
	in.mem = 0
	if in.spill != nil {
		return in.spill.Close()
	}
	return nil
}

// reach reads the stream forward until tensor name is kept. It holds in.mu.
func (in *Input) reach(name string) (*keptTensor, error) {
	for {
		if in.closed {
			return nil, fmt.Errorf("%s: tensor %q: %w", in.src.Path, name, os.ErrClosed)
		}
		if in.unused[name] {
			return nil, fmt.Errorf("%s: tensor %q: read after Done", in.src.Path, name)
		}
		if k, ok := in.kept[name]; ok {
			if k.done {
				return nil, fmt.Errorf("%s: tensor %q: read again after Done", in.src.Path, name)
			}
			return k, nil
		}
		if in.err != nil {
			return nil, in.err
		}
		if in.eof {
			return nil, fmt.Errorf("%s: %w: %q (not in the stream)", in.src.Path, safetensors.ErrNotFound, name)
		}
		t, r, err := in.src.Next()
		if err == io.EOF {
			in.eof = true
			continue
		}
		if err == nil {
			err = in.keep(t, r)
		}
		if err != nil {
			in.err = err
			return nil, err
		}
	}
}

// keep stores the stream's next tensor t, read from r: in memory while the
// bound allows, else at the end of the spill file.
func (in *Input) keep(t safetensors.TensorInfo, r io.Reader) error {
	n := t.NumBytes()
	k := &keptTensor{info: t}
	if in.unused[t.Name] {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return fmt.Errorf("%s: tensor %q: %w", in.src.Path, t.Name, truncated(err))
		}
		return nil
	}
	if n == 0 {
		k.data = []byte{}
		in.kept[t.Name] = k
		return nil
	}
	if in.mem+n <= in.limit {
		k.data = tryAlloc(int(n))
	}
	if k.data != nil {
		if _, err := io.ReadFull(r, k.data); err != nil {
			release(k.data)
			return fmt.Errorf("%s: tensor %q: %w", in.src.Path, t.Name, truncated(err))
		}
		in.mem += n
		in.kept[t.Name] = k
		return nil
	}
	if in.spill == nil {
		f, err := os.CreateTemp(in.dir, ".lorakit-spill-*")
		if err != nil {
			return fmt.Errorf("spilling %s: %w", in.src.Path, err)
		}
		os.Remove(f.Name()) // unlinked: nothing is left behind, whatever happens
		in.spill = f
	}
	if in.copy == nil {
		in.copy = make([]byte, 1<<20)
	}
	k.off = in.end
	w := io.NewOffsetWriter(in.spill, in.end)
	got, err := io.CopyBuffer(w, io.LimitReader(r, n), in.copy)
	if err == nil && got != n {
		err = truncated(io.ErrUnexpectedEOF)
	}
	if err != nil {
		return fmt.Errorf("%s: tensor %q: %w", in.src.Path, t.Name, err)
	}
	in.end += n
	in.kept[t.Name] = k
	return nil
}

// truncated maps an early end of data to safetensors.ErrTruncated.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %v", safetensors.ErrTruncated, err)
	}
	return err
}

// QuantState parses the bitsandbytes 4-bit state of weight from its small
// quant-state tensors, without reading the packed codes.
func (in *Input) QuantState(weight string) (*nf4.QuantState, error) {
	var readErr error
	qs, err := nf4.ParseModuleState(weight, func(name string) (nf4.Tensor, bool) {
		t, ok := in.Info(name)
		if !ok {
			return nf4.Tensor{}, false
		}
		nt := nf4.Tensor{DType: t.DType, Shape: t.Shape}
		if name != weight {
			b, err := in.Read(name)
			if err != nil {
				readErr = cmp.Or(readErr, err)
				return nf4.Tensor{}, false
			}
			nt.Data = b
		}
		return nt, true
	})
	if readErr != nil {
		return nil, readErr // the input's error, not the state it hid
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.src.Path, err)
	}
	return qs, nil
}

// Spilled returns the bytes of a stream written to the spill file so far.
func (in *Input) Spilled() int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.end
}

// Dequantize returns a bitsandbytes 4-bit weight as float32 values, each
// rounded to the state's dtype as bitsandbytes' dequantize_4bit returns
// them, with its logical shape.
func (in *Input) Dequantize(weight string) ([]float32, []int64, error) {
	qs, err := in.QuantState(weight)
	if err != nil {
		return nil, nil, err
	}
	packed, err := in.Read(weight)
	if err != nil {
		return nil, nil, err
	}
	out := make([]float32, qs.NumElements())
	if err := qs.Dequantize(out, packed); err != nil {
		return nil, nil, fmt.Errorf("%s: tensor %q: %w", in.src.Path, weight, err)
	}
	if qs.DType != dtype.F32 {
		b := make([]byte, len(out)*qs.DType.Size())
		if err := dtype.FromF32(b, out, qs.DType); err != nil {
			return nil, nil, err
		}
		if err := dtype.ToF32(out, b, qs.DType); err != nil {
			return nil, nil, err
		}
	}
	return out, qs.Shape, nil
}
