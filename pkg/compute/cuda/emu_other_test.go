//go:build !(linux && (amd64 || arm64))

package cuda

import "errors"

type emulator struct{}

func sharedEmulator() (*emulator, error) { return nil, errors.New("the emulator needs linux") }
func cleanupEmulator()                   {}
func (e *emulator) run(*launch) error    { return nil }
func clangPath() string                  { return "" }
