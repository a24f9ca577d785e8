package llama

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/internal/fixtureio"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// fixtures returns the shared fixtures folder, walking up from the package.
func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

func openST(t testing.TB, path string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// stLoader serves tensors of f, looked up as prefix+name.
func stLoader(f *safetensors.File, prefix string) Loader {
	return fixtureio.Tensors(f, prefix, ErrNotFound)
}

func int64s(t testing.TB, f *safetensors.File, name string) []int32 {
	t.Helper()
	data, err := f.Data(name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int32, len(data)/8)
	for i := range out {
		out[i] = int32(int64(binary.LittleEndian.Uint64(data[8*i:])))
	}
	return out
}

func float32s(t testing.TB, f *safetensors.File, name string) []float32 {
	t.Helper()
	v, err := f.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tinyJSON is fixtures/peft/tiny's config.json (the fields that matter).
const tinyJSON = `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "head_dim": 16, "vocab_size": 256, "rms_norm_eps": 1e-05, "max_position_embeddings": 128,
  "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}, "tie_word_embeddings": false,
  "dtype": "float32"}`

// tinyConfig is the configuration of fixtures/peft/tiny (see its config.json).
func tinyConfig() *arch.Config { return mustConfig(tinyJSON) }

// mustConfig parses a config.json or panics.
func mustConfig(js string) *arch.Config {
	c, err := arch.ParseConfig([]byte(js))
	if err != nil {
		panic(err)
	}
	return c
}

// The Llama modules, in PEFT's order.
const (
	Q    = "q_proj"
	K    = "k_proj"
	V    = "v_proj"
	O    = "o_proj"
	Gate = "gate_proj"
	Up   = "up_proj"
	Down = "down_proj"
)

var allTargets = []string{Q, K, V, O, Gate, Up, Down}

// projShape returns (out, in) of a module of cfg.
func projShape(cfg *arch.Config, module string) (out, in int) {
	for _, l := range cfg.Linears() {
		if l.Module == module {
			return int(l.Out), int(l.In)
		}
	}
	panic("no module " + module)
}

// modulePath is the tiny model's path of a module.
func modulePath(l int, module string) string { return tinyConfig().ModulePath(l, module) }

func loadTiny(t testing.TB, be compute.Backend, folder string, opt Options) *Model {
	t.Helper()
	f := openST(t, filepath.Join(fixtures(t), "peft", folder, "model.safetensors"))
	m, err := New(be, tinyConfig(), stLoader(f, ""), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

type adapterConfig struct {
	R             int            `json:"r"`
	Alpha         float64        `json:"lora_alpha"`
	Targets       []string       `json:"target_modules"`
	DoRA          bool           `json:"use_dora"`
	RSLoRA        bool           `json:"use_rslora"`
	Dropout       float64        `json:"lora_dropout"`
	RankPattern   map[string]int `json:"rank_pattern"`
	AlphaPatttern map[string]int `json:"alpha_pattern"`
}

// addFixtureAdapter attaches the PEFT adapter in folder (plain r/alpha, no
// patterns) to every layer of m.
func addFixtureAdapter(t testing.TB, m *Model, folder string) []Adapter {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(folder, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ac adapterConfig
	if err := json.Unmarshal(raw, &ac); err != nil {
		t.Fatal(err)
	}
	if len(ac.RankPattern)+len(ac.AlphaPatttern) > 0 {
		t.Fatal("patterns are not handled by this helper")
	}
	scale := ac.Alpha / float64(ac.R)
	if ac.RSLoRA {
		scale = ac.Alpha / math.Sqrt(float64(ac.R))
	}
	var specs []Adapter
	for l := range m.Config().Layers {
		for _, name := range ac.Targets {
			specs = append(specs, Adapter{Layer: l, Module: name, Rank: ac.R, Scale: float32(scale), DoRA: ac.DoRA,
				Dropout: float32(ac.Dropout)})
		}
	}
	f := openST(t, filepath.Join(folder, "adapter_model.safetensors"))
	if err := m.AddAdapters(specs, stLoader(f, "base_model.model.")); err != nil {
		t.Fatal(err)
	}
	return specs
}

func download(t testing.TB, be compute.Backend, b compute.Buffer) []float32 {
	t.Helper()
	out := make([]float32, b.Len())
	if err := be.Download(out, b); err != nil {
		t.Fatal(err)
	}
	return out
}

// maxAbs returns max|a−b| and max|b|.
func maxAbs(a, b []float32) (diff, scale float64) {
	for i := range a {
		diff = math.Max(diff, math.Abs(float64(a[i])-float64(b[i])))
		scale = math.Max(scale, math.Abs(float64(b[i])))
	}
	return diff, scale
}

func newCPU() compute.Backend { return cpu.New(0) }
