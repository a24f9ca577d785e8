package peft

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Matcher holds a config's compiled patterns and answers PEFT's questions
// about a module name relative to the HF model (e.g.
// "model.layers.0.self_attn.q_proj"): is it a target (spec §4), and which
// rank and alpha apply to it (spec §5, PEFT ≥ 0.14 rule).
type Matcher struct {
	targets    Selector
	targetRe   *regexp.Regexp
	targetSet  map[string]bool
	excludeRe  *regexp.Regexp
	excludeSet map[string]bool
	exclude    []string
	savedRes   []*regexp.Regexp
	layerRes   []*regexp.Regexp // from layers_pattern; nil: the default rule
	layerSet   map[int]bool
	useLayers  bool
	seqCls     bool
	ffRe       *regexp.Regexp
	ff         []string
	r          int
	alpha      float64
	rslora     bool
	rankRes    []*regexp.Regexp
	ranks      []int
	alphaRes   []*regexp.Regexp
	alphas     []float64
}

const layerGroup = "lorakitlayer"

// NewMatcher compiles every pattern of c (target_modules and
// exclude_modules strings, modules_to_save entries, layers_pattern,
// rank_pattern and alpha_pattern keys, feedforward_modules). A Python
// pattern Go cannot reproduce gives ErrUnsupportedPattern naming the key.
func NewMatcher(c *Config) (*Matcher, error) {
	m := &Matcher{
		targets: c.TargetModules,
		r:       c.R,
		alpha:   c.LoraAlpha,
		rslora:  c.UseRSLoRA,
		seqCls:  c.TaskType == "SEQ_CLS",
	}
	wrap := func(key string, err error) error { return fmt.Errorf("key %q: %w", key, err) }
	var err error
	switch c.TargetModules.Kind {
	case SelectString:
		if !c.TargetModules.IsAllLinear() {
			if m.targetRe, err = fullmatchRe(c.TargetModules.String); err != nil {
				return nil, wrap("target_modules", err)
			}
		}
	case SelectList:
		m.targetSet = setOf(c.TargetModules.List)
	}
	switch c.ExcludeModules.Kind {
	case SelectString:
		if c.ExcludeModules.String != "" {
			if m.excludeRe, err = fullmatchRe(c.ExcludeModules.String); err != nil {
				return nil, wrap("exclude_modules", err)
			}
		}
	case SelectList:
		m.exclude = c.ExcludeModules.List
		m.excludeSet = setOf(m.exclude)
	}
	for _, s := range c.ModulesToSave {
		re, err := savedModuleRe(s)
		if err != nil {
			return nil, wrap("modules_to_save", err)
		}
		m.savedRes = append(m.savedRes, re)
	}
	if len(c.LayersToTransform) > 0 {
		m.useLayers = true
		m.layerSet = map[int]bool{}
		for _, n := range c.LayersToTransform {
			m.layerSet[n] = true
		}
	}
	var lp []string
	switch c.LayersPattern.Kind {
	case SelectString:
		if c.LayersPattern.String != "" {
			lp = []string{c.LayersPattern.String}
		}
	case SelectList:
		lp = c.LayersPattern.List
	}
	for _, p := range lp {
		re, err := compilePy(`\A.*?\.`, p, `\.(?P<`+layerGroup+`>\d+)\.`)
		if err != nil {
			return nil, wrap("layers_pattern", err)
		}
		m.layerRes = append(m.layerRes, re)
	}
	switch c.FeedforwardModules.Kind {
	case SelectString:
		if m.ffRe, err = fullmatchRe(c.FeedforwardModules.String); err != nil {
			return nil, wrap("feedforward_modules", err)
		}
	case SelectList:
		m.ff = c.FeedforwardModules.List
	}
	for _, e := range c.RankPattern {
		re, err := suffixRe(e.Pattern)
		if err != nil {
			return nil, wrap("rank_pattern", err)
		}
		m.rankRes = append(m.rankRes, re)
		m.ranks = append(m.ranks, e.Rank)
	}
	for _, e := range c.AlphaPattern {
		re, err := suffixRe(e.Pattern)
		if err != nil {
			return nil, wrap("alpha_pattern", err)
		}
		m.alphaRes = append(m.alphaRes, re)
		m.alphas = append(m.alphas, e.Alpha)
	}
	return m, nil
}

func setOf(l []string) map[string]bool {
	s := make(map[string]bool, len(l))
	for _, e := range l {
		s[e] = true
	}
	return s
}

// MatchTarget reports whether PEFT would put an adapter on the module
// (check_target_module_exists). isLinear tells whether the module is an
// nn.Linear/Conv1D (used by "all-linear"). A null target_modules matches
// nothing (PEFT substitutes a per-architecture default first; see
// DefaultTargetModules).
func MatchTarget(c *Config, name string, isLinear bool) (bool, error) {
	m, err := NewMatcher(c)
	if err != nil {
		return false, err
	}
	return m.Target(name, isLinear), nil
}

