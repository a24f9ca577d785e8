package pipeline

import "testing"

// Floats are zeroed, writable and given back; an empty request is nil.
func TestFloats(t *testing.T) {
	f := Floats(3 << 20)
	if len(f) != 3<<20 {
		t.Fatalf("%d values", len(f))
	}
	for i := range f {
		if f[i] != 0 {
			t.Fatalf("value %d is %v", i, f[i])
		}
		f[i] = float32(i)
	}
	if f[len(f)-1] != float32(len(f)-1) {
		t.Fatal("write lost")
	}
	FreeFloats(f)
	FreeFloats(nil)
	if Floats(0) != nil {
		t.Error("Floats(0) is not nil")
	}
}
