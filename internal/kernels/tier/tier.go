// Package tier chooses, once at start, which CPU code path the kernels of
// internal/kernels use.
//
// The tiers are Generic (plain Go, every platform), AVX2 (amd64 with AVX2,
// FMA and F16C), AVX512 (amd64 with AVX-512 F, BW, DQ and VL) and NEON
// (arm64). The best tier the CPU supports is chosen from
// golang.org/x/sys/cpu; the environment variable LORAKIT_CPU
// (generic, avx2, avx512, neon or auto) forces one, for tests and bug
// reports. A forced tier the CPU or the build lacks falls back to the best
// tier below it, and Note says so. Built with the purego tag, no assembly is
// linked and the tier is always Generic.
package tier

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// Tier is a CPU code path.
type Tier uint8

// The tiers, lowest first. AVX512 implies AVX2.
const (
	Generic Tier = iota
	AVX2
	AVX512
	NEON
)

// EnvVar is the environment variable that forces a tier.
const EnvVar = "LORAKIT_CPU"

var names = [...]string{Generic: "generic", AVX2: "avx2", AVX512: "avx512", NEON: "neon"}

// String returns the tier's name as LORAKIT_CPU spells it.
func (t Tier) String() string {
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("tier(%d)", uint8(t))
}

// Parse returns the tier named s (case-insensitive); "auto" and "" give
// ok = true with auto = true.
func Parse(s string) (t Tier, auto, ok bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "auto" {
		return Generic, true, true
	}
	for i, n := range names {
		if n == s {
			return Tier(i), false, true
		}
	}
	return Generic, false, false
}

var active, requested, note = choose(os.Getenv(EnvVar), supported())

// Active returns the tier every kernel uses in this process.
func Active() Tier { return active }

// Requested returns the tier LORAKIT_CPU asked for, or the best supported
// one when it is unset or "auto".
func Requested() Tier { return requested }

// Note explains why the active tier is not the one LORAKIT_CPU asked for
// (an unknown name, or a tier the CPU or the build lacks); "" otherwise.
func Note() string { return note }

// Supported returns the tiers this CPU and build can run, lowest first.
func Supported() []Tier { return supported() }

// Has reports whether the active tier is t or a tier that implies it (AVX512
// implies AVX2).
func Has(t Tier) bool {
	switch t {
	case Generic:
		return true
	case AVX2:
		return active == AVX2 || active == AVX512
	}
	return active == t
}

// Describe returns the active tier with the note, if any, for reports such
// as "avx512" or "generic (LORAKIT_CPU=avx512: the CPU lacks it)".
func Describe() string {
	if note == "" {
		return active.String()
	}
	return fmt.Sprintf("%s (%s)", active, note)
}

// choose picks the tier from the environment value env and the supported
// tiers (lowest first; Generic is always first).
func choose(env string, sup []Tier) (act, req Tier, note string) {
	best := sup[len(sup)-1]
	t, auto, ok := Parse(env)
	switch {
	case !ok:
		return best, best, fmt.Sprintf("%s=%q is not one of generic, avx2, avx512, neon, auto", EnvVar, env)
	case auto:
		return best, best, ""
	}
	for i := len(sup) - 1; i >= 0; i-- {
		if sup[i] == t {
			return t, t, ""
		}
	}
	// The best supported tier below t on the same architecture (AVX2 for
	// AVX512); otherwise Generic.
	act = Generic
	if t == AVX512 && slices.Contains(sup, AVX2) {
		act = AVX2
	}
	return act, t, fmt.Sprintf("%s=%s: not available on this CPU or build, using %s", EnvVar, t, act)
}
