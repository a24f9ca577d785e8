package torchbin

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// plain turns unpickled values into comparable Go values: dicts become
// []any{"dict", k1, v1, ...}, lists []any{"list", ...}, sets []any{"set", ...}.
func plain(v any) any {
	switch v := v.(type) {
	case pyTuple:
		out := []any{"tuple"}
		for _, it := range v {
			out = append(out, plain(it))
		}
		return out
	case *pyList:
		out := []any{"list"}
		for _, it := range v.items {
			out = append(out, plain(it))
		}
		return out
	case *pySet:
		out := []any{"set"}
		for _, it := range v.items {
			out = append(out, plain(it))
		}
		return out
	case *pyDict:
		out := []any{"dict"}
		for i := range v.keys {
			out = append(out, plain(v.keys[i]), plain(v.vals[i]))
		}
		return out
	case pyBytes:
		return "bytes:" + string(v)
	case *pyGlobal:
		return "global:" + v.name
	case *tensorVal:
		return fmt.Sprintf("tensor:%s%v@%d", v.dtype, v.shape, v.offset)
	}
	return v
}

func unpickle(b []byte) (any, error) {
	st := &storage{key: "0", dtype: "F32", nbytes: 64}
	u := &unpickler{data: b, persistent: func(pid any) (any, error) {
		if t, ok := pid.(pyTuple); ok && len(t) > 0 && t[0] == "storage" {
			return &storageRef{st: st}, nil
		}
		return nil, fmt.Errorf("%w: bad pid", ErrPickle)
	}}
	return u.load()
}

