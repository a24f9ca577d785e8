package gguf

import (
	"errors"
	"reflect"
	"testing"
)

func TestLlamaQKRowOrder(t *testing.T) {
	// spec §3.4 example: hd = 8, one head
	got, err := LlamaQKRowOrder(8, 1)
	if err != nil || !reflect.DeepEqual(got, []int{0, 4, 1, 5, 2, 6, 3, 7}) {
		t.Fatalf("hd 8: %v %v", got, err)
	}
	got, _ = LlamaQKRowOrder(8, 2)
	if !reflect.DeepEqual(got, []int{0, 2, 1, 3, 4, 6, 5, 7}) {
		t.Fatalf("2 heads of 4: %v", got)
	}
	for _, bad := range [][2]int{{8, 0}, {8, 3}, {6, 2}, {0, 1}, {-4, 2}} {
		if _, err := LlamaQKRowOrder(bad[0], bad[1]); !errors.Is(err, ErrDims) {
			t.Errorf("%v: err = %v", bad, err)
		}
	}
	// equivalent to reshape (n_h, 2, hd/2, in), swap axes 1 and 2, reshape back
	for _, c := range [][2]int{{64, 4}, {32, 2}, {16, 1}, {48, 3}} {
		rows, nh := c[0], c[1]
		hd := rows / nh
		order, _ := LlamaQKRowOrder(rows, nh)
		for h := 0; h < nh; h++ {
			for a := 0; a < 2; a++ {
				for b := 0; b < hd/2; b++ {
					// element [h][a][b] of the source lands at [h][b][a] of the result
					src := h*hd + a*(hd/2) + b
					dst := h*hd + b*2 + a
					if order[dst] != src {
						t.Fatalf("rows %d heads %d: order[%d] = %d, want %d", rows, nh, dst, order[dst], src)
					}
				}
			}
		}
	}
}

func TestPermuteLlamaQK(t *testing.T) {
	// 4 rows (2 heads of hd 2 is identity; use 1 head of hd 4) × 3 columns
	src := []float32{
		0, 0.1, 0.2,
		1, 1.1, 1.2,
		2, 2.1, 2.2,
		3, 3.1, 3.2,
	}
	dst := make([]float32, len(src))
	if err := PermuteLlamaQK(dst, src, 4, 1); err != nil {
		t.Fatal(err)
	}
	want := []float32{0, 0.1, 0.2, 2, 2.1, 2.2, 1, 1.1, 1.2, 3, 3.1, 3.2}
	if !reflect.DeepEqual(dst, want) {
		t.Fatalf("got %v", dst)
	}
	// bias (one column) with 2 heads of 4
	b := []float32{0, 1, 2, 3, 4, 5, 6, 7}
	out := make([]float32, 8)
	if err := PermuteLlamaQK(out, b, 8, 2); err != nil || !reflect.DeepEqual(out, []float32{0, 2, 1, 3, 4, 6, 5, 7}) {
		t.Fatalf("bias: %v %v", out, err)
	}
	if err := PermuteLlamaQK(make([]float32, 10), make([]float32, 10), 4, 1); !errors.Is(err, ErrSize) {
		t.Errorf("10 values in 4 rows: %v", err)
	}
	if err := PermuteLlamaQK(make([]float32, 8), make([]float32, 12), 4, 1); !errors.Is(err, ErrSize) {
		t.Errorf("dst size: %v", err)
	}
}
