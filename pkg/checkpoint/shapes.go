package checkpoint

import (
	"embed"
	"fmt"
	"os"
	"sort"
	"strings"
)

//go:embed shapes/*.json
var shapeFiles embed.FS

// Shapes lists the built-in model shapes (config.json files of public
// architectures, no weights): "llama3-8b" (Llama 3.1 8B) and "llama3.2-1b".
func Shapes() []string {
	es, _ := shapeFiles.ReadDir("shapes")
	var out []string
	for _, e := range es {
		out = append(out, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(out)
	return out
}

// LoadConfig reads a config.json from a path, or a built-in shape by name.
func LoadConfig(nameOrPath string) (*Config, error) {
	b, err := shapeFiles.ReadFile("shapes/" + nameOrPath + ".json")
	if err != nil {
		if _, serr := os.Stat(nameOrPath); serr != nil {
			return nil, fmt.Errorf("%s: not a file nor a built-in shape (%s)", nameOrPath, strings.Join(Shapes(), ", "))
		}
		if b, err = readBounded(nameOrPath); err != nil {
			return nil, err
		}
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", nameOrPath, err)
	}
	return c, nil
}