func TestUnpickleValues(t *testing.T) {
	frame := func(body ...byte) []byte {
		b := []byte{opProto, 4, opFrame, byte(len(body)), 0, 0, 0, 0, 0, 0, 0}
		return append(append(b, body...), opStop)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want any
	}{
		{"ints", newPkl().op(opMark).int(-5).op(opBinInt1, 200, opBinInt2, 0x34, 0x12, opLong1, 2, 0xff, 0x7f,
			opLong1, 1, 0xff, opLong1, 0, opLong4, 9, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, opTuple).bytes(),
			[]any{"tuple", int64(-5), int64(200), int64(0x1234), int64(0x7fff), int64(-1), int64(0), bigInt{}}},
		{"text opcodes", []byte("(I01\nI00\nI-42\nL12L\nF1.5\n(lp0\ng0\nt."),
			[]any{"tuple", true, false, int64(-42), int64(12), 1.5, []any{"list"}, []any{"list"}}},
		{"scalars", newPkl().op(opMark, opNone, opNewTrue, opNewFalse, opBinFloat, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, opTuple).bytes(),
			[]any{"tuple", nil, true, false, 1.5}},
		{"strings and bytes", newPkl().op(opMark).str("héllo").op(opShortBinString, 2, 'h', 0xe9).
			op(opShortBinBytes, 2, 0, 1, opBinBytes, 1, 0, 0, 0, 'x').op(opTuple).bytes(),
			[]any{"tuple", "héllo", "hé", "bytes:\x00\x01", "bytes:x"}},
		{"protocol 4", frame(opShortBinUnicode, 1, 'k', opMemoize, opBinUnicode8, 1, 0, 0, 0, 0, 0, 0, 0, 'v',
			opBinGet, 0, opTuple3), []any{"tuple", "k", "v", "k"}},
		{"containers", newPkl().op(opEmptyDict, opMark).str("l").op(opEmptyList, opMark).int(1).int(2).op(opAppends).int(3).op(opAppend).
			str("s").op(opEmptySet, opMark).int(1).op(opAddItems).
			str("f").op(opMark).int(4).op(opFrozenSet).
			str("d").op(opMark).str("a").int(1).op(opDict).
			str("t").op(opEmptyTuple).op(opSetItems).bytes(),
			[]any{"dict", "l", []any{"list", int64(1), int64(2), int64(3)}, "s", []any{"set", int64(1)},
				"f", []any{"set", int64(4)}, "d", []any{"dict", "a", int64(1)}, "t", []any{"tuple"}}},
		{"a repeated key keeps its place", newPkl().op(opEmptyDict, opMark).str("a").int(1).str("b").int(2).str("a").int(3).op(opSetItems).bytes(),
			[]any{"dict", "a", int64(3), "b", int64(2)}},
		{"memo and stack ops", newPkl().str("x").op(opBinPut, 7, opPop).str("y").op(opDup, opMark, opNone, opPopMark).
			op(opLongBinGet, 7, 0, 0, 0, opTuple3).bytes(), []any{"tuple", "y", "y", "x"}},
		{"OrderedDict from pairs", newPkl().global("collections", "OrderedDict").op(opMark, opEmptyList, opMark).
			str("a").int(1).op(opTuple2).op(opAppends, opTuple, opReduce).bytes(), []any{"dict", "a", int64(1)}},
		{"OrderedDict with _metadata", newPkl().global("collections", "OrderedDict").op(opEmptyTuple, opReduce).
			op(opEmptyDict).str("_metadata").op(opEmptyDict, opSetItem, opBuild).bytes(), []any{"dict"}},
		{"Counter", newPkl().global("collections", "Counter").op(opEmptyDict).str("a").int(2).op(opSetItem, opTuple1, opReduce).bytes(),
			[]any{"dict", "a", int64(2)}},
		{"NEWOBJ OrderedDict", newPkl().global("collections", "OrderedDict").op(opEmptyTuple, opNewObj).bytes(), []any{"dict"}},
		{"torch.Size", newPkl().global("torch", "Size").op(opMark).ints(2, 3).op(opTuple, opReduce).bytes(),
			[]any{"tuple", int64(2), int64(3)}},
		{"bytes via _codecs", newPkl().global("_codecs", "encode").op(opMark).str("\u00ff").str("latin1").op(opTuple, opReduce).bytes(), "bytes:\xff"},
		{"bytearray", newPkl().global("builtins", "bytearray").op(opMark, opShortBinBytes, 1, 'z', opTuple, opReduce).bytes(), "bytes:z"},
		{"py2 builtin set", newPkl().global("__builtin__", "set").op(opMark, opEmptyList, opTuple, opReduce).bytes(), []any{"set"}},
		{"a tensor", newPkl().tensor("FloatStorage", "0", 16, 4, []int{2, 3}, []int{3, 1}).bytes(), "tensor:F32[2 3]@4"},
		{"a Parameter", newPkl().global("torch._utils", "_rebuild_parameter").op(opMark).
			tensor("FloatStorage", "0", 16, 0, []int{4}, []int{1}).op(opNewTrue).global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opTuple, opReduce).bytes(),
			"tensor:F32[4]@0"},
		{"NEWOBJ Parameter then BUILD", newPkl().global("torch.nn.parameter", "Parameter").op(opMark).
			tensor("FloatStorage", "0", 16, 0, []int{4}, []int{1}).op(opNewFalse, opTuple, opNewObj, opEmptyDict, opBuild).bytes(),
			"tensor:F32[4]@0"},
		{"v3 with a dtype", newPkl().global("torch._utils", "_rebuild_tensor_v3").op(opMark).storage("UntypedStorage", "0", 64).
			int(0).ints(8).ints(1).op(opNewFalse).global("collections", "OrderedDict").op(opEmptyTuple, opReduce).
			global("torch", "bfloat16").op(opTuple, opReduce).bytes(), "tensor:BF16[8]@0"},
	} {
		got, err := unpickle(tc.in)
		if tc.want == nil { // only checks that it parses
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if p := plain(got); !reflect.DeepEqual(p, tc.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.name, p, tc.want)
		}
	}
}

func TestUnpickleErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
		msg  string
	}{
		{"empty", nil, ErrTruncated, "without a STOP"},
		{"no STOP", newPkl().op(opNone).b, ErrTruncated, "without a STOP"},
		{"cut string", newPkl().op(opBinUnicode, 9, 0, 0, 0, 'a').b, ErrTruncated, "ends inside"},
		{"huge length", newPkl().op(opBinUnicode8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).b, ErrTruncated, "ends inside"},
		{"cut GLOBAL", newPkl().op(opGlobal).op([]byte("torch\nSize")...).b, ErrTruncated, "ends inside"},
		{"underflow", newPkl().op(opPop).bytes(), ErrPickle, "stack underflow"},
		{"underflow below MARK", newPkl().op(opNone, opMark, opTuple1).bytes(), ErrPickle, "stack underflow"},
		{"STOP with two values", newPkl().op(opNone, opNone).bytes(), ErrPickle, "2 values"},
		{"STOP inside MARK", newPkl().op(opNone, opMark).bytes(), ErrPickle, "inside a MARK"},
		{"no MARK", newPkl().op(opTuple).bytes(), ErrPickle, "no MARK"},
		{"unset memo", newPkl().op(opBinGet, 3).bytes(), ErrPickle, "never stored"},
		{"unknown opcode", newPkl().op(0xff).bytes(), ErrPickle, "unknown opcode 0xff"},
		{"protocol 6", []byte{opProto, 6, opNone, opStop}, ErrPickle, "protocol 6"},
		{"text STRING", []byte("S'x'\n."), ErrPickle, "protocol 0"},
		{"out-of-band buffer", []byte{opProto, 5, opNextBuffer, opStop}, ErrPickle, "out-of-band"},
		{"invalid UTF-8", newPkl().op(opShortBinUnicode, 1, 0xff).bytes(), ErrPickle, "UTF-8"},
		{"APPEND to a dict", newPkl().op(opEmptyDict, opNone, opAppend).bytes(), ErrPickle, "APPEND to a dict"},
		{"SETITEM on a list", newPkl().op(opEmptyList, opNone, opNone, opSetItem).bytes(), ErrPickle, "SETITEM on a list"},
		{"odd SETITEMS", newPkl().op(opEmptyDict, opMark, opNone, opSetItems).bytes(), ErrPickle, "odd"},
		{"long key", newPkl().op(opEmptyDict).str(strings.Repeat("k", MaxKeyLen+1)).op(opNone, opSetItem).bytes(), ErrPickle, "dict key"},
		{"REDUCE on a str", newPkl().str("os.system").op(opEmptyTuple, opReduce).bytes(), ErrPickle, "REDUCE calls a str"},
		{"REDUCE without a tuple", newPkl().global("torch", "Size").op(opNone, opReduce).bytes(), ErrPickle, "None arguments"},
		{"BUILD on a str", newPkl().str("x").op(opEmptyDict, opBuild).bytes(), ErrPickle, "BUILD on a str"},
		{"STACK_GLOBAL of ints", newPkl().int(1).int(2).op(opStackGlobal).bytes(), ErrPickle, "STACK_GLOBAL"},
		{"forbidden global", newPkl().global("builtins", "getattr").bytes(), ErrForbiddenGlobal, "builtins.getattr"},
		{"forbidden STACK_GLOBAL", newPkl().str("os").str("popen").op(opStackGlobal).bytes(), ErrForbiddenGlobal, "os.popen"},
		{"control bytes in a name", newPkl().global("os\x00", "system").bytes(), ErrForbiddenGlobal, `"os\x00.system"`},
		{"NEWOBJ of a dtype", newPkl().global("torch", "float32").op(opEmptyTuple, opNewObj).bytes(), ErrForbiddenGlobal, "torch.float32: instantiating"},
		{"NEWOBJ_EX with kwargs", newPkl().global("collections", "OrderedDict").op(opEmptyTuple, opEmptyDict).str("a").int(1).op(opSetItem, opNewObjEx).bytes(), ErrForbiddenGlobal, "keyword"},
		{"calling a dtype", newPkl().global("torch", "float32").op(opEmptyTuple, opReduce).bytes(), ErrForbiddenGlobal, "torch.float32: calling"},
		{"legacy tensor NEWOBJ", newPkl().global("torch", "Tensor").op(opEmptyTuple, opNewObj).bytes(), ErrUnsupported, "pre-1.0"},
		{"sparse tensor", newPkl().global("torch._utils", "_rebuild_sparse_tensor").op(opEmptyTuple, opReduce).bytes(), ErrUnsupported, "sparse"},
		{"complex dtype in v3", newPkl().global("torch._utils", "_rebuild_tensor_v3").op(opMark).storage("UntypedStorage", "0", 64).
			int(0).ints(1).ints(1).op(opNewFalse, opNone).global("torch", "complex64").op(opTuple, opReduce).bytes(), ErrUnsupported, "complex64"},
		{"neg bit", newPkl().global("torch._utils", "_rebuild_tensor_v2").op(opMark).storage("FloatStorage", "0", 4).
			int(0).ints(1).ints(1).op(opNewFalse, opNone, opEmptyDict).str("neg").op(opNewTrue, opSetItem, opTuple, opReduce).bytes(), ErrUnsupported, "neg"},
		{"v2 with too few args", newPkl().global("torch._utils", "_rebuild_tensor_v2").op(opMark).storage("FloatStorage", "0", 4).op(opTuple, opReduce).bytes(), ErrPickle, "_rebuild_tensor_v2 called with (storage)"},
		{"from_type with a str", newPkl().global("torch._tensor", "_rebuild_from_type_v2").op(opMark).str("f").str("t").op(opEmptyTuple, opNone, opTuple, opReduce).bytes(), ErrPickle, "_rebuild_from_type_v2"},
	} {
		_, err := unpickle(tc.in)
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v; want %v containing %q", tc.name, err, tc.err, tc.msg)
		}
	}
}

