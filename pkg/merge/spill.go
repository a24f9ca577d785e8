package merge

import (
	"fmt"
	"os"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/pipeline"
)

// spillFile holds re-quantized 4-bit weights, computed before the output's
// header can be written (it needs their state tensors' sizes). It is an
// unlinked temporary file: nothing is left behind, whatever happens.
type spillFile struct {
	dir   string
	f     *os.File
	end   int64
	where map[string]spilled
}

type spilled struct {
	off, n int64
	dt     dtype.DType
	shape  []int64
}

func (s *spillFile) put(name string, dt dtype.DType, shape []int64, data []byte) error {
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, ".lora-merge-spill-*")
		if err != nil {
			return err
		}
		os.Remove(f.Name())
		s.f, s.where = f, map[string]spilled{}
	}
	if _, err := s.f.WriteAt(data, s.end); err != nil {
		return fmt.Errorf("spill file: %w", err)
	}
	s.where[name] = spilled{s.end, int64(len(data)), dt, shape}
	s.end += int64(len(data))
	return nil
}

// job writes a spilled tensor, read back in pieces.
func (s *spillFile) job(name string) *pipeline.Job {
	e := s.where[name]
	return pipeline.CopyJob(name, e.n, func(p []byte, off int64) error {
		if _, err := s.f.ReadAt(p, e.off+off); err != nil {
			return fmt.Errorf("spill file: tensor %q: %w", name, err)
		}
		return nil
	})
}

func (s *spillFile) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
