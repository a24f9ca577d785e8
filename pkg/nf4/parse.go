package nf4

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// MaxStateJSON bounds the packed quant-state JSON (real ones are ~170 bytes).
const MaxStateJSON = 4096

// maxRank bounds the number of dimensions in a quant state's shape.
const maxRank = 16

// stateSuffixes lists every key suffix bitsandbytes writes under a weight.
var stateSuffixes = []string{
	SuffixQuantStateNF4, SuffixQuantStateFP4, SuffixNestedQuantMap, SuffixNestedAbsmax,
	SuffixQuantMap, SuffixAbsmax,
}

// SplitStateKey reports whether name is one of the quant-state tensors of a
// 4-bit weight ("<weight>.absmax", ".quant_map", ".nested_absmax",
// ".nested_quant_map", ".quant_state.bitsandbytes__nf4|fp4") and returns the
// weight's name and the suffix. The packed weight itself is not a state key.
func SplitStateKey(name string) (weight, suffix string, ok bool) {
	for _, s := range stateSuffixes {
		if w, found := strings.CutSuffix(name, s); found && w != "" {
			return w, s, true
		}
	}
	return "", "", false
}

// ParseModule reads the 4-bit state of the weight named weight from its
// tensors, as bitsandbytes' QuantState.from_dict does, and checks every
// dtype, shape and element count against the packed JSON before trusting
// any of it. get returns a tensor by its full name. The returned packed
// bytes alias the weight tensor's Data (which may be stored as any dtype:
// bnb_4bit_quant_storage reinterprets the same bytes). The state's Map,
// Absmax and Nested values are copies.
func ParseModule(weight string, get func(name string) (Tensor, bool)) (*QuantState, []byte, error) {
	return parseModule(weight, get, true)
}

// ParseModuleState is ParseModule without the packed codes: get must give
// every quant-state tensor with its data, but the weight only with its
// dtype and shape (Data may be nil), so that a caller can plan from a
// checkpoint's small tensors and read the codes later, in pieces.
func ParseModuleState(weight string, get func(name string) (Tensor, bool)) (*QuantState, error) {
	qs, _, err := parseModule(weight, get, false)
	return qs, err
}

