package gguf

// KV is one metadata key/value pair.
//
// The GGUF type of Value is given by its Go type, so the caller states exactly what
// llama.cpp will see (uint32 for counts, float32 for epsilons, …):
//
//	uint8 int8 uint16 int16 uint32 int32 float32 bool string uint64 int64 float64
//
// or a slice of one of those for an ARRAY. The reader also returns []any for an array
// whose elements are arrays (ggml rejects such files; the writer refuses them).
type KV struct {
	Key   string
	Value any
}

// Metadata is the list of key/value pairs of a file, in file order.
type Metadata []KV

// TypeOf returns the GGUF type of a value and, for an array, its element type.
// ok is false for a Go type that has no GGUF encoding. For a nested array ([]any)
// the element type is ValueArray.
func TypeOf(v any) (typ, elem ValueType, ok bool) {
	switch v.(type) {
	case uint8:
		return ValueUint8, 0, true
	case int8:
		return ValueInt8, 0, true
	case uint16:
		return ValueUint16, 0, true
	case int16:
		return ValueInt16, 0, true
	case uint32:
		return ValueUint32, 0, true
	case int32:
		return ValueInt32, 0, true
	case float32:
		return ValueFloat32, 0, true
	case bool:
		return ValueBool, 0, true
	case string:
		return ValueString, 0, true
	case uint64:
		return ValueUint64, 0, true
	case int64:
		return ValueInt64, 0, true
	case float64:
		return ValueFloat64, 0, true
	case []uint8:
		return ValueArray, ValueUint8, true
	case []int8:
		return ValueArray, ValueInt8, true
	case []uint16:
		return ValueArray, ValueUint16, true
	case []int16:
		return ValueArray, ValueInt16, true
	case []uint32:
		return ValueArray, ValueUint32, true
	case []int32:
		return ValueArray, ValueInt32, true
	case []float32:
		return ValueArray, ValueFloat32, true
	case []bool:
		return ValueArray, ValueBool, true
	case []string:
		return ValueArray, ValueString, true
	case []uint64:
		return ValueArray, ValueUint64, true
	case []int64:
		return ValueArray, ValueInt64, true
	case []float64:
		return ValueArray, ValueFloat64, true
	case []any:
		return ValueArray, ValueArray, true
	}
	return 0, 0, false
}

// arrayLen returns the length of an array value, or -1 if v is not an array.
func arrayLen(v any) int {
	switch a := v.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	case []any:
		return len(a)
	}
	return -1
}

// Get returns the value of key.
func (m Metadata) Get(key string) (any, bool) {
	for i := range m {
		if m[i].Key == key {
			return m[i].Value, true
		}
	}
	return nil, false
}

// Has reports whether key is present.
func (m Metadata) Has(key string) bool {
	_, ok := m.Get(key)
	return ok
}

// Type returns the GGUF type of key's value (and its element type for arrays).
func (m Metadata) Type(key string) (typ, elem ValueType, ok bool) {
	v, ok := m.Get(key)
	if !ok {
		return 0, 0, false
	}
	return TypeOf(v)
}

// String returns key's value if it is a STRING.
func (m Metadata) String(key string) (string, bool) {
	v, _ := m.Get(key)
	s, ok := v.(string)
	return s, ok
}

// Uint32 returns key's value if it is exactly a UINT32 (llama.cpp's typed getters
// accept nothing else).
func (m Metadata) Uint32(key string) (uint32, bool) {
	v, _ := m.Get(key)
	u, ok := v.(uint32)
	return u, ok
}

// Float32 returns key's value if it is exactly a FLOAT32.
func (m Metadata) Float32(key string) (float32, bool) {
	v, _ := m.Get(key)
	f, ok := v.(float32)
	return f, ok
}

// Bool returns key's value if it is a BOOL.
func (m Metadata) Bool(key string) (bool, bool) {
	v, _ := m.Get(key)
	b, ok := v.(bool)
	return b, ok
}

// Uint returns key's value if it is an integer of any width with a non-negative value
// (lenient reading for reports; use Uint32 to check what llama.cpp requires).
func (m Metadata) Uint(key string) (uint64, bool) {
	v, _ := m.Get(key)
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// Float returns key's value if it is a FLOAT32 or FLOAT64 (lenient reading).
func (m Metadata) Float(key string) (float64, bool) {
	v, _ := m.Get(key)
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// Strings returns key's value if it is an ARRAY of STRING.
func (m Metadata) Strings(key string) ([]string, bool) {
	v, _ := m.Get(key)
	s, ok := v.([]string)
	return s, ok
}

// Len returns the number of elements of key's value if it is an ARRAY.
func (m Metadata) Len(key string) (int, bool) {
	v, ok := m.Get(key)
	if !ok {
		return 0, false
	}
	n := arrayLen(v)
	return n, n >= 0
}
