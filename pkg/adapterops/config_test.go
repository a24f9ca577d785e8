package adapterops

import (
	"testing"

	"github.com/lorakit/lorakit/pkg/peft"
)

func TestPatternKey(t *testing.T) {
	paths := []string{
		"model.layers.0.self_attn.q_proj",
		"model.layers.1.self_attn.q_proj",
		"model.language_model.layers.0.self_attn.q_proj",
		"vision_tower.layers.0.self_attn.q_proj",
		"lm_head",
	}
	for _, c := range []struct{ path, want string }{
		// The path without its first segment, when that is unambiguous
		// (PEFT 0.6–0.13 need a segment before the key).
		{"model.layers.1.self_attn.q_proj", "layers.1.self_attn.q_proj"},
		{"model.language_model.layers.0.self_attn.q_proj", "language_model.layers.0.self_attn.q_proj"},
		// "layers.0.self_attn.q_proj" would also select the other two.
		{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.q_proj"},
		{"vision_tower.layers.0.self_attn.q_proj", "vision_tower.layers.0.self_attn.q_proj"},
		{"lm_head", "lm_head"},
	} {
		if got := patternKey(c.path, paths); got != c.want {
			t.Errorf("%s: key %q, want %q", c.path, got, c.want)
		}
	}
	// The config built from them resolves every module (checked inside).
	var mods []moduleRank
	for i, p := range paths {
		mods = append(mods, moduleRank{path: p, rank: 2 + i, linear: true})
	}
	cfg := peft.NewLoraConfig(8, 8, peft.Pattern(".*"))
	c, err := scaleOneConfig(cfg, 6, mods)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.RankPattern) != 4 || c.R != 6 || c.LoraAlpha != 6 {
		t.Errorf("r %d alpha %v rank_pattern %+v", c.R, c.LoraAlpha, c.RankPattern)
	}
}
