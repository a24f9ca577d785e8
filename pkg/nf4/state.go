package nf4

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/lorakit/lorakit/internal/pyjson"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// QuantState is the quantization state of one 4-bit weight (bitsandbytes'
// QuantState): everything besides the packed codes needed to decode it.
type QuantState struct {
	Type      Type
	Blocksize int
	Shape     []int64     // original (logical) shape, row-major
	DType     dtype.DType // original dtype: F32, BF16 or F16; dequantization casts to it
	Map       [16]float32 // quant_map: the 4-bit code table

	// Absmax holds the float32 block absmax values of a single-level state;
	// nil when Nested is set.
	Absmax []float32
	// Nested holds the double-quantized absmax; nil for a single-level state.
	Nested *Nested
}

// Nested is the double-quantized form of the 4-bit block absmax values:
// absmax[i] = f32(f32(Map[Codes[i]] · Absmax[i/Blocksize]) + Offset).
type Nested struct {
	Codes     []uint8 // one per 4-bit block (stored as "<weight>.absmax", U8)
	Offset    float32 // "nested_offset"
	Absmax    []float32
	Map       [256]float32 // "nested_quant_map"
	Blocksize int          // "nested_blocksize", 256
}

// NumElements returns the product of Shape.
func (qs *QuantState) NumElements() int64 {
	n := int64(1)
	for _, d := range qs.Shape {
		n *= d
	}
	return n
}

// NumBlocks returns the number of 4-bit blocks, ceil(NumElements/Blocksize).
func (qs *QuantState) NumBlocks() int {
	return NumBlocks(int(qs.NumElements()), qs.Blocksize)
}

// Validate checks that the state is self-consistent: a known type, a
// supported block size and dtype, and absmax (or nested) lengths that match
// the shape. States from ParseModule and QuantizeTensor are valid.
func (qs *QuantState) Validate() error {
	if !qs.Type.valid() {
		return fmt.Errorf("%w: %d", ErrType, qs.Type)
	}
	if err := CheckBlocksize(qs.Blocksize); err != nil {
		return err
	}
	if _, err := torchDTypeName(qs.DType); err != nil {
		return err
	}
	n, err := numElements(qs.Shape)
	if err != nil {
		return err
	}
	nb := NumBlocks(int(n), qs.Blocksize)
	if nd := qs.Nested; nd != nil {
		if qs.Absmax != nil || len(nd.Codes) != nb || nd.Blocksize < 1 || nd.Blocksize > MaxBlocksize ||
			len(nd.Absmax) != NumBlocks(nb, nd.Blocksize) {
			return fmt.Errorf("%w: nested state does not match %d blocks", ErrState, nb)
		}
	} else if len(qs.Absmax) != nb {
		return fmt.Errorf("%w: %d absmax values for %d blocks", ErrState, len(qs.Absmax), nb)
	}
	return nil
}

// BlockAbsmax returns the float32 per-block scales: Absmax for a single-level
// state, the dequantized nested absmax (spec 4) otherwise. The state must be
// valid (see Validate).
func (qs *QuantState) BlockAbsmax() []float32 {
	if qs.Nested == nil {
		return qs.Absmax
	}
	nd := qs.Nested
	out := make([]float32, len(nd.Codes))
	for i, c := range nd.Codes {
		out[i] = float32(nd.Map[c]*nd.Absmax[i/nd.Blocksize]) + nd.Offset
	}
	return out
}

// Dequantize decodes packed into dst (len NumElements) as float32 products
// (spec 4). Convert to qs.DType with round-to-nearest-even (dtype.FromF32,
// or use DequantizeTo) to get what bitsandbytes' dequantize_4bit returns.
func (qs *QuantState) Dequantize(dst []float32, packed []byte) error {
	if err := qs.Validate(); err != nil {
		return err
	}
	if int64(len(dst)) != qs.NumElements() {
		return fmt.Errorf("%w: dequantize into %d values, shape %v", ErrLength, len(dst), qs.Shape)
	}
	return Dequantize(dst, packed, qs.BlockAbsmax(), qs.Blocksize, &qs.Map)
}

// DequantizeTo decodes packed into dst as little-endian values of qs.DType
// (NumElements·DType.Size() bytes), rounding to nearest even: the bytes of
// bitsandbytes' dequantize_4bit output.
func (qs *QuantState) DequantizeTo(dst []byte, packed []byte) error {
	if err := qs.Validate(); err != nil {
		return err
	}
	n := qs.NumElements()
	if int64(len(dst)) != n*int64(qs.DType.Size()) {
		return fmt.Errorf("%w: %d bytes for %d %s values", ErrLength, len(dst), n, qs.DType)
	}
	f := make([]float32, n)
	if err := qs.Dequantize(f, packed); err != nil {
		return err
	}
	return dtype.FromF32(dst, f, qs.DType)
}

