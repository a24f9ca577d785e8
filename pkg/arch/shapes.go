package arch

import (
	"embed"
	"fmt"
	"sort"
	"strings"
)

//go:embed shapes/*.json
var shapeFiles embed.FS

// Shapes lists the built-in model shapes: real config.json files of public
// models (no weights), for planning without a download. shapes/README.md
// names each file's source.
func Shapes() []string {
	es, _ := shapeFiles.ReadDir("shapes")
	var out []string
	for _, e := range es {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ShapeJSON returns a built-in shape's config.json.
func ShapeJSON(name string) ([]byte, error) {
	b, err := shapeFiles.ReadFile("shapes/" + name + ".json")
	if err != nil || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("%w: no built-in shape %q (shapes: %s)", ErrConfig, name, strings.Join(Shapes(), ", "))
	}
	return b, nil
}

// Shape parses a built-in shape.
func Shape(name string) (*Config, error) {
	b, err := ShapeJSON(name)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("shape %s: %w", name, err)
	}
	return c, nil
}
