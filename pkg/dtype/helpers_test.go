package dtype

import (
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
)

// fixtures returns the shared fixtures folder, walking up from the package.
func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}