// Options configure QuantizeTensor. The zero value is not the default; start
// from DefaultOptions.
type Options struct {
	Type        Type
	Blocksize   int         // 0 means DefaultBlocksize
	DoubleQuant bool        // compress the absmax statistics (bnb_4bit_use_double_quant)
	DType       dtype.DType // original dtype written to the state; "" means F32
	// Offset, when non-nil, replaces MeanOffset as the double-quantization
	// offset (to reproduce a reference file whose offset is known).
	Offset *float32
}

// DefaultOptions returns QLoRA's defaults: NF4, block 64, double quantization.
func DefaultOptions() Options {
	return Options{Type: NF4, Blocksize: DefaultBlocksize, DoubleQuant: true, DType: dtype.F32}
}

// Quantized is a quantized weight: its state and packed 4-bit codes.
type Quantized struct {
	State  QuantState
	Packed []byte // PackedLen(n) bytes, two codes per byte, even element high
}

// QuantizeTensor quantizes a weight given as float32 values (its row-major
// flattening; bf16/f16 weights are converted exactly to float32 first) with
// the given logical shape, as bitsandbytes' functional.quantize_4bit.
func QuantizeTensor(src []float32, shape []int64, opts Options) (*Quantized, error) {
	if opts.Blocksize == 0 {
		opts.Blocksize = DefaultBlocksize
	}
	if opts.DType == "" {
		opts.DType = dtype.F32
	}
	if err := CheckBlocksize(opts.Blocksize); err != nil {
		return nil, err
	}
	if _, err := torchDTypeName(opts.DType); err != nil {
		return nil, err
	}
	if !opts.Type.valid() {
		return nil, fmt.Errorf("%w: %d", ErrType, opts.Type)
	}
	n, err := numElements(shape)
	if err != nil {
		return nil, err
	}
	if n != int64(len(src)) || n == 0 {
		return nil, fmt.Errorf("%w: %d values for shape %v", ErrLength, len(src), shape)
	}
	q := &Quantized{
		State: QuantState{
			Type:      opts.Type,
			Blocksize: opts.Blocksize,
			Shape:     append([]int64(nil), shape...),
			DType:     opts.DType,
			Map:       opts.Type.Code(),
		},
		Packed: make([]byte, PackedLen(len(src))),
	}
	absmax := make([]float32, NumBlocks(len(src), opts.Blocksize))
	if err := Quantize(q.Packed, absmax, src, opts.Blocksize, opts.Type); err != nil {
		return nil, err
	}
	if !opts.DoubleQuant {
		q.State.Absmax = absmax
		return q, nil
	}
	off := MeanOffset(absmax)
	if opts.Offset != nil {
		off = *opts.Offset
	}
	q.State.Nested = DoubleQuantize(absmax, off)
	return q, nil
}

// QuantizeRaw is QuantizeTensor for a weight stored as little-endian F32,
// BF16 or F16 bytes; it converts exactly to float32 and records dt as the
// original dtype (opts.DType is ignored).
func QuantizeRaw(data []byte, dt dtype.DType, shape []int64, opts Options) (*Quantized, error) {
	if _, err := torchDTypeName(dt); err != nil {
		return nil, err
	}
	if len(data)%dt.Size() != 0 {
		return nil, fmt.Errorf("%w: %d bytes of %s", ErrLength, len(data), dt)
	}
	f := make([]float32, len(data)/dt.Size())
	if err := dtype.ToF32(f, data, dt); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLength, err)
	}
	opts.DType = dt
	return QuantizeTensor(f, shape, opts)
}

// DoubleQuantize quantizes 4-bit block absmax values with the given offset
// (normally MeanOffset(absmax)): a' = f32(absmax - offset), then
// QuantizeBlockwise with DynamicMap and NestedBlocksize.
func DoubleQuantize(absmax []float32, offset float32) *Nested {
	nd := &Nested{
		Codes:     make([]uint8, len(absmax)),
		Offset:    offset,
		Absmax:    make([]float32, NumBlocks(len(absmax), NestedBlocksize)),
		Map:       dynamicMap,
		Blocksize: NestedBlocksize,
	}
	centered := make([]float32, len(absmax))
	for i, a := range absmax {
		centered[i] = a - offset
	}
	if err := QuantizeBlockwise(nd.Codes, nd.Absmax, centered, NestedBlocksize, &nd.Map); err != nil {
		panic(err) // lengths are correct by construction
	}
	return nd
}

// Tensor is one serialized tensor: safetensors dtype, shape and
// little-endian bytes.
type Tensor struct {
	DType dtype.DType
	Shape []int64
	Data  []byte
}

