package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// cacheVersion changes when the layout or meaning of cache entries does.
const cacheVersion = "lorakit-cuda-kernels-v1"

// cacheKey identifies the compiled image of one kernel source: its contents,
// the headers it may include, the compiler options (which hold the target
// architecture), the driver and NVRTC versions. Any change gives a new key.
func cacheKey(file string, src map[string]string, headers []string, options []string, driver int, nvrtc string) string {
	h := sha256.New()
	field := func(s string) {
		io.WriteString(h, strconv.Itoa(len(s)))
		io.WriteString(h, ":")
		io.WriteString(h, s)
	}
	field(cacheVersion)
	field(file)
	field(src[file])
	hs := append([]string(nil), headers...)
	sort.Strings(hs)
	for _, n := range hs {
		field(n)
		field(src[n])
	}
	for _, o := range options {
		field(o)
	}
	field(strconv.Itoa(driver))
	field(nvrtc)
	return hex.EncodeToString(h.Sum(nil))
}

// cachePath returns the file of key in dir: the source's base name for
// legibility, then the key.
func cachePath(dir, file, key, ext string) string {
	base := file[:len(file)-len(filepath.Ext(file))]
	return filepath.Join(dir, fmt.Sprintf("%s-%s.%s", base, key[:32], ext))
}

// readCache returns the cached image, if any.
func readCache(path string) ([]byte, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return nil, false
	}
	return b, true
}

// writeCache stores data at path atomically: a temporary file in the same
// folder, synced, then renamed, so a concurrent reader sees the old file or
// the whole new one.
func writeCache(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// chooseTarget picks the NVRTC target for a device of compute capability
// cc (e.g. 90) given the architectures NVRTC supports (nil: unknown, assume
// cc is). A supported cc gives "sm_<cc>" compiled to a cubin; otherwise the
// newest supported architecture below cc, as "compute_<arch>" PTX that the
// driver compiles. ok is false when NVRTC supports nothing at or below cc.
func chooseTarget(cc int, supported []int) (option string, cubin, ok bool) {
	if len(supported) == 0 {
		return fmt.Sprintf("--gpu-architecture=sm_%d", cc), true, true
	}
	best := -1
	for _, a := range supported {
		if a == cc {
			return fmt.Sprintf("--gpu-architecture=sm_%d", cc), true, true
		}
		if a < cc && a > best {
			best = a
		}
	}
	if best < 0 {
		return "", false, false
	}
	return fmt.Sprintf("--gpu-architecture=compute_%d", best), false, true
}
