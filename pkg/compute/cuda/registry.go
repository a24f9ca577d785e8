package cuda

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/lorakit/lorakit/kernels"
)

// argKind is the C type of one kernel parameter, as far as the launch cares.
type argKind uint8

const (
	argPtr argKind = iota + 1 // any pointer (a device address)
	argI32                    // int
	argU32                    // unsigned int
	argI64                    // long long
	argU64                    // unsigned long long
	argF32                    // float
	argF64                    // double
)

var argKindNames = [...]string{argPtr: "pointer", argI32: "int", argU32: "unsigned int", argI64: "long long",
	argU64: "unsigned long long", argF32: "float", argF64: "double"}

func (k argKind) String() string {
	if int(k) < len(argKindNames) && argKindNames[k] != "" {
		return argKindNames[k]
	}
	return fmt.Sprintf("argKind(%d)", uint8(k))
}

// size returns the number of bytes of the parameter.
func (k argKind) size() int {
	switch k {
	case argI32, argU32, argF32:
		return 4
	}
	return 8
}

// kernelSig is one extern "C" kernel of the embedded sources.
type kernelSig struct {
	name   string
	file   string
	params []argKind
	types  []string // the declared C types, e.g. "const float*"
	body   string   // the source from the kernel's name to the next kernel
	// maxThreads is the block size of its __launch_bounds__ (0: none).
	maxThreads int
	// barrier: the kernel synchronizes its block (__syncthreads), directly
	// or through the device functions it calls.
	barrier bool
}

// registry maps kernel names to their source file and parameters.
type registry struct {
	kernels map[string]kernelSig
	files   []string            // the *.cu sources
	sources map[string]string   // name → contents, *.cu and *.cuh
	byFile  map[string][]string // file → kernel names
}

var (
	regOnce sync.Once
	reg     *registry
	regErr  error
)

// kernelRegistry parses the embedded sources once.
func kernelRegistry() (*registry, error) {
	regOnce.Do(func() {
		src := map[string]string{}
		for _, n := range append(kernels.Sources(), kernels.Headers()...) {
			s, err := kernels.Read(n)
			if err != nil {
				regErr = err
				return
			}
			src[n] = s
		}
		reg, regErr = parseRegistry(kernels.Sources(), src)
	})
	return reg, regErr
}

var (
	kernelRE  = regexp.MustCompile(`extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\(\s*(\w+)\s*(?:,[^)]*)?\)\s+)?(\w+)\s*\(([^)]*)\)`)
	commentRE = regexp.MustCompile(`(?s)//[^\n]*|/\*.*?\*/`)
	spaceRE   = regexp.MustCompile(`\s+`)
)

// parseRegistry finds every extern "C" __global__ kernel of files (contents in
// src) and the kinds of its parameters.
func parseRegistry(files []string, src map[string]string) (*registry, error) {
	r := &registry{kernels: map[string]kernelSig{}, files: files, sources: src, byFile: map[string][]string{}}
	var all []string
	for _, text := range src {
		all = append(all, commentRE.ReplaceAllString(text, ""))
	}
	syncs := syncFuncs(all)
	for _, f := range files {
		text := commentRE.ReplaceAllString(src[f], "")
		locs := kernelRE.FindAllStringSubmatchIndex(text, -1)
		for li, loc := range locs {
			m := []string{"", text[loc[4]:loc[5]], text[loc[6]:loc[7]]}
			bound := 0
			if loc[2] >= 0 {
				var err error
				if bound, err = launchBound(text[loc[2]:loc[3]], src, f); err != nil {
					return nil, fmt.Errorf("cuda: %s: kernel %s: %w", f, m[1], err)
				}
			}
			end := len(text)
			if li+1 < len(locs) {
				end = locs[li+1][0]
			}
			body := text[loc[0]:end]
			name := m[1]
			if prev, ok := r.kernels[name]; ok {
				return nil, fmt.Errorf("cuda: kernel %s defined in %s and %s", name, prev.file, f)
			}
			var params []argKind
			var types []string
			if p := strings.TrimSpace(m[2]); p != "" && p != "void" {
				for _, decl := range strings.Split(p, ",") {
					k, err := paramKind(decl)
					if err != nil {
						return nil, fmt.Errorf("cuda: %s: kernel %s: %w", f, name, err)
					}
					params = append(params, k)
					types = append(types, paramType(decl))
				}
			}
			r.kernels[name] = kernelSig{name: name, file: f, params: params, types: types, body: body, maxThreads: bound,
				barrier: callsSync(body, syncs)}
			r.byFile[f] = append(r.byFile[f], name)
		}
	}
	return r, nil
}

