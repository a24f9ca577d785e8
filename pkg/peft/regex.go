package peft

import (
	"fmt"
	"regexp"
	"strings"
)

// Python re → Go regexp. PEFT patterns are Python `re` syntax; Go's RE2 is a
// large common subset. translatePy rewrites the few spellings that differ
// (\Z, \uXXXX, {,n}, {,}) and refuses constructs that RE2 lacks or reads
// differently (look-around, back-references, conditionals, atomic groups,
// verbose/ASCII/locale flags, \p, \Q, POSIX classes), so a pattern is either
// matched with Python's meaning or reported with ErrUnsupportedPattern.
// Known residual difference: \d, \w, \s and \b are ASCII-only in Go, while
// Python's str patterns are Unicode-aware; module names are ASCII.

// translatePy returns the Go-syntax body of a Python pattern. atStart
// tells whether p begins the whole Python pattern: global inline flags such
// as (?i) are only allowed there (Python ≥ 3.11 rejects them elsewhere, so
// PEFT cannot use them in rank_pattern, modules_to_save or layers_pattern).
func translatePy(p string, atStart bool) (string, error) {
	var out strings.Builder
	unsupported := func(what string) (string, error) {
		return "", fmt.Errorf("pattern %q: %s: %w", p, what, ErrUnsupportedPattern)
	}
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '\\' {
			if i+1 >= len(p) {
				return unsupported("trailing backslash")
			}
			i++
			e := p[i]
			switch {
			case e >= '1' && e <= '9':
				if inClass {
					return unsupported("octal escape in a character class")
				}
				return unsupported("back-reference")
			case e == 'Z':
				if inClass {
					return unsupported(`\Z in a character class`)
				}
				out.WriteString(`\z`)
			case e == 'u' || e == 'U':
				n := 4
				if e == 'U' {
					n = 8
				}
				if i+n >= len(p) {
					return unsupported(`truncated \` + string(e) + ` escape`)
				}
				hex := p[i+1 : i+1+n]
				for j := 0; j < n; j++ {
					if !isHex(hex[j]) {
						return unsupported(`bad \` + string(e) + ` escape`)
					}
				}
				out.WriteString(`\x{` + hex + `}`)
				i += n
			case strings.IndexByte("zpPQECNGXRKhHLlVco", e) >= 0:
				return unsupported(`escape \` + string(e))
			default:
				out.WriteByte('\\')
				out.WriteByte(e)
			}
			continue
		}
		if inClass {
			if c == '[' && i+1 < len(p) && (p[i+1] == ':' || p[i+1] == '=' || p[i+1] == '.') {
				return unsupported("POSIX character class syntax")
			}
			if c == ']' {
				inClass = false
			}
			out.WriteByte(c)
			continue
		}
		switch c {
		case '[':
			inClass = true
			out.WriteByte('[')
			// A ']' right after '[' or '[^' is a literal in both dialects.
			if i+1 < len(p) && p[i+1] == '^' {
				out.WriteByte('^')
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				out.WriteString(`\]`)
				i++
			}
		case '(':
			if i+1 < len(p) && p[i+1] == '?' {
				rest := p[i+2:]
				switch {
				case strings.HasPrefix(rest, ":"):
				case strings.HasPrefix(rest, "P<"):
				case strings.HasPrefix(rest, "P="):
					return unsupported("named back-reference")
				case strings.HasPrefix(rest, "="), strings.HasPrefix(rest, "!"),
					strings.HasPrefix(rest, "<=") || strings.HasPrefix(rest, "<!"):
					return unsupported("look-around")
				case strings.HasPrefix(rest, "("):
					return unsupported("conditional group")
				case strings.HasPrefix(rest, ">"):
					return unsupported("atomic group")
				case strings.HasPrefix(rest, "#"):
					return unsupported("comment group")
				default:
					// Inline flags: (?flags) or (?flags-flags:...).
					j := 0
					for j < len(rest) && rest[j] != ')' && rest[j] != ':' {
						f := rest[j]
						if f != 'i' && f != 'm' && f != 's' && f != '-' {
							return unsupported("inline flag " + string(f))
						}
						j++
					}
					if j < len(rest) && rest[j] == ')' && (i != 0 || !atStart) {
						return unsupported("global flags not at the start")
					}
				}
			}
			out.WriteByte('(')
		case '{':
			// Python reads {,n} as {0,n}; Go would read it literally.
			if j := strings.IndexByte(p[i:], '}'); j >= 2 && p[i+1] == ',' && (j == 2 || allDigits(p[i+2:i+j])) {
				out.WriteString("{0")
				continue
			}
			out.WriteByte('{')
		default:
			out.WriteByte(c)
		}
	}
	if inClass {
		return unsupported("unterminated character class")
	}
	return out.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// compilePy compiles prefix + (translated p) + suffix, where prefix and
// suffix are Go syntax. Go compile errors are reported as unsupported.
func compilePy(prefix, p, suffix string) (*regexp.Regexp, error) {
	body, err := translatePy(p, prefix == fullPrefix)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(prefix + body + suffix)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %v: %w", p, err, ErrUnsupportedPattern)
	}
	return re, nil
}

// fullmatchRe is Python's re.fullmatch(p, s).
func fullmatchRe(p string) (*regexp.Regexp, error) { return compilePy(fullPrefix, p, `)\z`) }

const fullPrefix = `\A(?:`

// suffixRe is PEFT ≥ 0.14's pattern-key rule re.match(r"(.*\.)?(" + p + r")$", k).
func suffixRe(p string) (*regexp.Regexp, error) { return compilePy(`\A(?:.*\.)?(?:`, p, `)\z`) }

// savedModuleRe is PEFT's modules_to_save exclusion
// re.match(rf"(^|.*\.){m}($|\..*)", k).
func savedModuleRe(m string) (*regexp.Regexp, error) {
	return compilePy(`\A(?:^|.*\.)`, m, `(?:$|\..*)`)
}
