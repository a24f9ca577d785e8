package adapterops

import (
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// memSource is an adapter held in memory, for benchmarks: the tensors of
// each shape share one random buffer (the work does not depend on the
// values).
type memSource struct {
	name  string
	cfg   *peft.Config
	an    *peft.Adapter
	infos map[string]safetensors.TensorInfo
	data  map[string][]byte // by shape
}

func (m *memSource) Path() string            { return m.name }
func (m *memSource) Config() *peft.Config    { return m.cfg }
func (m *memSource) Analysis() *peft.Adapter { return m.an }
func (m *memSource) Close() error            { return nil }
func (m *memSource) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	t := m.infos[name]
	return t, m.data[fmt.Sprint(t.Shape)], nil
}

// llama8B returns an all-linear adapter of the given rank on the shapes of
// Llama 3 8B (32 layers; hidden 4096, 8 KV heads of 128, MLP 14336).
func llama8B(name string, rank int, seed uint64) *memSource {
	m := &memSource{name: name, infos: map[string]safetensors.TensorInfo{}, data: map[string][]byte{}}
	m.cfg = peft.NewLoraConfig(rank, float64(2*rank), peft.Names("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
	rng := rand.New(rand.NewPCG(seed, seed))
	dims := map[string][2]int64{ // out, in
		"self_attn.q_proj": {4096, 4096}, "self_attn.k_proj": {1024, 4096}, "self_attn.v_proj": {1024, 4096},
		"self_attn.o_proj": {4096, 4096}, "mlp.gate_proj": {14336, 4096}, "mlp.up_proj": {14336, 4096},
		"mlp.down_proj": {4096, 14336},
	}
	var ts []peft.Tensor
	for l := 0; l < 32; l++ {
		for mod, d := range dims {
			p := fmt.Sprintf("%smodel.layers.%d.%s", peft.Prefix, l, mod)
			for _, t := range []safetensors.TensorInfo{
				{Name: p + ".lora_A.weight", DType: dtype.F32, Shape: []int64{int64(rank), d[1]}},
				{Name: p + ".lora_B.weight", DType: dtype.F32, Shape: []int64{d[0], int64(rank)}},
			} {
				m.infos[t.Name] = t
				ts = append(ts, peft.Tensor{Name: t.Name, Shape: t.Shape})
				key := fmt.Sprint(t.Shape)
				if m.data[key] == nil {
					m.data[key] = f32bytes(randVec(rng, int(t.NumElements()), 0.02))
				}
			}
		}
	}
	an, err := peft.Analyze(ts, m.cfg)
	if err != nil {
		panic(err)
	}
	m.an = an
	return m
}

// discard is a Sink that drops the bytes.
type discard struct{ order []safetensors.TensorInfo }

func (d *discard) Order() []safetensors.TensorInfo            { return d.order }
func (d *discard) WriteTensor(name string, data []byte) error { return nil }
func (d *discard) Commit() error                              { return nil }
func (d *discard) Abort()                                     {}

func benchIO(srcs map[string]*memSource) seam {
	return seam{
		open: func(path string, _ io.Reader) (source, error) { return srcs[path], nil },
		create: func(_ string, _ map[string][]byte, ts []safetensors.TensorInfo, _ *tool.Env) (sink, error) {
			order := append([]safetensors.TensorInfo(nil), ts...)
			safetensors.SortReference(order)
			return &discard{order: order}, nil
		},
	}
}

// BenchmarkCombine8B combines two rank-16 all-linear adapters of Llama 3
// 8B's shapes (224 modules, 168 MB of float32 each); the output is
// discarded, so this is the math and the conversions.
func BenchmarkCombine8B(b *testing.B) {
	srcs := map[string]*memSource{"a": llama8B("a", 16, 1), "b": llama8B("b", 16, 2)}
	for _, c := range []CombineOptions{
		{Method: Cat}, {Method: Linear}, {Method: SVD}, {Method: TIES, Density: 0.5},
		{Method: DARELinear, Density: 0.5},
	} {
		b.Run(string(c.Method), func(b *testing.B) {
			c.Adapters = []Input{{"a", 0.6}, {"b", 0.4}}
			c.Output, c.seam = "discard", benchIO(srcs)
			for b.Loop() {
				if _, err := Combine(b.Context(), c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResize8B resizes a rank-16 adapter of Llama 3 8B's shapes to
// rank 8, and by energy (two passes).
func BenchmarkResize8B(b *testing.B) {
	srcs := map[string]*memSource{"a": llama8B("a", 16, 1)}
	for _, rule := range []RankRule{{Method: RankFixed, Rank: 8}, {Method: RankEnergy, Param: 0.9}} {
		b.Run(string(rule.Method), func(b *testing.B) {
			for b.Loop() {
				if _, err := Resize(b.Context(), ResizeOptions{Adapter: "a", Rule: rule, Output: "discard", seam: benchIO(srcs)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiff8B compares two rank-16 adapters of Llama 3 8B's shapes.
func BenchmarkDiff8B(b *testing.B) {
	srcs := map[string]*memSource{"a": llama8B("a", 16, 1), "b": llama8B("b", 16, 2)}
	for b.Loop() {
		if _, err := Diff(b.Context(), DiffOptions{A: "a", B: "b", seam: benchIO(srcs)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDenseModule is one ties_svd and one dare_ties_svd module (two
// rank-16 adapters, density 0.5, svd rank 16): the dense path's cost per
// module, for a 2048×2048 module and for Llama 3 8B's MLP projection
// (14336×4096).
func BenchmarkDenseModule(b *testing.B) {
	for _, method := range []Method{TIESSVD, DARETIESSVD} {
		for _, d := range [][2]int{{2048, 2048}, {14336, 4096}} {
			out, in := d[0], d[1]
			b.Run(fmt.Sprintf("%s/%dx%d", method, out, in), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(3, 3))
				mod := peft.Module{Path: qProj, Rank: 16, In: int64(in), Out: int64(out), Kind: peft.KindLinear}
				ms := []member{
					{index: 0, weight: 1, f: &factors{mod: mod, a: randVec(rng, 16*in, 0.02), b: randVec(rng, out*16, 0.02), scale: 2}},
					{index: 1, weight: 1, f: &factors{mod: mod, a: randVec(rng, 16*in, 0.02), b: randVec(rng, out*16, 0.02), scale: 2}},
				}
				c := &combiner{o: CombineOptions{Density: 0.5}, method: method}
				defer func() { pipeline.FreeFloats(c.dense) }()
				for b.Loop() {
					_, _, _, note, err := c.denseModule(b.Context(), qProj, ms, in, out, 16)
					if err != nil || note != "" {
						b.Fatal(err, note)
					}
				}
			})
		}
	}
}

// BenchmarkMergeTIES is the TIES election and disjoint mean of two pruned
// row blocks of an 8B projection (16×4096).
func BenchmarkMergeTIES(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	n := 16 * 4096
	ts := [][]float32{randVec(rng, n, 1), randVec(rng, n, 1)}
	ws := []float32{0.6, 0.4}
	dst := make([]float32, n)
	b.SetBytes(int64(n))
	for b.Loop() {
		mergeInto(dst, ts, ws, mergeTIESTotal)
	}
}

// BenchmarkPruneApply prunes a 16×4096 row block at density 0.5, by
// magnitude and by DARE.
func BenchmarkPruneApply(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	n := 16 * 4096
	x := randVec(rng, n, 1)
	for _, p := range []pruner{{kind: pruneMagnitude, rule: magnitudeRule(x, 0.5)}, newRandomPruner(1, qProj, DAREDeltaW, 0, 0.5)} {
		b.Run([]string{"none", "magnitude", "dare"}[p.kind], func(b *testing.B) {
			y := make([]float32, n)
			b.SetBytes(int64(n))
			for b.Loop() {
				copy(y, x)
				p.apply(y, 0)
			}
		})
	}
}