var (
	deviceRE = regexp.MustCompile(`__device__[^;{}()]*?\b(\w+)\s*\(`)
	callRE   = regexp.MustCompile(`\b(\w+)\s*(?:<[^<>;]*>)?\s*\(`)
)

// syncFuncs returns the device functions of texts (sources without
// comments) that synchronize their block: their body calls __syncthreads
// or another such function.
func syncFuncs(texts []string) map[string]bool {
	bodies := map[string]string{}
	for _, text := range texts {
		for _, loc := range deviceRE.FindAllStringSubmatchIndex(text, -1) {
			name := text[loc[2]:loc[3]]
			if b, ok := braceBody(text, loc[1]-1); ok {
				bodies[name] += b
			}
		}
	}
	syncs := map[string]bool{}
	for changed := true; changed; {
		changed = false
		for name, b := range bodies {
			if !syncs[name] && callsSync(b, syncs) {
				syncs[name], changed = true, true
			}
		}
	}
	return syncs
}

// callsSync reports whether body calls __syncthreads or a function of
// syncs.
func callsSync(body string, syncs map[string]bool) bool {
	if strings.Contains(body, "__syncthreads") {
		return true
	}
	for _, m := range callRE.FindAllStringSubmatch(body, -1) {
		if syncs[m[1]] {
			return true
		}
	}
	return false
}

// braceBody returns the {...} block that follows the parameter list whose
// '(' is at open, or false for a declaration.
func braceBody(text string, open int) (string, bool) {
	depth, i := 0, open
	for ; i < len(text); i++ {
		if text[i] == '(' {
			depth++
		} else if text[i] == ')' {
			if depth--; depth == 0 {
				break
			}
		}
	}
	j := i + 1
	for j < len(text) && text[j] != '{' && text[j] != ';' {
		j++
	}
	if j >= len(text) || text[j] != '{' {
		return "", false
	}
	depth = 0
	for k := j; k < len(text); k++ {
		switch text[k] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return text[j : k+1], true
			}
		}
	}
	return "", false
}

var defineRE = regexp.MustCompile(`(?m)^#define\s+(\w+)\s+(\d+)\s*$`)

// launchBound returns the value of a __launch_bounds__ argument: a number,
// or a macro #defined as one in file or in a header of src.
func launchBound(v string, src map[string]string, file string) (int, error) {
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return n, nil
	}
	for name, text := range src {
		if name != file && !strings.HasSuffix(name, ".cuh") {
			continue
		}
		for _, m := range defineRE.FindAllStringSubmatch(text, -1) {
			if m[1] == v {
				return strconv.Atoi(m[2])
			}
		}
	}
	return 0, fmt.Errorf("__launch_bounds__(%s): not a number nor a #define of one", v)
}

// paramKind classifies one C parameter declaration such as
// "const float* __restrict__ x" or "long long n".
func paramKind(decl string) (argKind, error) {
	d := spaceRE.ReplaceAllString(strings.TrimSpace(decl), " ")
	if strings.Contains(d, "*") {
		return argPtr, nil
	}
	fields := strings.Fields(d)
	if len(fields) < 2 {
		return 0, fmt.Errorf("parameter %q has no name", decl)
	}
	var ty []string
	for _, w := range fields[:len(fields)-1] {
		if w == "const" || w == "__restrict__" {
			continue
		}
		ty = append(ty, w)
	}
	switch strings.Join(ty, " ") {
	case "int", "signed int":
		return argI32, nil
	case "unsigned int", "unsigned":
		return argU32, nil
	case "long long", "long long int", "signed long long":
		return argI64, nil
	case "unsigned long long", "unsigned long long int":
		return argU64, nil
	case "float":
		return argF32, nil
	case "double":
		return argF64, nil
	}
	return 0, fmt.Errorf("parameter %q: unsupported type", decl)
}

// paramType returns the C type of a parameter declaration: the declaration
// without its name and without __restrict__.
func paramType(decl string) string {
	d := strings.ReplaceAll(spaceRE.ReplaceAllString(strings.TrimSpace(decl), " "), "__restrict__", "")
	i := strings.LastIndexFunc(d, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
	return strings.TrimSpace(spaceRE.ReplaceAllString(d[:i+1], " "))
}

// names returns the kernel names, sorted.
func (r *registry) names() []string {
	var ns []string
	for n := range r.kernels {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// headerNames returns the names of the headers (*.cuh) among the sources.
func headerNames(r *registry) []string {
	var hs []string
	for n := range r.sources {
		if strings.HasSuffix(n, ".cuh") {
			hs = append(hs, n)
		}
	}
	sort.Strings(hs)
	return hs
}
