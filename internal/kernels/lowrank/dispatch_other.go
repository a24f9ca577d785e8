//go:build purego || !(amd64 || arm64)

package lowrank

var impl = generic
