package quantize

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/lorakit/lorakit/internal/num"
)

// ReportVersion is the version of the JSON report layout.
const ReportVersion = 1

// Report describes a quantize or dequantize run. Its JSON form (one object,
// field names as tagged) is stable within ReportVersion.
type Report struct {
	Schema int `json:"schema"`
	// Version repeats Schema under the key this report had before every
	// lorakit report used "schema"; it goes away in the next release.
	Version      int      `json:"version"`
	Mode         string   `json:"mode"` // "quantize" or "dequantize"
	Input        string   `json:"input"`
	Output       string   `json:"output"`
	QuantType    string   `json:"quant_type"`
	Blocksize    int      `json:"blocksize"`
	DoubleQuant  bool     `json:"double_quant"`
	ComputeDType string   `json:"compute_dtype,omitempty"` // quantize: bnb_4bit_compute_dtype
	SkipModules  []string `json:"skip_modules"`            // quantize: llm_int8_skip_modules (null: the default, lm_head)
	// Tensors lists the quantized (or dequantized) weights in name order.
	Tensors []TensorReport `json:"tensors"`
	// Quantized sums Tensors; RMSE and MaxAbsError over all their elements.
	Quantized Summary `json:"quantized"`
	// Other sums the tensors that are not 4-bit weights (embeddings, norms,
	// biases, lm_head): carried over unchanged, or converted by Dequantize
	// with a DType.
	Other Summary `json:"other"`
	// Total covers every tensor of the checkpoint.
	Total    Summary  `json:"total"`
	Warnings []string `json:"warnings,omitempty"`
}

// TensorReport is one weight. Before is the input form, After the output
// form: for a quantized weight After counts the packed codes and every
// quant-state tensor (absmax, maps, nested absmax, the packed JSON).
type TensorReport struct {
	Name        string  `json:"name"`
	Shape       []int64 `json:"shape"`
	DTypeBefore string  `json:"dtype_before"` // safetensors spelling; "NF4"/"FP4" for 4-bit
	DTypeAfter  string  `json:"dtype_after"`
	Params      int64   `json:"params"`
	BytesBefore int64   `json:"bytes_before"`
	BytesAfter  int64   `json:"bytes_after"`
	BitsBefore  float64 `json:"bits_per_param_before"`
	BitsAfter   float64 `json:"bits_per_param_after"`
	// RMSE and MaxAbsError compare the dequantized weight (as bitsandbytes'
	// dequantize_4bit returns it, in the original dtype) with the original;
	// quantize only, null when not finite.
	RMSE        *Float `json:"rmse,omitempty"`
	MaxAbsError *Float `json:"max_abs_error,omitempty"`
}

// Summary sums a group of tensors.
type Summary struct {
	Tensors     int     `json:"tensors"`
	Params      int64   `json:"params"`
	BytesBefore int64   `json:"bytes_before"`
	BytesAfter  int64   `json:"bytes_after"`
	BitsBefore  float64 `json:"bits_per_param_before"`
	BitsAfter   float64 `json:"bits_per_param_after"`
	RMSE        *Float  `json:"rmse,omitempty"`
	MaxAbsError *Float  `json:"max_abs_error,omitempty"`
}

// Float is a float64 that encodes as null in JSON when it is not finite.
type Float float64

// MarshalJSON encodes f, or null for NaN and ±Inf.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

func (s *Summary) add(t TensorReport) {
	s.Tensors++
	s.Params += t.Params
	s.BytesBefore += t.BytesBefore
	s.BytesAfter += t.BytesAfter
}

func (s *Summary) finish() {
	if s.Params > 0 {
		s.BitsBefore = 8 * float64(s.BytesBefore) / float64(s.Params)
		s.BitsAfter = 8 * float64(s.BytesAfter) / float64(s.Params)
	}
}

func (t *TensorReport) finish() {
	if t.Params > 0 {
		t.BitsBefore = 8 * float64(t.BytesBefore) / float64(t.Params)
		t.BitsAfter = 8 * float64(t.BytesAfter) / float64(t.Params)
	}
}

// errStats accumulates the quantization error of a set of elements.
type errStats struct {
	sumSq  float64
	maxAbs float64
	n      int64
}

func (e *errStats) merge(o errStats) {
	e.sumSq += o.sumSq
	e.n += o.n
	if o.maxAbs > e.maxAbs || math.IsNaN(o.maxAbs) {
		e.maxAbs = o.maxAbs
	}
}

func (e errStats) rmse() *Float {
	if e.n == 0 {
		return nil
	}
	f := Float(math.Sqrt(e.sumSq / float64(e.n)))
	return &f
}

func (e errStats) max() *Float {
	if e.n == 0 {
		return nil
	}
	f := Float(e.maxAbs)
	return &f
}

// WriteText renders r for people.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	if r.Mode == "quantize" {
		dq := "no double quantization"
		if r.DoubleQuant {
			dq = "double quantization"
		}
		fmt.Fprintf(&b, "quantized %s -> %s: %s, block %d, %s, compute dtype %s\n",
			r.Input, r.Output, r.QuantType, r.Blocksize, dq, r.ComputeDType)
		if r.SkipModules != nil {
			fmt.Fprintf(&b, "skip modules: %s\n", strings.Join(r.SkipModules, ", "))
		}
	} else {
		fmt.Fprintf(&b, "dequantized %s -> %s\n", r.Input, r.Output)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "tensor\tshape\tdtype\tparams\tbefore\tafter\tbits/param\trmse\tmax|err|\n")
	row := func(name, shape, dt string, params, before, after int64, bitsBefore, bitsAfter float64, rmse, maxe *Float) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.3f -> %.3f\t%s\t%s\n", name, shape, dt, num.Thousands(params),
			num.Bytes(before, 1), num.Bytes(after, 1), bitsBefore, bitsAfter, sci(rmse), sci(maxe))
	}
	for _, t := range r.Tensors {
		row(t.Name, shapeString(t.Shape), t.DTypeBefore+" -> "+t.DTypeAfter, t.Params, t.BytesBefore, t.BytesAfter,
			t.BitsBefore, t.BitsAfter, t.RMSE, t.MaxAbsError)
	}
	for _, s := range []struct {
		label string
		s     Summary
	}{{fmt.Sprintf("%d 4-bit weights", r.Quantized.Tensors), r.Quantized},
		{fmt.Sprintf("%d other tensors", r.Other.Tensors), r.Other},
		{"total", r.Total}} {
		row(s.label, "", "", s.s.Params, s.s.BytesBefore, s.s.BytesAfter, s.s.BitsBefore, s.s.BitsAfter, s.s.RMSE, s.s.MaxAbsError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", wn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return strings.Join(parts, "×")
}

func sci(f *Float) string {
	if f == nil {
		return "-"
	}
	return strconv.FormatFloat(float64(*f), 'e', 3, 64)
}