func parseModule(weight string, get func(name string) (Tensor, bool), codes bool) (*QuantState, []byte, error) {
	nfKey, fpKey := weight+SuffixQuantStateNF4, weight+SuffixQuantStateFP4
	jsT, hasNF := get(nfKey)
	jsKey, keyType := nfKey, NF4
	if fpT, hasFP := get(fpKey); hasFP {
		if hasNF {
			return nil, nil, fmt.Errorf("%s: %w: both %s and %s present", weight, ErrState, SuffixQuantStateNF4, SuffixQuantStateFP4)
		}
		jsT, jsKey, keyType = fpT, fpKey, FP4
	} else if !hasNF {
		return nil, nil, fmt.Errorf("%s: %w: no %s or %s tensor", weight, ErrMissing, SuffixQuantStateNF4, SuffixQuantStateFP4)
	}
	if err := checkTensor(jsT, dtype.U8, -1); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", jsKey, err)
	}
	qs, err := ParseStateJSON(jsT.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", jsKey, err)
	}
	if qs.Type != keyType {
		return nil, nil, fmt.Errorf("%s: %w: quant_type %q under a %s key", jsKey, ErrState, qs.Type, keyType)
	}
	n := qs.NumElements()
	nb := NumBlocks(int(n), qs.Blocksize)

	w, ok := get(weight)
	if !ok {
		return nil, nil, fmt.Errorf("%s: %w", weight, ErrMissing)
	}
	if w.DType.Size() == 0 {
		return nil, nil, fmt.Errorf("%s: %w: packed weight dtype %q", weight, ErrState, w.DType)
	}
	size := int64(len(w.Data))
	if codes {
		if err := checkTensor(w, w.DType, -1); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", weight, err)
		}
	} else {
		wn, err := numElements(w.Shape)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", weight, err)
		}
		size = wn * int64(w.DType.Size())
	}
	if size != int64(PackedLen(int(n))) {
		return nil, nil, fmt.Errorf("%s: %w: %d packed bytes for shape %v (want %d)",
			weight, ErrState, size, qs.Shape, PackedLen(int(n)))
	}

	mapT, ok := get(weight + SuffixQuantMap)
	if !ok {
		return nil, nil, fmt.Errorf("%s%s: %w", weight, SuffixQuantMap, ErrMissing)
	}
	if err := checkTensor(mapT, dtype.F32, 16); err != nil {
		return nil, nil, fmt.Errorf("%s%s: %w", weight, SuffixQuantMap, err)
	}
	decodeF32(qs.Map[:], mapT.Data)

	amT, ok := get(weight + SuffixAbsmax)
	if !ok {
		return nil, nil, fmt.Errorf("%s%s: %w", weight, SuffixAbsmax, ErrMissing)
	}
	nabsT, hasNested := get(weight + SuffixNestedAbsmax)
	if hasNested != (qs.Nested != nil) {
		return nil, nil, fmt.Errorf("%s: %w: nested_absmax tensor present=%v but nested JSON fields present=%v",
			weight, ErrState, hasNested, qs.Nested != nil)
	}
	if !hasNested {
		if err := checkTensor(amT, dtype.F32, int64(nb)); err != nil {
			return nil, nil, fmt.Errorf("%s%s: %w", weight, SuffixAbsmax, err)
		}
		qs.Absmax = make([]float32, nb)
		decodeF32(qs.Absmax, amT.Data)
		return qs, w.Data, nil
	}
	nd := qs.Nested
	if err := checkTensor(amT, dtype.U8, int64(nb)); err != nil {
		return nil, nil, fmt.Errorf("%s%s: %w", weight, SuffixAbsmax, err)
	}
	nnb := NumBlocks(nb, nd.Blocksize)
	if err := checkTensor(nabsT, dtype.F32, int64(nnb)); err != nil {
		return nil, nil, fmt.Errorf("%s%s: %w", weight, SuffixNestedAbsmax, err)
	}
	nmapT, ok := get(weight + SuffixNestedQuantMap)
	if !ok {
		return nil, nil, fmt.Errorf("%s%s: %w", weight, SuffixNestedQuantMap, ErrMissing)
	}
	if err := checkTensor(nmapT, dtype.F32, 256); err != nil {
		return nil, nil, fmt.Errorf("%s%s: %w", weight, SuffixNestedQuantMap, err)
	}
	nd.Codes = append([]uint8(nil), amT.Data...)
	nd.Absmax = make([]float32, nnb)
	decodeF32(nd.Absmax, nabsT.Data)
	decodeF32(nd.Map[:], nmapT.Data)
	return qs, w.Data, nil
}

// checkTensor checks t's dtype, that its shape's element count matches its
// byte length and, when want >= 0, equals want.
func checkTensor(t Tensor, dt dtype.DType, want int64) error {
	if t.DType != dt {
		return fmt.Errorf("%w: dtype %s (want %s)", ErrState, t.DType, dt)
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return err
	}
	if n*int64(dt.Size()) != int64(len(t.Data)) {
		return fmt.Errorf("%w: %d bytes for %s %v", ErrState, len(t.Data), dt, t.Shape)
	}
	if want >= 0 && n != want {
		return fmt.Errorf("%w: %d elements (want %d)", ErrState, n, want)
	}
	return nil
}

