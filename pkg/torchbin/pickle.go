package torchbin

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// The values a pickle builds. Python objects become:
//
//	None → nil, bool → bool, int → int64 (bigInt beyond 64 bits),
//	float → float64, str → string, bytes/bytearray → pyBytes,
//	tuple → pyTuple, list → *pyList, dict/OrderedDict → *pyDict,
//	set/frozenset → *pySet, an allowed global → *pyGlobal,
//	a storage → *storageRef, a tensor → *tensorVal, anything else the
//	allow-list produces (a device, a layout, a complex) → pyOpaque.
type (
	pyTuple  []any
	pyBytes  []byte
	bigInt   struct{} // an integer wider than 64 bits (never a size or offset)
	pyOpaque string   // what the value was, for messages
	pyList   struct{ items []any }
	pySet    struct{ items []any }
	pyDict   struct {
		keys, vals []any
		index      map[dictKey]int
	}
)

// dictKey identifies the keys whose equality matters here (strings and
// integers); other keys are kept in order without deduplication.
type dictKey struct {
	s     string
	i     int64
	isInt bool
}

func keyOf(k any) (dictKey, bool) {
	switch k := k.(type) {
	case string:
		return dictKey{s: k}, true
	case int64:
		return dictKey{i: k, isInt: true}, true
	case bool:
		if k {
			return dictKey{i: 1, isInt: true}, true
		}
		return dictKey{isInt: true}, true
	}
	return dictKey{}, false
}

func newDict() *pyDict { return &pyDict{index: map[dictKey]int{}} }

// set assigns d[k] = v; an existing key keeps its place, as in Python.
func (d *pyDict) set(k, v any) {
	if dk, ok := keyOf(k); ok {
		if i, dup := d.index[dk]; dup {
			d.vals[i] = v
			return
		}
		d.index[dk] = len(d.keys)
	}
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

// Pickle opcodes (CPython's Lib/pickle.py names).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opString         = 'S'
	opBinString      = 'T'
	opShortBinString = 'U'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opInst           = 'i'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opObj            = 'o'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	// protocol 2
	opProto    = 0x80
	opNewObj   = 0x81
	opExt1     = 0x82
	opExt2     = 0x83
	opExt4     = 0x84
	opTuple1   = 0x85
	opTuple2   = 0x86
	opTuple3   = 0x87
	opNewTrue  = 0x88
	opNewFalse = 0x89
	opLong1    = 0x8a
	opLong4    = 0x8b
	// protocol 3
	opBinBytes      = 'B'
	opShortBinBytes = 'C'
	// protocol 4
	opShortBinUnicode = 0x8c
	opBinUnicode8     = 0x8d
	opBinBytes8       = 0x8e
	opEmptySet        = 0x8f
	opAddItems        = 0x90
	opFrozenSet       = 0x91
	opNewObjEx        = 0x92
	opStackGlobal     = 0x93
	opMemoize         = 0x94
	opFrame           = 0x95
	// protocol 5
	opByteArray8     = 0x96
	opNextBuffer     = 0x97
	opReadonlyBuffer = 0x98
)

// unpickler interprets a pickle program over an in-memory buffer. Every
// opcode consumes at least one byte and creates O(1) values (strings and
// bytes are bounded by the remaining input), so the work and memory are
// linear in the pickle's size.
type unpickler struct {
	data  []byte
	pos   int
	op    int // offset of the opcode being run, for messages
	stack []any
	marks []int
	memo  map[uint32]any
	// persistent resolves a BINPERSID id into a storage.
	persistent func(pid any) (any, error)
}

func (u *unpickler) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s (at byte %d)", ErrPickle, fmt.Sprintf(format, args...), u.op)
}

func (u *unpickler) truncated() error {
	return fmt.Errorf("%w: data.pkl ends inside the opcode at byte %d", ErrTruncated, u.op)
}

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, u.truncated()
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) readLine() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", u.truncated()
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

// argSize is the size of the little-endian integer (a length, a memo
// index, an extension code) that follows op.
func argSize(op byte) int {
	switch op {
	case opBinPut, opBinGet, opShortBinUnicode, opShortBinString, opShortBinBytes, opLong1, opExt1:
		return 1
	case opExt2:
		return 2
	case opLongBinPut, opLongBinGet, opBinUnicode, opBinString, opBinBytes, opLong4, opExt4:
		return 4
	case opBinUnicode8, opBinBytes8, opByteArray8:
		return 8
	}
	return 0
}

