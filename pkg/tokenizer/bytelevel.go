package tokenizer

import "unicode/utf8"

// byteToRune is GPT-2's bytes_to_unicode table: every byte maps to a printable
// rune so that byte-level tokens are valid, visible strings ("Ġ" for a space).
var (
	byteToRune [256]rune
	runeToByte [512]int16 // -1: not in the alphabet
	// byteToStr[b] is string(byteToRune[b]), kept to avoid allocations.
	byteToStr [256]string
)

func init() {
	n := 0
	for i := range runeToByte {
		runeToByte[i] = -1
	}
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if printable {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = int16(b)
		byteToStr[b] = string(byteToRune[b])
	}
}

// byteLevelEncode maps raw bytes to the byte-level alphabet.
func byteLevelEncode(s string) string {
	buf := make([]byte, 0, len(s)*2)
	for i := 0; i < len(s); i++ {
		buf = utf8.AppendRune(buf, byteToRune[s[i]])
	}
	return string(buf)
}

// byteLevelDecode maps a byte-level token back to raw bytes. ok is false when
// some rune is outside the alphabet; HF then keeps the token's UTF-8 bytes as
// they are.
func byteLevelDecode(dst []byte, tok string) ([]byte, bool) {
	n := len(dst)
	for _, r := range tok {
		if r >= 512 || runeToByte[r] < 0 {
			return dst[:n], false
		}
		dst = append(dst, byte(runeToByte[r]))
	}
	return dst, true
}

// utf8Lossy converts b to a string, replacing each maximal invalid subpart
// with U+FFFD, like Rust's String::from_utf8_lossy and the WHATWG decoder.
func utf8Lossy(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			out = append(out, b[i])
			i++
			continue
		}
		r, w := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || w > 1 {
			out = append(out, b[i:i+w]...)
			i += w
			continue
		}
		// Invalid: skip the maximal prefix of a well-formed sequence.
		i += maximalSubpart(b[i:])
		out = append(out, "\uFFFD"...)
	}
	return string(out)
}

// maximalSubpart returns the length (>= 1) of the longest prefix of b that is
// a prefix of some well-formed UTF-8 sequence (Unicode 3.9, table 3-7).
func maximalSubpart(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		x := b[n]
		if k == 0 {
			if x < lo || x > hi {
				return n
			}
		} else if x < 0x80 || x > 0xBF {
			return n
		}
		n++
	}
	return n
}
