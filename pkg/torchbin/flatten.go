package torchbin

import (
	"fmt"
	"strconv"
)

// wrapperKeys are the keys under which training loops nest a model's state
// dict (Lightning: state_dict; many scripts: model_state_dict or model;
// DeepSpeed: module), in the order they are tried.
var wrapperKeys = []string{"state_dict", "model_state_dict", "model", "module"}

type namedTensor struct {
	name string
	t    *tensorVal
}

// flattener walks the unpickled object into named tensors (see the package
// documentation for the rule). budget bounds the nodes visited, so shared
// containers (a DAG the memo can build) cannot blow the walk up.
type flattener struct {
	out     []namedTensor
	skipped []string
	seen    map[string]bool
	onPath  map[any]bool
	budget  int
}

func flattenStateDict(root any, budget int) ([]namedTensor, []string, error) {
	fl := &flattener{seen: map[string]bool{}, onPath: map[any]bool{}, budget: budget}
	switch root.(type) {
	case *pyDict, *pyList, pyTuple:
	case *tensorVal:
		return nil, nil, fmt.Errorf("%w: the file holds a single tensor, not a dict of tensors", ErrStateDict)
	default:
		return nil, nil, fmt.Errorf("%w: the file holds a %s, not a dict of tensors", ErrStateDict, typeName(root))
	}
	if d, ok := root.(*pyDict); ok {
		if inner, key, ok, err := fl.unwrap(d); err != nil {
			return nil, nil, err
		} else if ok {
			for _, k := range d.keys {
				if s, _ := k.(string); s != key {
					fl.skip(keyString(k, ""))
				}
			}
			root = inner
		}
	}
	if err := fl.walk(root, "", 0); err != nil {
		return nil, nil, err
	}
	return fl.out, fl.skipped, nil
}

// unwrap finds the wrapped state dict of a checkpoint like
// {"epoch": 3, "state_dict": {...}}: no tensor directly at the top, and a
// wrapper key whose value is a dict holding tensors.
func (fl *flattener) unwrap(d *pyDict) (any, string, bool, error) {
	for _, v := range d.vals {
		if _, ok := v.(*tensorVal); ok {
			return nil, "", false, nil
		}
	}
	for _, key := range wrapperKeys {
		i, ok := d.index[dictKey{s: key}]
		if !ok {
			continue
		}
		inner, ok := d.vals[i].(*pyDict)
		if !ok {
			continue
		}
		has, err := fl.holdsTensor(inner, 0)
		if err != nil {
			return nil, "", false, err
		}
		if has {
			return inner, key, true, nil
		}
	}
	return nil, "", false, nil
}

func (fl *flattener) spend() error {
	fl.budget--
	if fl.budget < 0 {
		return fmt.Errorf("%w: the object graph is larger than the pickle (containers shared too often)", ErrStateDict)
	}
	return nil
}

// holdsTensor reports whether v contains a tensor at any depth.
func (fl *flattener) holdsTensor(v any, depth int) (bool, error) {
	if err := fl.spend(); err != nil {
		return false, err
	}
	if depth > MaxDepth {
		return false, fmt.Errorf("%w: containers nested deeper than %d", ErrStateDict, MaxDepth)
	}
	var children []any
	switch v := v.(type) {
	case *tensorVal:
		return true, nil
	case *pyDict:
		children = v.vals
	case *pyList:
		children = v.items
	case pyTuple:
		children = v
	}
	for _, c := range children {
		if ok, err := fl.holdsTensor(c, depth+1); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

func (fl *flattener) skip(path string) {
	fl.skipped = append(fl.skipped, path)
}

func (fl *flattener) walk(v any, path string, depth int) error {
	if err := fl.spend(); err != nil {
		return err
	}
	if depth > MaxDepth {
		return fmt.Errorf("%w: %q: containers nested deeper than %d", ErrStateDict, path, MaxDepth)
	}
	// A container without tensors is skipped as a whole.
	tensors, skipped := len(fl.out), len(fl.skipped)
	if err := fl.walkValue(v, path, depth); err != nil {
		return err
	}
	if path != "" && len(fl.out) == tensors {
		fl.skipped = append(fl.skipped[:skipped], path)
	}
	return nil
}

func (fl *flattener) walkValue(v any, path string, depth int) error {
	switch v := v.(type) {
	case *tensorVal:
		if fl.seen[path] {
			return fmt.Errorf("%w: two tensors are named %q once nested keys are joined with \".\"", ErrStateDict, path)
		}
		if len(fl.out) >= MaxTensors {
			return fmt.Errorf("%w: more than %d tensors", ErrStateDict, MaxTensors)
		}
		fl.seen[path] = true
		fl.out = append(fl.out, namedTensor{name: path, t: v})
		return nil
	case *pyDict:
		if fl.onPath[v] {
			return fmt.Errorf("%w: %q: a dict that contains itself", ErrStateDict, path)
		}
		fl.onPath[v] = true
		defer delete(fl.onPath, v)
		for i, k := range v.keys {
			var child string
			switch k.(type) {
			case string, int64:
				child = keyString(k, path)
			default:
				fl.skip(join(path, "<"+typeName(k)+" key>"))
				continue
			}
			if err := fl.walk(v.vals[i], child, depth+1); err != nil {
				return err
			}
		}
		return nil
	case *pyList:
		if fl.onPath[v] {
			return fmt.Errorf("%w: %q: a list that contains itself", ErrStateDict, path)
		}
		fl.onPath[v] = true
		defer delete(fl.onPath, v)
		return fl.walkItems(v.items, path, depth)
	case pyTuple:
		return fl.walkItems(v, path, depth)
	}
	return nil // a value that is not a tensor: walk lists it as skipped
}

func (fl *flattener) walkItems(items []any, path string, depth int) error {
	for i, it := range items {
		if err := fl.walk(it, join(path, strconv.Itoa(i)), depth+1); err != nil {
			return err
		}
	}
	return nil
}

func keyString(k any, parent string) string {
	switch k := k.(type) {
	case string:
		return join(parent, k)
	case int64:
		return join(parent, strconv.FormatInt(k, 10))
	}
	return join(parent, "<"+typeName(k)+" key>")
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}
