package tool

import (
	"testing"

	"github.com/lorakit/lorakit/pkg/errclass"
)

func TestStdinOnce(t *testing.T) {
	for _, paths := range [][]string{nil, {"a", "b"}, {"-", "a", ""}, {"", ""}} {
		if err := StdinOnce(paths...); err != nil {
			t.Errorf("%q: %v", paths, err)
		}
	}
	if err := StdinOnce("a", "-", "b", "-"); errclass.Of(err) != errclass.Usage {
		t.Errorf("two dashes: %v (class %v), want a usage error", err, errclass.Of(err))
	}
}
