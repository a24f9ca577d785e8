package adapterops

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// countingSource counts the lora_A tensors read (one per module and
// adapter).
type countingSource struct {
	source
	reads *atomic.Int64
}

func (c countingSource) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	if strings.Contains(name, "lora_A") {
		c.reads.Add(1)
	}
	return c.source.Tensor(name)
}

// memSink writes the output to memory through pkg/safetensors.
type memSink struct {
	buf *bytes.Buffer
	w   *safetensors.Writer
	// on each WriteTensor
	onWrite func(name string)
}

func (m *memSink) Order() []safetensors.TensorInfo { return m.w.Order() }
func (m *memSink) WriteTensor(name string, data []byte) error {
	if m.onWrite != nil {
		m.onWrite(name)
	}
	return m.w.WriteTensor(name, data)
}
func (m *memSink) Commit() error { return m.w.Close() }
func (m *memSink) Abort()        {}

func memCreator(buf *bytes.Buffer, onWrite func(string)) func(string, map[string][]byte, []safetensors.TensorInfo, *tool.Env) (sink, error) {
	return func(path string, files map[string][]byte, tensors []safetensors.TensorInfo, _ *tool.Env) (sink, error) {
		w, err := safetensors.NewWriter(buf, checkpoint.Metadata(files), tensors)
		if err != nil {
			return nil, err
		}
		return &memSink{buf: buf, w: w, onWrite: onWrite}, nil
	}
}