func decodeF32(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// ParseStateJSON parses a packed quant-state JSON (spec 5.2). It accepts what
// Python's json.loads accepts for the known fields (any key order and
// whitespace, NaN/Infinity for nested_offset) and rejects, as
// QuantState.from_dict does, unknown fields; it also rejects duplicate or
// missing fields, non-integer sizes, unsupported dtypes and sizes, and inputs
// over MaxStateJSON bytes. The result has Type, Blocksize, Shape and DType
// set, and Nested (with Offset and Blocksize only) when the nested fields are
// present; Map, Absmax and the nested tensors are left for ParseModule.
func ParseStateJSON(b []byte) (*QuantState, error) {
	if len(b) > MaxStateJSON {
		return nil, fmt.Errorf("%w: JSON of %d bytes (limit %d)", ErrState, len(b), MaxStateJSON)
	}
	p := jsonParser{b: b}
	fields, err := p.object()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrState, err)
	}
	qs := &QuantState{}
	var have [8]bool
	var nested Nested
	for _, f := range fields {
		idx := -1
		var err error
		switch f.key {
		case "quant_type":
			idx = 0
			var s string
			if s, err = f.str(); err == nil {
				qs.Type, err = ParseType(s)
			}
		case "blocksize":
			idx = 1
			var v int64
			if v, err = f.integer(); err == nil {
				if err = CheckBlocksize(int(min(v, MaxBlocksize+1))); err == nil {
					qs.Blocksize = int(v)
				}
			}
		case "dtype":
			idx = 2
			var s string
			if s, err = f.str(); err == nil {
				qs.DType, err = parseTorchDType(s)
			}
		case "shape":
			idx = 3
			qs.Shape, err = f.shape()
		case "nested_blocksize":
			idx = 4
			var v int64
			if v, err = f.integer(); err == nil {
				if v < 1 || v > MaxBlocksize {
					err = fmt.Errorf("nested_blocksize %d", v)
				}
				nested.Blocksize = int(v)
			}
		case "nested_dtype":
			idx = 5
			var s string
			if s, err = f.str(); err == nil && s != "float32" {
				err = fmt.Errorf("%w: nested_dtype %q (want float32)", ErrDType, s)
			}
		case "nested_offset":
			idx = 6
			var v float64
			v, err = f.number()
			nested.Offset = float32(v)
		default:
			return nil, fmt.Errorf("%w: unknown field %q", ErrState, f.key)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: field %q: %w", ErrState, f.key, err)
		}
		if have[idx] {
			return nil, fmt.Errorf("%w: duplicate field %q", ErrState, f.key)
		}
		have[idx] = true
	}
	for i, name := range []string{"quant_type", "blocksize", "dtype", "shape"} {
		if !have[i] {
			return nil, fmt.Errorf("%w: missing field %q", ErrState, name)
		}
	}
	switch {
	case have[4] && have[5] && have[6]:
		qs.Nested = &nested
	case have[4] || have[5] || have[6]:
		return nil, fmt.Errorf("%w: incomplete nested fields", ErrState)
	}
	return qs, nil
}

func parseTorchDType(s string) (dtype.DType, error) {
	switch s {
	case "float32":
		return dtype.F32, nil
	case "bfloat16":
		return dtype.BF16, nil
	case "float16":
		return dtype.F16, nil
	}
	return "", fmt.Errorf("%w: %q", ErrDType, s)
}

// jsonField is one member of the flat quant-state object: either a scalar
// literal (lit; quoted strings keep their quotes) or an array of literals.
type jsonField struct {
	key   string
	lit   string
	arr   []string
	isArr bool
}

func (f jsonField) str() (string, error) {
	if f.isArr || len(f.lit) < 2 || f.lit[0] != '"' {
		return "", fmt.Errorf("want a string")
	}
	return f.lit[1 : len(f.lit)-1], nil
}

func (f jsonField) integer() (int64, error) {
	if f.isArr {
		return 0, fmt.Errorf("want an integer")
	}
	return parseInt(f.lit)
}

func parseInt(lit string) (int64, error) {
	if !isJSONInt(lit) {
		return 0, fmt.Errorf("want an integer, got %.40q", lit)
	}
	return strconv.ParseInt(lit, 10, 64)
}

