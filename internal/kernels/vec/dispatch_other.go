//go:build purego || !amd64

package vec

const (
	useFMA   = false
	lanes    = 1
	implName = "generic"
)

// Never called: useFMA is false.
func dotK([]float32, []float32, *[16]float32)       {}
func axpyK([]float32, []float32, float32)           {}
func expsK([]float32)                               {}
func maxAbs16K([]uint16, *[32]uint16)               {}
func minInf16K([]uint16, *[32]uint16)               {}
func maxAbs32K([]uint32, *[16]uint32)               {}
func maxAbs16BlocksK([]uint16, []uint16, int)       {}
func maxAbs32BlocksK([]uint32, []uint32, int)       {}
func dotNK([]float32, []float32, int, []float32)    {}
func axpyNK([]float32, int, []float32, []float32)   {}
func axpyAccK([]float32, []float32, int, []float32) {}
