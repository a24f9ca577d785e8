// Package layers holds the test that keeps lorakit's packages in layers:
// it lists every package with `go list` and fails on an import that
// ARCHITECTURE.md forbids, or on a package that has no layer yet.
package layers