func (f jsonField) number() (float64, error) {
	if f.isArr {
		return 0, fmt.Errorf("want a number")
	}
	switch f.lit {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	if len(f.lit) == 0 || !(f.lit[0] == '-' || (f.lit[0] >= '0' && f.lit[0] <= '9')) {
		return 0, fmt.Errorf("want a number, got %.40q", f.lit)
	}
	v, err := strconv.ParseFloat(f.lit, 64)
	if err != nil && !isRangeErr(err) { // Python's float() gives ±inf or 0 on range errors too
		return 0, err
	}
	return v, nil
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func (f jsonField) shape() ([]int64, error) {
	if !f.isArr {
		return nil, fmt.Errorf("want a list of integers")
	}
	if len(f.arr) > maxRank {
		return nil, fmt.Errorf("rank %d > %d", len(f.arr), maxRank)
	}
	shape := make([]int64, len(f.arr))
	for i, l := range f.arr {
		v, err := parseInt(l)
		if err != nil {
			return nil, err
		}
		shape[i] = v
	}
	if _, err := numElements(shape); err != nil {
		return nil, err
	}
	return shape, nil
}

// isJSONInt reports whether s is a JSON integer: -?(0|[1-9][0-9]*).
func isJSONInt(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" || len(s) > 19 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// jsonParser parses the flat object bitsandbytes packs: string keys, and
// values that are strings without escapes, numbers (JSON grammar plus
// Python's NaN, Infinity, -Infinity), true/false/null, or flat arrays of
// those. Anything else is an error.
type jsonParser struct {
	b []byte
	i int
}

func (p *jsonParser) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *jsonParser) expect(c byte) error {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != c {
		return fmt.Errorf("offset %d: expected %q", p.i, c)
	}
	p.i++
	return nil
}

func (p *jsonParser) peek() byte {
	p.ws()
	if p.i >= len(p.b) {
		return 0
	}
	return p.b[p.i]
}

func (p *jsonParser) object() ([]jsonField, error) {
	if err := p.expect('{'); err != nil {
		return nil, err
	}
	var fields []jsonField
	if p.peek() == '}' {
		p.i++
	} else {
		for {
			if p.peek() != '"' {
				return nil, fmt.Errorf("offset %d: expected a key", p.i)
			}
			k, err := p.literal()
			if err != nil {
				return nil, err
			}
			if err := p.expect(':'); err != nil {
				return nil, err
			}
			f := jsonField{key: k[1 : len(k)-1]}
			if p.peek() == '[' {
				p.i++
				f.isArr = true
				if p.peek() == ']' {
					p.i++
				} else {
					for {
						v, err := p.literal()
						if err != nil {
							return nil, err
						}
						if len(f.arr) >= maxRank {
							return nil, fmt.Errorf("offset %d: array too long", p.i)
						}
						f.arr = append(f.arr, v)
						c := p.peek()
						p.i++
						if c == ']' {
							break
						}
						if c != ',' {
							return nil, fmt.Errorf("offset %d: expected ',' or ']'", p.i-1)
						}
					}
				}
			} else if f.lit, err = p.literal(); err != nil {
				return nil, err
			}
			fields = append(fields, f)
			c := p.peek()
			p.i++
			if c == '}' {
				break
			}
			if c != ',' {
				return nil, fmt.Errorf("offset %d: expected ',' or '}'", p.i-1)
			}
		}
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, fmt.Errorf("offset %d: extra data", p.i)
	}
	return fields, nil
}

// literal scans a string (quotes kept; no escapes or control characters;
// printable ASCII only), a number, or a bare word.
func (p *jsonParser) literal() (string, error) {
	p.ws()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '"' {
		p.i++
		for p.i < len(p.b) && p.b[p.i] != '"' {
			if c := p.b[p.i]; c == '\\' || c < 0x20 || c >= 0x7f {
				return "", fmt.Errorf("offset %d: unsupported character in string", p.i)
			}
			p.i++
		}
		if p.i >= len(p.b) {
			return "", fmt.Errorf("offset %d: unterminated string", start)
		}
		p.i++
		return string(p.b[start:p.i]), nil
	}
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == ',' || c == ']' || c == '}' || c == ':' || c == '[' || c == '{' || c == '"' ||
			c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			break
		}
		p.i++
	}
	lit := string(p.b[start:p.i])
	if !validBare(lit) {
		return "", fmt.Errorf("offset %d: invalid value %.40q", start, lit)
	}
	return lit, nil
}

// validBare accepts JSON numbers, Python's NaN/Infinity/-Infinity and
// true/false/null.
func validBare(s string) bool {
	switch s {
	case "NaN", "Infinity", "-Infinity", "true", "false", "null":
		return true
	}
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - j
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
