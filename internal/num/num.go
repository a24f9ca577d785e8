// Package num holds the small helpers every layer shares: counts and sizes
// formatted for people, element counts of shapes, float32 byte views and a
// 64-bit mixer for deterministic random streams. It imports nothing of
// lorakit.
package num

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unsafe"
)

// Thousands formats n with comma separators, as PEFT prints parameter
// counts: 13631488 → "13,631,488".
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	digits := s
	if n < 0 {
		digits = s[1:]
	}
	out := make([]byte, 0, len(s)+len(digits)/3)
	if n < 0 {
		out = append(out, '-')
	}
	for i := range len(digits) {
		if i > 0 && (len(digits)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, digits[i])
	}
	return string(out)
}

// Bytes formats a byte count with binary units and the given number of
// decimals: Bytes(1536, 1) is "1.5 KiB"; counts below 1 KiB are exact.
func Bytes(n int64, decimals int) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.*f %ciB", decimals, float64(n)/float64(div), "KMGTPE"[exp])
}

// Elements is the number of elements of a shape (1 for a scalar). The
// shape must have been validated (no negative dimension, no overflow).
func Elements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// F32Bytes returns the little-endian bytes of f: a view of f's memory on
// little-endian hosts (amd64, arm64), a copy elsewhere. Do not modify f
// while the bytes are in use.
func F32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
	}
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// Transpose returns the cols×rows transpose of the rows×cols matrix x.
func Transpose(x []float32, rows, cols int) []float32 {
	out := make([]float32, len(x))
	for i := range rows {
		for j := range cols {
			out[j*rows+i] = x[i*cols+j]
		}
	}
	return out
}

// Golden is the SplitMix64 increment, 2^64/φ.
const Golden = 0x9E3779B97F4A7C15

// Mix64 is the SplitMix64 finalizer: a bijection of uint64 whose outputs
// for consecutive inputs look independent. SplitMix64's n-th output is
// Mix64(seed + n·Golden).
func Mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}
