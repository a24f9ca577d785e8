//go:build amd64 && !purego

package tier

import "golang.org/x/sys/cpu"

func supported() []Tier {
	x := &cpu.X86
	s := []Tier{Generic}
	if x.HasAVX2 && x.HasFMA && x.HasF16C && x.HasBMI2 {
		s = append(s, AVX2)
		if x.HasAVX512F && x.HasAVX512BW && x.HasAVX512DQ && x.HasAVX512VL {
			s = append(s, AVX512)
		}
	}
	return s
}
