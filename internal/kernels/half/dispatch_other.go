//go:build purego || !(amd64 || arm64)

package half

var impl = generic