// TestCombineStreams: modules are read as they are written, never more
// than the workers ahead (bounded memory as a tested property), and the
// seam takes other openers and sinks.
func TestCombineStreams(t *testing.T) {
	rng := rand.New(rand.NewPCG(111, 112))
	dir := t.TempDir()
	var m1, m2 []tmod
	for l := 0; l < 20; l++ {
		for _, p := range []string{"q_proj", "v_proj"} {
			path := fmt.Sprintf("model.layers.%d.self_attn.%s", l, p)
			m1 = append(m1, randModule(rng, path, 16, 12, 4))
			m2 = append(m2, randModule(rng, path, 16, 12, 2))
		}
	}
	p1 := writeAdapter(t, filepath.Join(dir, "a1"), map[string]any{"r": 4}, m1, nil)
	p2 := writeAdapter(t, filepath.Join(dir, "a2"), map[string]any{"r": 2}, m2, nil)
	for _, workers := range []int{1, 3} {
		var reads atomic.Int64
		var written, ahead int
		var buf bytes.Buffer
		sm := seam{
			open: func(path string, stdin io.Reader) (source, error) {
				s, err := openAdapter(path, stdin)
				return countingSource{s, &reads}, err
			},
			create: memCreator(&buf, func(name string) {
				if strings.Contains(name, "lora_A") {
					written++
					ahead = max(ahead, int(reads.Load())/2-written)
				}
			}),
		}
		var progress, all int64
		rep := mustCombine(t, CombineOptions{Adapters: []Input{{p1, 1}, {p2, -1}}, Method: SVD, Output: "mem", seam: sm,
			Env: tool.Env{Threads: workers, Progress: func(done, total int64) {
				if done <= progress || done > total {
					t.Errorf("progress %d/%d after %d", done, total, progress)
				}
				progress, all = done, total
			}}})
		// 40 modules of rank 4: A 4×16 and B 12×4 float32.
		if written != 40 || len(rep.Modules) != 40 || progress != all || all != 40*(4*16+12*4)*4 {
			t.Fatalf("workers %d: %d modules written", workers, written)
		}
		if ahead > workers {
			t.Errorf("workers %d: %d modules read ahead of the writer", workers, ahead)
		}
		// The output is a single safetensors stream carrying its config.
		out := filepath.Join(t.TempDir(), "out.safetensors")
		if err := writeFile(out, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		if l := load(t, out); len(l.mods) != 40 || l.cfg.R != 4 {
			t.Fatalf("read back: %d modules, r %d", len(l.mods), l.cfg.R)
		}
	}
}

// TestDeterministic: the same bytes whatever the number of workers, for a
// core method and a dense one.
func TestDeterministic(t *testing.T) {
	_, _, _, p1, p2 := twoAdapters(t)
	for _, o := range []CombineOptions{
		{Method: SVD, SVDRank: 3},
		{Method: TIESSVD, Density: 0.5, SVDRank: 3},
		{Method: DARETIESSVD, Density: 0.7, SVDRank: 2, Seed: 9},
	} {
		var outs [][]byte
		for _, w := range []int{1, 4} {
			o.Adapters = []Input{{p1, 0.5}, {p2, 2}}
			o.Threads = w
			o.Output = filepath.Join(t.TempDir(), "out.safetensors")
			mustCombine(t, o)
			outs = append(outs, fileBytes(t, o.Output))
		}
		if !bytes.Equal(outs[0], outs[1]) {
			t.Errorf("%s: output depends on the number of workers", o.Method)
		}
	}
}

// TestStdinInput: one adapter may come from stdin as a single-file stream
// (adapter_config.json in its metadata).
func TestStdinInput(t *testing.T) {
	dir, a1, _, p1, p2 := twoAdapters(t)
	single := filepath.Join(dir, "a1.safetensors")
	if _, err := Resize(t.Context(), ResizeOptions{Adapter: p1, Rule: RankRule{Method: RankFixed, Rank: 4}, Output: single}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	mustCombine(t, CombineOptions{Adapters: []Input{{"-", 1}, {p2, 1}}, Method: Cat, Output: out,
		Env: tool.Env{Stdin: bytes.NewReader(fileBytes(t, single))}})
	want := tmodDelta(a1[2], s1) // layer 1 q_proj is only in a1
	if e := relErr(load(t, out).mods[q1].delta(), want); e > 1e-6 {
		t.Errorf("error %g", e)
	}
}

// TestCatMergesLikeSequentialMerges is the exactness test of cat against
// pkg/merge: merging cat(A₁:w₁, A₂:w₂) into a base equals merging A₁ with
// weight w₁ and A₂ with weight w₂, to float32 rounding: every element within
// 2⁻²⁰·(|W0| + Σᵢ|wᵢ·sᵢ|·(|Bᵢ|·|Aᵢ|)) at that element. Both sides are float32
// dot products of up to 16 terms rounded differently (one chain over the
// stacked rank against one chain per adapter and a sum), whose error bound
// is a few units of 2⁻²⁴ times the sum of the absolute terms.
func TestCatMergesLikeSequentialMerges(t *testing.T) {
	fx := testbin.Fixtures(t)
	base := filepath.Join(fx, "peft", "tiny")
	ins := []Input{{filepath.Join(fx, "peft", "lora"), 0.8}, {filepath.Join(fx, "peft", "train", "plain", "final"), -0.5}}
	cat := filepath.Join(t.TempDir(), "cat")
	mustCombine(t, CombineOptions{Adapters: ins, Method: Cat, Output: cat})
	seq := mergeBase(t, base, ins)
	one := mergeBase(t, base, []Input{{cat, 1}})
	w0, _ := readTensors(t, base)
	// Σᵢ |wᵢ·sᵢ|·(|Bᵢ|·|Aᵢ|) per element, in float64: the size of the
	// terms the two merges round.
	mag := map[string][]float64{}
	for _, in := range ins {
		l := load(t, in.Path)
		for path, f := range l.mods {
			abs := &factors{mod: f.mod, scale: math.Abs(in.Weight * f.scale), a: absAll(f.a), b: absAll(f.b)}
			name := path + ".weight"
			if mag[name] == nil {
				mag[name] = make([]float64, f.mod.In*f.mod.Out)
			}
			for i, v := range abs.delta().Data {
				mag[name][i] += v
			}
		}
	}
	changed, worst := 0, 0.0
	for name, want := range seq {
		got := one[name]
		for i := range want {
			bound := math.Abs(float64(w0[name][i]))
			if mag[name] != nil {
				bound += mag[name][i]
			}
			d := math.Abs(float64(got[i] - want[i]))
			worst = math.Max(worst, d/bound)
			if d > 0x1p-20*bound {
				t.Fatalf("%s[%d]: cat merged %v, sequential %v (bound %g)", name, i, got[i], want[i], 0x1p-20*bound)
			}
			if w0[name][i] != want[i] {
				changed++
			}
		}
	}
	if changed == 0 {
		t.Fatal("the merges changed nothing")
	}
	t.Logf("largest difference: %.3g of the bound's scale (2⁻²⁰ = %.3g)", worst, 0x1p-20)
}

func absAll(x []float32) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(math.Abs(float64(v)))
	}
	return y
}
