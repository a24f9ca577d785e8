//go:build !unix

package safetensors

import "os"

const canMmap = false

func mmapFile(*os.File, int64) ([]byte, error) { return nil, nil }

func munmap([]byte) error { return nil }