// Target is MatchTarget with the compiled patterns.
func (m *Matcher) Target(name string, isLinear bool) bool {
	if m.excludeRe != nil && m.excludeRe.MatchString(name) {
		return false
	}
	if m.excludeSet != nil && (m.excludeSet[name] || hasDotSuffix(name, m.exclude)) {
		return false
	}
	for _, re := range m.savedRes {
		if re.MatchString(name) {
			return false
		}
	}
	switch m.targets.Kind {
	case SelectString:
		if m.targets.IsAllLinear() {
			return isLinear && !m.isHead(name)
		}
		return m.targetRe.MatchString(name)
	case SelectList:
		if m.targetSet[name] {
			return true
		}
		if !hasDotSuffix(name, m.targets.List) {
			return false
		}
		if !m.useLayers {
			return true
		}
		idx := m.layerIndex(name)
		return idx >= 0 && m.layerSet[idx]
	}
	return false
}

// isHead reports the output layers "all-linear" leaves out: the output
// embedding (lm_head), and for SEQ_CLS the classifier head.
func (m *Matcher) isHead(name string) bool {
	if name == "lm_head" || strings.HasSuffix(name, ".lm_head") {
		return true
	}
	return m.seqCls && (name == "score" || name == "classifier")
}

func hasDotSuffix(name string, list []string) bool {
	for _, e := range list {
		if len(name) > len(e) && strings.HasSuffix(name, e) && name[len(name)-len(e)-1] == '.' {
			return true
		}
	}
	return false
}

// layerIndex applies the layers_pattern rule (or the default) to name.
func (m *Matcher) layerIndex(name string) int {
	if m.layerRes == nil {
		return LayerIndex(name)
	}
	for _, re := range m.layerRes {
		sm := re.FindStringSubmatch(name)
		if sm == nil {
			continue
		}
		g := sm[re.SubexpIndex(layerGroup)]
		if g == "" {
			return -1 // Python would fail on int(None); treat as no index
		}
		n, err := strconv.Atoi(g)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

// LayerIndex returns the layer index PEFT's layers_to_transform uses when
// layers_pattern is unset: the first all-digit path segment preceded by at
// least two segments and followed by one (lazy `.*?\.[^.]*\.(\d+)\.`), or
// -1. "model.layers.3.mlp.up_proj" → 3.
func LayerIndex(name string) int {
	segs := strings.Split(name, ".")
	for i := 2; i < len(segs)-1; i++ {
		if allDigits(segs[i]) {
			n, err := strconv.Atoi(segs[i])
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// Feedforward reports whether an IA3 module is listed in
// feedforward_modules (string: re.fullmatch; list: plain suffix, as PEFT).
func (m *Matcher) Feedforward(name string) bool {
	if m.ffRe != nil {
		return m.ffRe.MatchString(name)
	}
	for _, e := range m.ff {
		if strings.HasSuffix(name, e) {
			return true
		}
	}
	return false
}

// Rank returns the rank PEFT gives the module: the first rank_pattern key
// (in JSON order) matching a dot-aligned suffix of name, else r.
func (m *Matcher) Rank(name string) int {
	for i, re := range m.rankRes {
		if re.MatchString(name) {
			return m.ranks[i]
		}
	}
	return m.r
}

// Alpha returns the module's alpha: the first matching alpha_pattern key,
// else lora_alpha.
func (m *Matcher) Alpha(name string) float64 {
	for i, re := range m.alphaRes {
		if re.MatchString(name) {
			return m.alphas[i]
		}
	}
	return m.alpha
}

// Scaling returns the module's scaling for the given rank (take it from the
// tensor shape): Alpha(name)/rank, or /√rank with use_rslora.
func (m *Matcher) Scaling(name string, rank int) float32 {
	return Scaling(m.Alpha(name), rank, m.rslora)
}

// Scaling is s = alpha/r, or alpha/√r for rsLoRA, computed in float64 and
// rounded once to float32 (spec §6). r <= 0 gives 0.
func Scaling(alpha float64, r int, rslora bool) float32 {
	if r <= 0 {
		return 0
	}
	if rslora {
		return float32(alpha / math.Sqrt(float64(r)))
	}
	return float32(alpha / float64(r))
}

// DefaultTargetModules returns PEFT's default target_modules for a
// transformers model_type when the config has none, or nil when unknown.
func DefaultTargetModules(modelType string) []string {
	switch modelType {
	case "llama", "mistral", "qwen2", "qwen3", "gemma":
		return []string{"q_proj", "v_proj"}
	case "gpt2":
		return []string{"c_attn"}
	}
	return nil
}
