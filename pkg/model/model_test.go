package model_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/model"
)

// TestOpeners checks what counts as a model and as an adapter, and that a
// mix-up is invalid input naming the path.
func TestOpeners(t *testing.T) {
	dir := t.TempDir()
	c := randmodel.Config{Hidden: 16, Intermediate: 24, Layers: 1, Heads: 2, Vocab: 32, Seed: 1}
	base, ad := filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
	if err := c.Write(base); err != nil {
		t.Fatal(err)
	}
	if err := c.Adapter(ad, 2, 1); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(base, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := model.OpenBase("-", f, model.BaseOptions{}) // a stream: no config.json needed
	if err != nil {
		t.Fatal(err)
	}
	if b.Config != nil || b.Quantized || b.Source.Random() {
		t.Errorf("stream base: config %v, quantized %v, random %v", b.Config, b.Quantized, b.Source.Random())
	}
	b.Close()

	a, err := model.OpenAdapter(ad, nil, model.AdapterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	name := a.Analysis.Modules[0].A
	v, err := a.Float32(name)
	if info, _ := a.Info(name); err != nil || int64(len(v)) != info.NumElements() || info.Shape[0] != 2 {
		t.Errorf("Float32(%q): %d values, %v", name, len(v), err)
	}
	if _, err := a.Float32("missing"); err == nil {
		t.Error("Float32 of a missing tensor: no error")
	}
	a.Close()

	os.Remove(filepath.Join(ad, "adapter_config.json"))
	for _, tc := range []struct {
		what string
		err  error
		open func() error
	}{
		{"adapter as base", model.ErrNotModel, func() error { _, err := model.OpenBase(ad, nil, model.BaseOptions{}); return err }},
		{"base as adapter", model.ErrNotAdapter, func() error { _, err := model.OpenAdapter(base, nil, model.AdapterOptions{}); return err }},
		{"no adapter_config.json", model.ErrNoAdapterConfig, func() error { _, err := model.OpenAdapter(ad, nil, model.AdapterOptions{}); return err }},
	} {
		err := tc.open()
		if !errors.Is(err, tc.err) || errclass.Of(err) != errclass.Invalid {
			t.Errorf("%s: %v, want %v (invalid input)", tc.what, err, tc.err)
		}
	}
	a, err = model.OpenAdapter(ad, nil, model.AdapterOptions{Lenient: true})
	if err != nil {
		t.Fatalf("lenient open without a config: %v", err)
	}
	if a.Config != nil || len(a.Analysis.Modules) != 7 {
		t.Errorf("lenient open: config %v, %d modules", a.Config, len(a.Analysis.Modules))
	}
	a.Close()
}
