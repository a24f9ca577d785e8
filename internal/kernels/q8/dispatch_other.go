//go:build purego || !amd64

package q8

var impl = generic
