package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Files of a checkpoint folder. The folder is also a PEFT adapter.
const (
	StateFile     = "trainer_state.json"
	OptimizerFile = "optimizer.safetensors"
	AdapterFile   = "adapter_model.safetensors"
	ConfigFile    = "adapter_config.json"
)

const stateFormat = "lorakit-train-state"

// Suffixes of the AdamW moments in optimizer.safetensors, after the PEFT
// name of the parameter.
const (
	SuffixExpAvg   = ".exp_avg"
	SuffixExpAvgSq = ".exp_avg_sq"
)

// savedState is trainer_state.json.
type savedState struct {
	Format     string   `json:"format"`
	Version    int      `json:"version"`
	State      State    `json:"state"`
	TotalSteps int      `json:"total_steps"`
	Settings   Settings `json:"settings"`
	Data       string   `json:"data_sha256"`
	// RNG documents the random state: every stream is a pure function of
	// the seed and the position (see the package documentation).
	RNG struct {
		Seed         uint64 `json:"seed"`
		ShuffleEpoch int    `json:"shuffle_epoch"`
		DropoutStep  int    `json:"dropout_step"`
	} `json:"rng"`
}

// SaveCheckpoint writes the run's state to the folder dir atomically: the
// adapter (a PEFT adapter folder), the AdamW moments, the position, the
// settings and the data fingerprint. c (may be nil) tracks the folder until
// it is committed.
func (t *Trainer) SaveCheckpoint(dir string, a *Adapter, c *output.Cleanup) error {
	cfg, err := a.ConfigJSON()
	if err != nil {
		return err
	}
	ts, err := adapterTensors(t.model, a.Rename)
	if err != nil {
		return err
	}
	adapter := map[string]safetensors.Tensor{}
	for _, x := range ts {
		adapter[x.name] = f32Tensor(x.shape, x.data)
	}
	opt := map[string]safetensors.Tensor{}
	for i, p := range t.params {
		for _, mv := range []struct {
			suffix string
			b      int
		}{{SuffixExpAvg, 0}, {SuffixExpAvgSq, 1}} {
			buf := t.m[i]
			if mv.b == 1 {
				buf = t.v[i]
			}
			v := make([]float32, buf.Len())
			if err := t.be.Download(v, buf); err != nil {
				return err
			}
			opt[savedName(p.Name, nil)+mv.suffix] = f32Tensor(p.Shape, v)
		}
	}
	s := savedState{Format: stateFormat, Version: 1, State: t.state, TotalSteps: t.sched.Total, Settings: t.set,
		Data: Fingerprint(t.rows)}
	s.RNG.Seed, s.RNG.ShuffleEpoch, s.RNG.DropoutStep = t.set.Seed, t.state.Epoch, t.state.Step+1
	state, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	d, err := output.CreateDir(dir, c)
	if err != nil {
		return err
	}
	write := func(name string, fn func(f *os.File) error) error {
		f, err := d.Create(name)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	md := map[string]string{"format": "pt"}
	err = write(ConfigFile, func(f *os.File) error { _, err := f.Write(cfg); return err })
	if err == nil {
		err = write(AdapterFile, func(f *os.File) error { return safetensors.Encode(f, md, adapter) })
	}
	if err == nil {
		err = write(OptimizerFile, func(f *os.File) error { return safetensors.Encode(f, md, opt) })
	}
	if err == nil {
		err = write(StateFile, func(f *os.File) error { _, err := f.Write(append(state, '\n')); return err })
	}
	if err != nil {
		d.Abort()
		return fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	return d.Commit()
}

func f32Tensor(shape []int, v []float32) safetensors.Tensor {
	s := make([]int64, len(shape))
	for i, d := range shape {
		s[i] = int64(d)
	}
	return safetensors.Tensor{DType: dtype.F32, Shape: s, Data: num.F32Bytes(v)}
}

// Restore continues from the checkpoint folder dir: it checks that the
// checkpoint belongs to this run (same settings, same data, same adapter
// tensors) and loads the adapter values, the AdamW moments and the
// position.
func (t *Trainer) Restore(dir string) error {
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrResume, err)
	}
	var s savedState
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil || s.Format != stateFormat || s.Version != 1 {
		return fmt.Errorf("%w: %s: not a lorakit training state (version 1)", ErrResume, filepath.Join(dir, StateFile))
	}
	if s.Settings != t.set {
		return fmt.Errorf("%w: %s: the checkpoint was made with other settings: %s", ErrResume, dir, settingsDiff(s.Settings, t.set))
	}
	if s.TotalSteps != t.sched.Total {
		return fmt.Errorf("%w: %s: the checkpoint's run has %d steps, this one %d", ErrResume, dir, s.TotalSteps, t.sched.Total)
	}
	if fp := Fingerprint(t.rows); s.Data != fp {
		return fmt.Errorf("%w: %s: the training data differ from the checkpoint's (tokens, labels, --seq or --pack)", ErrResume, dir)
	}
	if s.State.Step < 0 || s.State.Step > t.sched.Total || s.State.Epoch < 0 || s.State.Batch < 0 || s.State.Batch > t.perEpoch {
		return fmt.Errorf("%w: %s: position %+v out of range", ErrResume, dir, s.State)
	}
	load := func(name string) (*safetensors.File, error) {
		f, err := safetensors.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrResume, err)
		}
		return f, nil
	}
	af, err := load(AdapterFile)
	if err != nil {
		return err
	}
	defer af.Close()
	of, err := load(OptimizerFile)
	if err != nil {
		return err
	}
	defer of.Close()
	if len(af.Header.Tensors) != len(t.params) || len(of.Header.Tensors) != 2*len(t.params) {
		return fmt.Errorf("%w: %s: the checkpoint holds other adapter tensors", ErrResume, dir)
	}
	get := func(f *safetensors.File, name string, n int) ([]float32, error) {
		info, ok := f.Info(name)
		if !ok || info.DType != dtype.F32 || info.NumElements() != int64(n) {
			return nil, fmt.Errorf("%w: %s: tensor %q is missing or has another shape", ErrResume, f.Path, name)
		}
		return f.Float32(name)
	}
	for i, p := range t.params {
		n := p.Value.Len()
		name := savedName(p.Name, nil)
		v, err := get(af, name, n)
		if err != nil {
			return err
		}
		m, err := get(of, name+SuffixExpAvg, n)
		if err != nil {
			return err
		}
		vv, err := get(of, name+SuffixExpAvgSq, n)
		if err != nil {
			return err
		}
		t.be.Upload(p.Value, v)
		t.be.Upload(t.m[i], m)
		t.be.Upload(t.v[i], vv)
	}
	t.state = s.State
	return t.be.Sync()
}

// settingsDiff names the first differing setting.
func settingsDiff(a, b Settings) string {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var ma, mb map[string]any
	json.Unmarshal(ja, &ma)
	json.Unmarshal(jb, &mb)
	for _, k := range slices.Sorted(maps.Keys(ma)) {
		if fmt.Sprint(ma[k]) != fmt.Sprint(mb[k]) {
			return fmt.Sprintf("%s was %v, now %v", k, ma[k], mb[k])
		}
	}
	return "?"
}
