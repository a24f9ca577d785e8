//go:build unix && !linux

package pipeline

const populate = 0
