package torchbin

import (
	"fmt"
	"sort"
	"strings"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// globalKind says what an allowed global does when a pickle calls it.
type globalKind int

const (
	gValue              globalKind = iota // a name used as a value only (tensor classes, qschemes)
	gOrderedDict                          // collections.OrderedDict, collections.Counter
	gRebuildTensor                        // torch._utils._rebuild_tensor
	gRebuildTensorV2                      // torch._utils._rebuild_tensor_v2
	gRebuildTensorV3                      // torch._utils._rebuild_tensor_v3
	gRebuildParameter                     // torch._utils._rebuild_parameter(_with_state)
	gRebuildFromType                      // torch._tensor._rebuild_from_type_v2
	gRebuildUnsupported                   // allowed by torch, but not a dense strided tensor
	gParameter                            // torch.nn.parameter.Parameter
	gTensorClass                          // torch.Tensor
	gStorage                              // a storage type (persistent ids name them)
	gDType                                // a torch.dtype
	gSize                                 // torch.Size
	gDevice                               // torch.device
	gLayout                               // torch.serialization._get_layout
	gEncode                               // _codecs.encode (protocol 2 bytes)
	gByteArray                            // builtins.bytearray
	gSet                                  // builtins.set
	gComplex                              // builtins.complex
)

// pyGlobal is an allowed global pushed by GLOBAL or STACK_GLOBAL.
type pyGlobal struct {
	name string // module.name as the pickle spelled it (after renames)
	kind globalKind
	// dtype is the element type of a storage or dtype global; "" when this
	// package cannot read it (complex, quantized, sub-byte types).
	dtype dtype.DType
	// what names the unsupported content, for gRebuildUnsupported and
	// unreadable storages and dtypes.
	what string
}

// allowedGlobals is the allow-list, keyed by "module.name". It holds what
// torch.load(weights_only=True) accepts for state dicts; anything else is
// refused with ErrForbiddenGlobal.
var allowedGlobals = map[string]*pyGlobal{}

func allow(name string, kind globalKind, dt dtype.DType, what string) {
	allowedGlobals[name] = &pyGlobal{name: name, kind: kind, dtype: dt, what: what}
}

func init() {
	allow("collections.OrderedDict", gOrderedDict, "", "")
	allow("collections.Counter", gOrderedDict, "", "")
	allow("builtins.set", gSet, "", "")
	allow("builtins.bytearray", gByteArray, "", "")
	allow("builtins.complex", gComplex, "", "")
	allow("_codecs.encode", gEncode, "", "")
	allow("torch.Size", gSize, "", "")
	allow("torch.device", gDevice, "", "")
	allow("torch.serialization._get_layout", gLayout, "", "")
	allow("torch.Tensor", gTensorClass, "", "")
	allow("torch.nn.parameter.Parameter", gParameter, "", "")
	allow("torch._utils._rebuild_tensor", gRebuildTensor, "", "")
	allow("torch._utils._rebuild_tensor_v2", gRebuildTensorV2, "", "")
	allow("torch._utils._rebuild_tensor_v3", gRebuildTensorV3, "", "")
	allow("torch._utils._rebuild_parameter", gRebuildParameter, "", "")
	allow("torch._utils._rebuild_parameter_with_state", gRebuildParameter, "", "")
	allow("torch._tensor._rebuild_from_type_v2", gRebuildFromType, "", "")
	for fn, what := range map[string]string{
		"_rebuild_qtensor":                        "a quantized tensor",
		"_rebuild_sparse_tensor":                  "a sparse tensor",
		"_rebuild_sparse_csr_tensor":              "a sparse CSR tensor",
		"_rebuild_nested_tensor":                  "a nested tensor",
		"_rebuild_meta_tensor_no_storage":         "a meta tensor (it has no data)",
		"_rebuild_wrapper_subclass":               "a tensor subclass without storage",
		"_rebuild_device_tensor_from_numpy":       "a device tensor saved through numpy",
		"_rebuild_device_tensor_from_cpu_tensor":  "a device tensor saved through a CPU copy",
		"_rebuild_xla_tensor":                     "an XLA tensor",
		"_rebuild_mlc_tensor":                     "an MLC tensor",
		"_rebuild_mps_tensor":                     "an MPS tensor saved without a CPU copy",
		"_rebuild_tensor_from_numpy_and_metadata": "a tensor saved through numpy",
	} {
		allow("torch._utils."+fn, gRebuildUnsupported, "", what)
	}

	// Storage types, as torch.save names them in persistent ids (torch.X
	// since 1.13, torch.cuda.X from older GPU saves).
	storages := map[string]dtype.DType{
		"DoubleStorage": dtype.F64, "FloatStorage": dtype.F32, "HalfStorage": dtype.F16,
		"BFloat16Storage": dtype.BF16, "LongStorage": dtype.I64, "IntStorage": dtype.I32,
		"ShortStorage": dtype.I16, "CharStorage": dtype.I8, "ByteStorage": dtype.U8,
		"BoolStorage": dtype.BOOL, "UntypedStorage": dtype.U8,
		"ComplexFloatStorage": "", "ComplexDoubleStorage": "", "QInt8Storage": "",
		"QUInt8Storage": "", "QInt32Storage": "", "QUInt4x2Storage": "", "QUInt2x4Storage": "",
	}
	for name, dt := range storages {
		what := ""
		if dt == "" {
			what = "a " + strings.TrimSuffix(name, "Storage") + " storage"
		}
		for _, module := range []string{"torch", "torch.cuda"} {
			allow(module+"."+name, gStorage, dt, what)
		}
	}
	allow("torch.storage.UntypedStorage", gStorage, dtype.U8, "")
	allow("torch.storage.TypedStorage", gValue, "", "")

	// dtypes (torch.dtype pickles as its name in the torch module).
	dtypes := map[string]dtype.DType{
		"float64": dtype.F64, "float32": dtype.F32, "float16": dtype.F16, "bfloat16": dtype.BF16,
		"int64": dtype.I64, "int32": dtype.I32, "int16": dtype.I16, "int8": dtype.I8,
		"uint8": dtype.U8, "uint16": dtype.U16, "uint32": dtype.U32, "uint64": dtype.U64,
		"bool": dtype.BOOL, "float8_e4m3fn": dtype.F8E4M3, "float8_e5m2": dtype.F8E5M2,
	}
	for _, name := range []string{"complex32", "complex64", "complex128", "qint8", "quint8",
		"qint32", "quint4x2", "quint2x4", "float8_e4m3fnuz", "float8_e5m2fnuz",
		"float8_e8m0fnu", "float4_e2m1fn_x2", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
		"int1", "int2", "int3", "int4", "int5", "int6", "int7",
		"uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7"} {
		dtypes[name] = ""
	}
	for name, dt := range dtypes {
		what := ""
		if dt == "" {
			what = "dtype torch." + name
		}
		allow("torch."+name, gDType, dt, what)
	}

	// Legacy tensor classes and quantization schemes: values only.
	for _, t := range []string{"Double", "Float", "Half", "BFloat16", "Long", "Int", "Short",
		"Char", "Byte", "Bool", "ComplexFloat", "ComplexDouble"} {
		allow("torch."+t+"Tensor", gValue, "", "")
		allow("torch.cuda."+t+"Tensor", gValue, "", "")
	}
	for _, q := range []string{"per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
		"per_channel_symmetric", "per_channel_affine_float_qparams"} {
		allow("torch."+q, gValue, "", "")
	}
}

// renamedModules maps the module names of old pickles to current ones, as
// torch.load does (Python 2 names; torch.tensor became torch._tensor).
var renamedModules = map[string]string{
	"__builtin__":  "builtins",
	"copy_reg":     "copyreg",
	"torch.tensor": "torch._tensor",
}

// lookupGlobal resolves a GLOBAL: an allowed global, or ErrForbiddenGlobal.
func lookupGlobal(module, name string) (*pyGlobal, error) {
	if m, ok := renamedModules[module]; ok {
		module = m
	}
	full := module + "." + name
	if g, ok := allowedGlobals[full]; ok {
		return g, nil
	}
	return nil, fmt.Errorf("%w %s: only tensors, storages and plain containers may be unpickled", ErrForbiddenGlobal, quoteName(full))
}

// quoteName quotes a global's name when it holds unprintable bytes.
func quoteName(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == 0xfffd {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

// AllowedGlobals lists the allow-list in sorted order (for documentation
// and tests).
func AllowedGlobals() []string {
	out := make([]string, 0, len(allowedGlobals))
	for n := range allowedGlobals {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (g *pyGlobal) forbidden(how string) error {
	return fmt.Errorf("%w %s: %s it is not allowed", ErrForbiddenGlobal, g.name, how)
}

func (g *pyGlobal) argError(args pyTuple, want string) error {
	return fmt.Errorf("%w: %s called with %s, want %s", ErrPickle, g.name, describeArgs(args), want)
}

func describeArgs(args pyTuple) string {
	names := make([]string, len(args))
	for i, a := range args {
		names[i] = typeName(a)
	}
	return "(" + strings.Join(names, ", ") + ")"
}

// call interprets REDUCE of g with args. Nothing is executed: each allowed
// callable has a Go meaning that builds a value. depth bounds the nesting of
// _rebuild_from_type_v2.
func (g *pyGlobal) call(args pyTuple, depth int) (any, error) {
	switch g.kind {
	case gOrderedDict:
		return newDictFrom(g, args)
	case gRebuildTensor, gRebuildTensorV2, gRebuildTensorV3:
		return rebuildTensor(g, args)
	case gRebuildParameter:
		if len(args) < 3 || len(args) > 4 {
			return nil, g.argError(args, "(data, requires_grad, backward_hooks[, state])")
		}
		t, ok := args[0].(*tensorVal)
		if !ok {
			return nil, g.argError(args, "a tensor as data")
		}
		return t, nil
	case gParameter:
		return g.newObj(args)
	case gRebuildFromType:
		// _rebuild_from_type_v2(func, new_type, args, state): a tensor
		// (or Parameter) with Python attributes; the attributes are dropped.
		if len(args) != 4 {
			return nil, g.argError(args, "(func, new_type, args, state)")
		}
		fn, ok1 := args[0].(*pyGlobal)
		typ, ok2 := args[1].(*pyGlobal)
		inner, ok3 := args[2].(pyTuple)
		if !ok1 || !ok2 || !ok3 || (typ.kind != gTensorClass && typ.kind != gParameter) {
			return nil, g.argError(args, "(a rebuild function, torch.Tensor or Parameter, a tuple, state)")
		}
		if depth > 8 {
			return nil, fmt.Errorf("%w: %s nested too deeply", ErrPickle, g.name)
		}
		v, err := fn.call(inner, depth+1)
		if err != nil {
			return nil, err
		}
		if _, ok := v.(*tensorVal); !ok {
			return nil, g.argError(args, "a function that rebuilds a tensor")
		}
		return v, nil
	case gRebuildUnsupported:
		return nil, fmt.Errorf("%w: %s (%s)", ErrUnsupported, g.what, g.name)
	case gSize:
		if len(args) == 0 {
			return pyTuple{}, nil
		}
		if len(args) == 1 {
			switch v := args[0].(type) {
			case pyTuple:
				return v, nil
			case *pyList:
				return pyTuple(v.items), nil
			}
		}
		return nil, g.argError(args, "(a tuple)")
	case gDevice:
		return pyOpaque("torch.device"), nil
	case gLayout:
		return pyOpaque("torch.layout"), nil
	case gComplex:
		return pyOpaque("complex"), nil
	case gSet:
		s := &pySet{}
		if len(args) == 1 {
			items, ok := sequenceItems(args[0])
			if !ok {
				return nil, g.argError(args, "(an iterable)")
			}
			s.items = append(s.items, items...)
		} else if len(args) > 1 {
			return nil, g.argError(args, "(an iterable)")
		}
		return s, nil
	case gEncode, gByteArray:
		return encodeBytes(g, args)
	}
	return nil, g.forbidden("calling")
}

// newObj interprets NEWOBJ (cls.__new__(cls, *args)).
func (g *pyGlobal) newObj(args pyTuple) (any, error) {
	switch g.kind {
	case gParameter:
		// Parameter(data[, requires_grad]).
		if len(args) >= 1 && len(args) <= 2 {
			if t, ok := args[0].(*tensorVal); ok {
				return t, nil
			}
		}
		return nil, g.argError(args, "(data[, requires_grad])")
	case gOrderedDict:
		return newDict(), nil
	case gSet:
		return &pySet{}, nil
	case gTensorClass:
		return nil, fmt.Errorf("%w: a tensor built by %s.__new__ (the pre-1.0 pickling of tensors)", ErrUnsupported, g.name)
	}
	return nil, g.forbidden("instantiating")
}

// sequenceItems returns the items of a list, tuple or set.
func sequenceItems(v any) ([]any, bool) {
	switch v := v.(type) {
	case pyTuple:
		return v, true
	case *pyList:
		return v.items, true
	case *pySet:
		return v.items, true
	}
	return nil, false
}

// newDictFrom interprets OrderedDict(), OrderedDict(pairs) or Counter(dict).
func newDictFrom(g *pyGlobal, args pyTuple) (any, error) {
	d := newDict()
	if len(args) == 0 {
		return d, nil
	}
	if len(args) != 1 {
		return nil, g.argError(args, "() or (items)")
	}
	if src, ok := args[0].(*pyDict); ok {
		for i := range src.keys {
			d.set(src.keys[i], src.vals[i])
		}
		return d, nil
	}
	items, ok := sequenceItems(args[0])
	if !ok {
		return nil, g.argError(args, "() or (items)")
	}
	for _, it := range items {
		kv, ok := sequenceItems(it)
		if !ok || len(kv) != 2 {
			return nil, g.argError(args, "(key, value) pairs")
		}
		d.set(kv[0], kv[1])
	}
	return d, nil
}

// encodeBytes interprets _codecs.encode(str, encoding) and
// bytearray([source[, encoding]]), the ways protocol 2 spells bytes.
func encodeBytes(g *pyGlobal, args pyTuple) (any, error) {
	if len(args) == 0 && g.kind == gByteArray {
		return pyBytes{}, nil
	}
	if len(args) == 1 && g.kind == gByteArray {
		if b, ok := args[0].(pyBytes); ok {
			return b, nil
		}
	}
	if len(args) != 2 {
		return nil, g.argError(args, "(str, encoding)")
	}
	s, ok1 := args[0].(string)
	enc, ok2 := args[1].(string)
	if !ok1 || !ok2 {
		return nil, g.argError(args, "(str, encoding)")
	}
	switch strings.ToLower(strings.ReplaceAll(enc, "_", "-")) {
	case "latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1":
		b := make(pyBytes, 0, len(s))
		for _, r := range s {
			if r > 0xff {
				return nil, fmt.Errorf("%w: %s: a code point above U+00FF in latin-1", ErrPickle, g.name)
			}
			b = append(b, byte(r))
		}
		return b, nil
	case "utf-8", "utf8":
		return pyBytes(s), nil
	}
	return nil, fmt.Errorf("%w: %s: encoding %q", ErrPickle, g.name, enc)
}