// NamedTensor is a Tensor with its key.
type NamedTensor struct {
	Name string
	Tensor
}

// State-tensor suffixes, appended to the weight's name (spec 5.1).
const (
	SuffixAbsmax         = ".absmax"
	SuffixQuantMap       = ".quant_map"
	SuffixNestedAbsmax   = ".nested_absmax"
	SuffixNestedQuantMap = ".nested_quant_map"
	SuffixQuantStateNF4  = ".quant_state.bitsandbytes__nf4"
	SuffixQuantStateFP4  = ".quant_state.bitsandbytes__fp4"
)

// StateSuffix returns the packed-JSON suffix for t.
func StateSuffix(t Type) string {
	if t == FP4 {
		return SuffixQuantStateFP4
	}
	return SuffixQuantStateNF4
}

// Tensors returns the tensors bitsandbytes' Linear4bit saves for this weight,
// keyed under weight (the weight tensor's full name, e.g.
// "model.layers.0.self_attn.q_proj.weight"), in QuantState.as_dict order:
// weight (U8 [(n+1)/2, 1]), .absmax (U8 with double quantization, else F32),
// .quant_map (F32 [16]), .nested_absmax and .nested_quant_map (F32, double
// quantization only) and .quant_state.bitsandbytes__nf4|fp4 (U8, the packed
// JSON). Every tensor owns its bytes (no shared storage); Data of the weight
// aliases q.Packed.
func (q *Quantized) Tensors(weight string) []NamedTensor {
	qs := &q.State
	out := []NamedTensor{{weight, Tensor{dtype.U8, []int64{int64(len(q.Packed)), 1}, q.Packed}}}
	if qs.Nested == nil {
		out = append(out, NamedTensor{weight + SuffixAbsmax, f32Tensor(qs.Absmax)})
	} else {
		out = append(out, NamedTensor{weight + SuffixAbsmax,
			Tensor{dtype.U8, []int64{int64(len(qs.Nested.Codes))}, append([]byte(nil), qs.Nested.Codes...)}})
	}
	out = append(out, NamedTensor{weight + SuffixQuantMap, f32Tensor(qs.Map[:])})
	if qs.Nested != nil {
		out = append(out,
			NamedTensor{weight + SuffixNestedAbsmax, f32Tensor(qs.Nested.Absmax)},
			NamedTensor{weight + SuffixNestedQuantMap, f32Tensor(qs.Nested.Map[:])})
	}
	js := qs.JSON()
	out = append(out, NamedTensor{weight + StateSuffix(qs.Type), Tensor{dtype.U8, []int64{int64(len(js))}, js}})
	return out
}

func f32Tensor(v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return Tensor{dtype.F32, []int64{int64(len(v))}, b}
}

// JSON returns the packed quant-state JSON exactly as bitsandbytes writes it
// (Python json.dumps of as_dict without the tensors; spec 5.2), e.g.
//
//	{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.05151717737317085}
func (qs *QuantState) JSON() []byte {
	var b strings.Builder
	name, err := torchDTypeName(qs.DType)
	if err != nil {
		name = strings.ToLower(string(qs.DType))
	}
	fmt.Fprintf(&b, `{"quant_type": "%s", "blocksize": %d, "dtype": "%s", "shape": [`, qs.Type, qs.Blocksize, name)
	for i, d := range qs.Shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteString("]")
	if nd := qs.Nested; nd != nil {
		fmt.Fprintf(&b, `, "nested_blocksize": %d, "nested_dtype": "float32", "nested_offset": %s`,
			nd.Blocksize, PythonFloat(float64(nd.Offset)))
	}
	b.WriteString("}")
	return []byte(b.String())
}

// PythonFloat formats f as Python's json.dumps does (float.__repr__: the
// shortest decimal that round-trips the double, positional with at least one
// fractional digit when the decimal exponent is in [-4, 16), scientific
// otherwise with a signed exponent of at least two digits; NaN, Infinity,
// -Infinity for non-finite values).
func PythonFloat(f float64) string { return pyjson.FormatFloat(f) }

// torchDTypeName maps a supported original dtype to its torch name.
func torchDTypeName(d dtype.DType) (string, error) {
	switch d {
	case dtype.F32:
		return "float32", nil
	case dtype.BF16:
		return "bfloat16", nil
	case dtype.F16:
		return "float16", nil
	}
	return "", fmt.Errorf("%w: %q (want F32, BF16 or F16)", ErrDType, d)
}

// maxElements bounds a quantized tensor's element count (2^48).
const maxElements = int64(1) << 48

func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > maxElements/d) {
			return 0, fmt.Errorf("%w: shape %v", ErrState, shape)
		}
		n *= d
	}
	return n, nil
}
