package gguf

import "fmt"

// LlamaQKRowOrder returns, for each row of a permuted q_proj or k_proj weight (or bias)
// with rows = nHead·hd, the row of the HF tensor it comes from (spec §3.4):
//
//	new_row[h·hd + 2i + j] = old_row[h·hd + j·(hd/2) + i],  i < hd/2, j ∈ {0, 1}
//
// This turns HF's NEOX-style rotary layout into llama.cpp's adjacent pairs. Use nHead =
// num_attention_heads for q and num_key_value_heads for k; never permute v, o or others.
// For a LoRA adapter, permute the rows of B only.
func LlamaQKRowOrder(rows, nHead int) ([]int, error) {
	if nHead <= 0 || rows <= 0 || rows%nHead != 0 || (rows/nHead)%2 != 0 {
		return nil, fmt.Errorf("%w: %d rows cannot be split into %d heads of even size", ErrDims, rows, nHead)
	}
	hd := rows / nHead
	order := make([]int, rows)
	for h := 0; h < nHead; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				order[h*hd+2*i+j] = h*hd + j*(hd/2) + i
			}
		}
	}
	return order, nil
}

// PermuteLlamaQK writes into dst the row-major matrix src (rows × len(src)/rows) with its
// rows reordered by LlamaQKRowOrder(rows, nHead). dst and src must not overlap.
func PermuteLlamaQK(dst, src []float32, rows, nHead int) error {
	order, err := LlamaQKRowOrder(rows, nHead)
	if err != nil {
		return err
	}
	if len(src)%rows != 0 || len(dst) != len(src) {
		return fmt.Errorf("%w: %d values into %d rows (dst %d)", ErrSize, len(src), rows, len(dst))
	}
	cols := len(src) / rows
	for r, from := range order {
		copy(dst[r*cols:(r+1)*cols], src[from*cols:(from+1)*cols])
	}
	return nil
}