func TestDecodeLong(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want any
	}{
		{nil, int64(0)}, {[]byte{0x7f}, int64(127)}, {[]byte{0x80}, int64(-128)}, {[]byte{0xff, 0x00}, int64(255)},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 0x80}, int64(-1 << 63)}, {make([]byte, 9), bigInt{}},
	} {
		if got := decodeLong(tc.in); got != tc.want {
			t.Errorf("decodeLong(%x) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// The flattening rule: nesting, wrapper keys, skipped values, cycles.
func TestFlatten(t *testing.T) {
	tensor := newPkl().tensor("FloatStorage", "0", 16, 0, []int{1}, []int{1}).b[2:]
	withT := func(p *pkl) *pkl { return p.op(tensor...) }
	for _, tc := range []struct {
		name    string
		in      *pkl
		tensors []string
		skipped []string
		err     error
	}{
		{"model wrapper", withT(newPkl().op(opEmptyDict, opMark).str("epoch").int(1).str("model").op(opEmptyDict).str("w")).
			op(opSetItem, opSetItems), []string{"w"}, []string{"epoch"}, nil},
		{"state_dict before model", withT(withT(newPkl().op(opEmptyDict, opMark).str("model").op(opEmptyDict).str("a")).
			op(opSetItem).str("state_dict").op(opEmptyDict).str("b")).op(opSetItem, opSetItems), []string{"b"}, []string{"model"}, nil},
		{"a tensor at the top stops unwrapping", withT(withT(newPkl().op(opEmptyDict, opMark).str("x")).
			str("model").op(opEmptyDict).str("w")).op(opSetItem, opSetItems), []string{"x", "model.w"}, nil, nil},
		{"a wrapper without tensors", newPkl().op(opEmptyDict).str("model").op(opEmptyDict, opSetItem), nil, []string{"model"}, nil},
		{"a list at the top", withT(withT(newPkl().op(opEmptyList, opMark))).op(opAppends), []string{"0", "1"}, nil, nil},
		{"odd keys", withT(newPkl().op(opEmptyDict, opMark).op(opNone).int(1).op(opNewTrue)).op(opSetItems), nil,
			[]string{"<None key>", "<bool key>"}, nil},
		{"a cycle", newPkl().op(opEmptyDict, opBinPut, 0).str("self").op(opBinGet, 0, opSetItem), nil, nil, ErrStateDict},
		{"a str", newPkl().str("x"), nil, nil, ErrStateDict},
	} {
		root, err := unpickle(tc.in.bytes())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		named, skipped, err := flattenStateDict(root, 10000)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
			continue
		}
		var got []string
		for _, n := range named {
			got = append(got, n.name)
		}
		if !reflect.DeepEqual(got, tc.tensors) || !reflect.DeepEqual(skipped, tc.skipped) {
			t.Errorf("%s: tensors %q skipped %q, want %q %q", tc.name, got, skipped, tc.tensors, tc.skipped)
		}
	}
}

// A DAG built through the memo (each level holding the previous one twice)
// would take 2^depth steps to walk: the budget stops it.
func TestFlattenBudget(t *testing.T) {
	p := newPkl().op(tensorOps()...).op(opBinPut, 0, opPop)
	for range 40 {
		p.op(opMark, opBinGet, 0, opBinGet, 0, opList, opBinPut, 0, opPop)
	}
	b := p.op(opEmptyDict).str("x").op(opBinGet, 0, opSetItem).bytes()
	root, err := unpickle(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := flattenStateDict(root, 4*len(b)+1024); !errors.Is(err, ErrStateDict) {
		t.Errorf("%v, want ErrStateDict", err)
	}
}

func tensorOps() []byte {
	return newPkl().tensor("FloatStorage", "0", 16, 0, []int{1}, []int{1}).b[2:]
}
