package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Hand-rolled scanners for the two big parts of tokenizer.json (the vocab
// object and the merges array): encoding/json through reflection costs about
// a second for Llama 3's 128k tokens and 280k merges. The input has already
// been validated as JSON by encoding/json.

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// scanString parses the JSON string at b[i] and returns it and the index after it.
func scanString(b []byte, i int) (string, int, error) {
	if i >= len(b) || b[i] != '"' {
		return "", i, ErrFormat
	}
	esc := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			if !esc {
				return string(b[i+1 : j]), j + 1, nil
			}
			var s string
			if err := json.Unmarshal(b[i:j+1], &s); err != nil {
				return "", j, ErrFormat
			}
			return s, j + 1, nil
		}
	}
	return "", len(b), ErrFormat
}

// scanVocab parses {"token": id, ...}.
func scanVocab(b []byte, each func(tok string, id int) error) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return fmt.Errorf("vocab: %w", ErrFormat)
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		s, j, err := scanString(b, skipWS(b, i))
		if err != nil {
			return fmt.Errorf("vocab: %w", err)
		}
		j = skipWS(b, j)
		if j >= len(b) || b[j] != ':' {
			return fmt.Errorf("vocab: %w", ErrFormat)
		}
		j = skipWS(b, j+1)
		k := j
		for k < len(b) && (b[k] == '-' || (b[k] >= '0' && b[k] <= '9')) {
			k++
		}
		id, err := strconv.Atoi(string(b[j:k]))
		if err != nil {
			return fmt.Errorf("vocab: token %q: %w", s, ErrFormat)
		}
		if err := each(s, id); err != nil {
			return err
		}
		k = skipWS(b, k)
		if k >= len(b) {
			return fmt.Errorf("vocab: %w", ErrFormat)
		}
		if b[k] == '}' {
			return nil
		}
		if b[k] != ',' {
			return fmt.Errorf("vocab: %w", ErrFormat)
		}
		i = k + 1
	}
}

// scanMerges parses ["a b", ...] or [["a", "b"], ...]. For the string form,
// pair is split at the first space, as tokenizers does.
func scanMerges(b []byte, each func(i int, a, c string) error) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return fmt.Errorf("merges: %w", ErrFormat)
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for n := 0; ; n++ {
		var a, c string
		var err error
		switch {
		case i < len(b) && b[i] == '"':
			var s string
			if s, i, err = scanString(b, i); err != nil {
				return fmt.Errorf("merge %d: %w", n, err)
			}
			k := -1
			for x := 0; x < len(s); x++ {
				if s[x] == ' ' {
					k = x
					break
				}
			}
			if k < 0 {
				return fmt.Errorf("merge %d %q: %w", n, s, ErrFormat)
			}
			a, c = s[:k], s[k+1:]
		case i < len(b) && b[i] == '[':
			if a, i, err = scanString(b, skipWS(b, i+1)); err != nil {
				return fmt.Errorf("merge %d: %w", n, err)
			}
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ',' {
				return fmt.Errorf("merge %d: %w", n, ErrFormat)
			}
			if c, i, err = scanString(b, skipWS(b, i+1)); err != nil {
				return fmt.Errorf("merge %d: %w", n, err)
			}
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ']' {
				return fmt.Errorf("merge %d: not a pair: %w", n, ErrFormat)
			}
			i++
		default:
			return fmt.Errorf("merge %d: %w", n, ErrFormat)
		}
		if err := each(n, a, c); err != nil {
			return err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return fmt.Errorf("merges: %w", ErrFormat)
		}
		if b[i] == ']' {
			return nil
		}
		if b[i] != ',' {
			return fmt.Errorf("merges: %w", ErrFormat)
		}
		i = skipWS(b, i+1)
	}
}
