package adapterops

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/lorakit/lorakit/pkg/peft"
)

// moduleRank is the rank an output module gets.
type moduleRank struct {
	path   string
	rank   int
	linear bool // a Linear (not an Embedding) module, for target matching
}

// scaleOneConfig returns a copy of cfg for a new adapter whose scalings are
// all 1: r = lora_alpha = r, use_rslora false, and for every module of
// another rank equal rank_pattern and alpha_pattern entries. Other fields are
// kept. The result is checked with PEFT's own matching rules: every module
// resolves to its rank and alpha and is selected by target_modules.
func scaleOneConfig(cfg *peft.Config, r int, mods []moduleRank) (*peft.Config, error) {
	c := *cfg
	c.R, c.LoraAlpha, c.UseRSLoRA = r, float64(r), false
	c.RankPattern, c.AlphaPattern = []peft.RankEntry{}, []peft.AlphaEntry{}
	c.InferenceMode = true
	paths := make([]string, len(mods))
	for i, m := range mods {
		paths[i] = m.path
	}
	for _, m := range mods {
		if m.rank == r {
			continue
		}
		key := patternKey(m.path, paths)
		c.RankPattern = append(c.RankPattern, peft.RankEntry{Pattern: key, Rank: m.rank})
		c.AlphaPattern = append(c.AlphaPattern, peft.AlphaEntry{Pattern: key, Alpha: float64(m.rank)})
	}
	mt, err := peft.NewMatcher(&c)
	if err != nil {
		return nil, fmt.Errorf("%w: the new adapter_config.json: %v", ErrIncompatible, err)
	}
	for _, m := range mods {
		if got := mt.Rank(m.path); got != m.rank {
			return nil, fmt.Errorf("adapterops: internal error: rank_pattern gives module %s rank %d, want %d", m.path, got, m.rank)
		}
		if got := mt.Alpha(m.path); got != float64(m.rank) {
			return nil, fmt.Errorf("adapterops: internal error: alpha_pattern gives module %s alpha %v, want %d", m.path, got, m.rank)
		}
		if c.TargetModules.Kind != peft.SelectNull && !mt.Target(m.path, m.linear) {
			return nil, fmt.Errorf("%w: module %s would not be loaded: the new config's target_modules/layers_to_transform/exclude_modules (taken from the first adapter) do not select it", ErrIncompatible, m.path)
		}
	}
	return &c, nil
}

// patternKey returns the rank_pattern/alpha_pattern key of a module. PEFT
// ≥ 0.14 matches re.match(r"(.*\.)?(KEY)$", path); PEFT 0.6–0.13 matched
// r".*\.KEY$", which needs a segment before the key. So the key is the path
// without its first segment when that selects this module alone among
// paths, else the path itself (escaped if even that is ambiguous).
func patternKey(path string, paths []string) string {
	if _, rest, ok := strings.Cut(path, "."); ok && selectsOnly(rest, path, paths) {
		return rest
	}
	if selectsOnly(path, path, paths) {
		return path
	}
	return regexp.QuoteMeta(path)
}

// selectsOnly reports whether key, under PEFT's ≥ 0.14 rule, matches path
// and no other entry of paths.
func selectsOnly(key, path string, paths []string) bool {
	re, err := regexp.Compile(`^(?:.*\.)?(?:` + key + `)$`)
	if err != nil {
		return false
	}
	for _, p := range paths {
		if re.MatchString(p) != (p == path) {
			return false
		}
	}
	return true
}
