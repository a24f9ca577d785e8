//go:build purego || !(amd64 || arm64)

package nibble

var impl = generic