// readUint reads op's little-endian argument.
func (u *unpickler) readUint(op byte) (uint64, error) {
	b, err := u.read(argSize(op))
	if err != nil {
		return 0, err
	}
	var n uint64
	for i := len(b) - 1; i >= 0; i-- {
		n = n<<8 | uint64(b[i])
	}
	return n, nil
}

// readCounted reads op's length argument and that many bytes.
func (u *unpickler) readCounted(op byte) ([]byte, error) {
	n, err := u.readUint(op)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(u.data)-u.pos) {
		return nil, u.truncated()
	}
	return u.read(int(n))
}

// memoIndex reads the memo index of a PUT or GET opcode.
func (u *unpickler) memoIndex(op byte) (uint32, error) {
	switch op {
	case opPut, opGet:
		line, err := u.readLine()
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(line, 10, 32)
		if err != nil {
			return 0, u.errorf("memo index %q", line)
		}
		return uint32(n), nil
	case opMemoize:
		return uint32(len(u.memo)), nil
	}
	n, err := u.readUint(op)
	return uint32(n), err
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	floor := 0
	if len(u.marks) > 0 {
		floor = u.marks[len(u.marks)-1]
	}
	if len(u.stack) <= floor {
		return nil, u.errorf("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	floor := 0
	if len(u.marks) > 0 {
		floor = u.marks[len(u.marks)-1]
	}
	if len(u.stack) <= floor {
		return nil, u.errorf("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark returns the items pushed since the last MARK and removes them.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errorf("no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

// popN returns the top n items (n ≤ 3), oldest first.
func (u *unpickler) popN(n int) ([]any, error) {
	items := make([]any, n)
	for i := n - 1; i >= 0; i-- {
		v, err := u.pop()
		if err != nil {
			return nil, err
		}
		items[i] = v
	}
	return items, nil
}

// readGlobal reads the "module\nname\n" argument of GLOBAL and INST and
// resolves it against the allow-list.
func (u *unpickler) readGlobal() (*pyGlobal, error) {
	module, err := u.readLine()
	if err != nil {
		return nil, err
	}
	name, err := u.readLine()
	if err != nil {
		return nil, err
	}
	return lookupGlobal(module, name)
}

// popOperands pops the items an opcode adds to a container (n of them when
// counted, else those above the last MARK) and returns them with the
// container, which stays on the stack.
func (u *unpickler) popOperands(counted bool, n int) ([]any, any, error) {
	var items []any
	var err error
	if counted {
		items, err = u.popN(n)
	} else {
		items, err = u.popMark()
	}
	if err != nil {
		return nil, nil, err
	}
	t, err := u.top()
	return items, t, err
}

// load runs the program and returns the object STOP leaves.
func (u *unpickler) load() (any, error) {
	u.memo = map[uint32]any{}
	for {
		u.op = u.pos
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("%w: data.pkl ends without a STOP opcode", ErrTruncated)
		}
		op := u.data[u.pos]
		u.pos++
		if op == opStop {
			if len(u.marks) != 0 {
				return nil, u.errorf("STOP inside a MARK")
			}
			if len(u.stack) != 1 {
				return nil, u.errorf("STOP with %d values on the stack", len(u.stack))
			}
			return u.stack[0], nil
		}
		if err := u.step(op); err != nil {
			return nil, err
		}
	}
}

func (u *unpickler) step(op byte) error {
	switch op {
	case opProto:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		if b[0] > 5 {
			return u.errorf("pickle protocol %d", b[0])
		}
	case opFrame:
		_, err := u.read(8) // frames only group opcodes for buffering
		return err
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		_, err := u.pop()
		return err
	case opPopMark:
		_, err := u.popMark()
		return err
	case opDup:
		v, err := u.top()
		if err != nil {
			return err
		}
		u.push(v)

	// Scalars.
	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		b, err := u.read(4)
		if err != nil {
			return err
		}
		u.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case opBinInt1:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		u.push(int64(b[0]))
	case opBinInt2:
		b, err := u.read(2)
		if err != nil {
			return err
		}
		u.push(int64(binary.LittleEndian.Uint16(b)))
	case opLong1, opLong4:
		b, err := u.readCounted(op)
		if err != nil {
			return err
		}
		u.push(decodeLong(b))
	case opInt, opLong:
		line, err := u.readLine()
		if err != nil {
			return err
		}
		v, err := parseTextInt(line, op == opInt)
		if err != nil {
			return u.errorf("%v", err)
		}
		u.push(v)
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opFloat:
		line, err := u.readLine()
		if err != nil {
			return err
		}
		f, err := strconv.ParseFloat(line, 64)
		if err != nil {
			return u.errorf("FLOAT %q", line)
		}
		u.push(f)

	// Strings and bytes.
	case opBinUnicode, opShortBinUnicode, opBinUnicode8:
		b, err := u.readCounted(op)
		if err != nil {
			return err
		}
		if !utf8.Valid(b) {
			return u.errorf("a str that is not valid UTF-8")
		}
		u.push(string(b))
	case opShortBinString, opBinString:
		// Python 2 str: torch loads them as bytes decoded as ASCII/latin-1;
		// keys of Python 2 pickles are ASCII, so they become strings.
		b, err := u.readCounted(op)
		if err != nil {
			return err
		}
		u.push(latin1(b))
	case opBinBytes, opShortBinBytes, opBinBytes8, opByteArray8:
		b, err := u.readCounted(op)
		if err != nil {
			return err
		}
		u.push(pyBytes(b))

	// Containers.
	case opEmptyTuple:
		u.push(pyTuple{})
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opTuple1, opTuple2, opTuple3:
		items, err := u.popN(int(op-opTuple1) + 1)
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opEmptyList:
		u.push(&pyList{})
	case opList:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pyList{items: items})
	case opAppend, opAppends:
		items, t, err := u.popOperands(op == opAppend, 1)
		if err != nil {
			return err
		}
		l, ok := t.(*pyList)
		if !ok {
			return u.errorf("APPEND to a %s", typeName(t))
		}
		l.items = append(l.items, items...)
	case opEmptyDict:
		u.push(newDict())
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := newDict()
		if err := u.setItems(d, items); err != nil {
			return err
		}
		u.push(d)
	case opSetItem, opSetItems:
		items, t, err := u.popOperands(op == opSetItem, 2)
		if err != nil {
			return err
		}
		d, ok := t.(*pyDict)
		if !ok {
			return u.errorf("SETITEM on a %s", typeName(t))
		}
		return u.setItems(d, items)
	case opEmptySet:
		u.push(&pySet{})
	case opAddItems:
		items, t, err := u.popOperands(false, 0)
		if err != nil {
			return err
		}
		set, ok := t.(*pySet)
		if !ok {
			return u.errorf("ADDITEMS on a %s", typeName(t))
		}
		set.items = append(set.items, items...)
	case opFrozenSet:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pySet{items: items})

	// Memo.
	case opBinPut, opLongBinPut, opPut, opMemoize:
		idx, err := u.memoIndex(op)
		if err != nil {
			return err
		}
		v, err := u.top()
		if err != nil {
			return err
		}
		u.memo[idx] = v
	case opBinGet, opLongBinGet, opGet:
		idx, err := u.memoIndex(op)
		if err != nil {
			return err
		}
		v, ok := u.memo[idx]
		if !ok {
			return u.errorf("memo entry %d was never stored", idx)
		}
		u.push(v)

	// Globals and calls: the only ways a pickle reaches code.
	case opGlobal:
		g, err := u.readGlobal()
		if err != nil {
			return err
		}
		u.push(g)
	case opStackGlobal:
		items, err := u.popN(2)
		if err != nil {
			return err
		}
		module, ok1 := items[0].(string)
		name, ok2 := items[1].(string)
		if !ok1 || !ok2 {
			return u.errorf("STACK_GLOBAL with a %s and a %s", typeName(items[0]), typeName(items[1]))
		}
		g, err := lookupGlobal(module, name)
		if err != nil {
			return err
		}
		u.push(g)
	case opInst:
		g, err := u.readGlobal()
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: INST of %s (at byte %d)", ErrForbiddenGlobal, g.name, u.op)
	case opObj:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return u.errorf("OBJ without a class")
		}
		return fmt.Errorf("%w: OBJ of %s (at byte %d)", ErrForbiddenGlobal, describe(items[0]), u.op)
	case opExt1, opExt2, opExt4:
		code, err := u.readUint(op)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: extension code %d (copyreg's registry names an arbitrary global) (at byte %d)", ErrForbiddenGlobal, code, u.op)
	case opReduce:
		args, err := u.pop()
		if err != nil {
			return err
		}
		fn, err := u.pop()
		if err != nil {
			return err
		}
		tuple, ok := args.(pyTuple)
		if !ok {
			return u.errorf("REDUCE with %s arguments", typeName(args))
		}
		g, ok := fn.(*pyGlobal)
		if !ok {
			return u.errorf("REDUCE calls a %s", typeName(fn))
		}
		v, err := g.call(tuple, 0)
		if err != nil {
			return fmt.Errorf("%w (at byte %d)", err, u.op)
		}
		u.push(v)
	case opNewObj, opNewObjEx:
		var items []any
		var err error
		if op == opNewObj {
			items, err = u.popN(2)
		} else {
			items, err = u.popN(3)
		}
		if err != nil {
			return err
		}
		g, ok := items[0].(*pyGlobal)
		if !ok {
			return u.errorf("NEWOBJ of a %s", typeName(items[0]))
		}
		args, ok := items[1].(pyTuple)
		if !ok {
			return u.errorf("NEWOBJ with %s arguments", typeName(items[1]))
		}
		if op == opNewObjEx {
			if kw, ok := items[2].(*pyDict); !ok || len(kw.keys) != 0 {
				return fmt.Errorf("%w: NEWOBJ_EX of %s with keyword arguments (at byte %d)", ErrForbiddenGlobal, g.name, u.op)
			}
		}
		v, err := g.newObj(args)
		if err != nil {
			return fmt.Errorf("%w (at byte %d)", err, u.op)
		}
		u.push(v)
	case opBuild:
		state, err := u.pop()
		if err != nil {
			return err
		}
		inst, err := u.top()
		if err != nil {
			return err
		}
		switch inst.(type) {
		case *pyDict:
			// An OrderedDict's attributes, e.g. a state dict's _metadata
			// (module versions): kept out of the tensors.
			_ = state
		case *tensorVal:
			// A Parameter's Python attributes.
		default:
			return u.errorf("BUILD on a %s", typeName(inst))
		}
	case opBinPersID:
		pid, err := u.pop()
		if err != nil {
			return err
		}
		v, err := u.persistent(pid)
		if err != nil {
			return fmt.Errorf("%w (at byte %d)", err, u.op)
		}
		u.push(v)
	case opPersID, opString, opUnicode:
		return u.errorf("text opcode %q (protocol 0) is not supported; torch.save writes protocol 2", rune(op))
	case opNextBuffer, opReadonlyBuffer:
		return u.errorf("out-of-band buffers (opcode 0x%02x) are not supported", op)
	default:
		return u.errorf("unknown opcode 0x%02x", op)
	}
	return nil
}

func (u *unpickler) setItems(d *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return u.errorf("SETITEMS with an odd number of items")
	}
	for i := 0; i < len(items); i += 2 {
		if s, ok := items[i].(string); ok && len(s) > MaxKeyLen {
			return u.errorf("a dict key of %d bytes (limit %d)", len(s), MaxKeyLen)
		}
		d.set(items[i], items[i+1])
	}
	return nil
}

// decodeLong decodes a little-endian two's-complement integer.
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) > 8 {
		return bigInt{}
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if shift := 64 - 8*uint(len(b)); shift > 0 {
		return int64(v<<shift) >> shift
	}
	return int64(v)
}

// parseTextInt parses the argument of INT ("I01\n" is True) or LONG ("L5L\n").
func parseTextInt(s string, isInt bool) (any, error) {
	if isInt && s == "01" {
		return true, nil
	}
	if isInt && s == "00" {
		return false, nil
	}
	if !isInt && len(s) > 0 && s[len(s)-1] == 'L' {
		s = s[:len(s)-1]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return bigInt{}, nil
		}
		return nil, fmt.Errorf("integer %q", s)
	}
	return v, nil
}

// latin1 decodes bytes as ISO-8859-1 (each byte one code point).
func latin1(b []byte) string {
	ascii := true
	for _, c := range b {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b)
	}
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// typeName names a value's Python type for messages.
func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, bigInt:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case pyBytes:
		return "bytes"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case *pySet:
		return "set"
	case *pyGlobal:
		return "global " + v.name
	case *storageRef:
		return "storage"
	case *tensorVal:
		return "tensor"
	case pyOpaque:
		return string(v)
	}
	return fmt.Sprintf("%T", v)
}

// describe names a value for messages, globals by their full name.
func describe(v any) string {
	if g, ok := v.(*pyGlobal); ok {
		return g.name
	}
	return "a " + typeName(v)
}
