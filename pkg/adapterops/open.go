package adapterops

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/tool"
)

// sources is a set of opened adapters, closed together.
type sources []source

func (ss sources) Close() {
	for _, s := range ss {
		if s != nil {
			s.Close()
		}
	}
}

// openAll opens every path; at most one may be "-" (stdin).
func openAll(sm seam, env *tool.Env, paths []string) (sources, error) {
	stdin := 0
	for _, p := range paths {
		if p == "-" {
			stdin++
		}
	}
	if stdin > 1 {
		return nil, fmt.Errorf("%w: only one adapter can be read from stdin (\"-\")", ErrOption)
	}
	ss := make(sources, 0, len(paths))
	for _, p := range paths {
		s, err := sm.openAdapter(p, env)
		if err != nil {
			ss.Close()
			return nil, err
		}
		ss = append(ss, s)
	}
	return ss, nil
}

// moduleSet is the union of the LoRA modules of several adapters, in
// module order, with each adapter's module (nil where it has none).
type moduleSet struct {
	paths   []string
	members map[string][]*peft.Module // path → one entry per adapter
}

// unionModules gathers the modules of every source and checks that a module
// present in several has the same kind and shape in each.
func unionModules(ss sources) (*moduleSet, error) {
	set := &moduleSet{members: map[string][]*peft.Module{}}
	for i, s := range ss {
		an := s.Analysis()
		for k := range an.Modules {
			m := &an.Modules[k]
			ms := set.members[m.Path]
			if ms == nil {
				ms = make([]*peft.Module, len(ss))
				set.members[m.Path] = ms
				set.paths = append(set.paths, m.Path)
			}
			for j, o := range ms {
				if o == nil {
					continue
				}
				if o.Kind != m.Kind || o.In != m.In || o.Out != m.Out {
					return nil, fmt.Errorf("%w: module %s is a %s %d→%d in %s but a %s %d→%d in %s (adapters of different base models?)",
						ErrIncompatible, m.Path, o.Kind, o.In, o.Out, ss[j].Path(), m.Kind, m.In, m.Out, s.Path())
				}
				break
			}
			ms[i] = m
		}
	}
	sortPaths(set.paths)
	return set, nil
}

// sortPaths orders module paths by layer index (numerically), then by name.
func sortPaths(paths []string) {
	slices.SortStableFunc(paths, func(a, b string) int {
		return cmp.Or(cmp.Compare(peft.LayerIndex(a), peft.LayerIndex(b)), strings.Compare(a, b))
	})
}
