package cuda

import (
	"fmt"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
)

// TestCheckAttentionPrefix: a negative prefix, or a prefix with packed
// documents, is refused before anything is queued.
func TestCheckAttentionPrefix(t *testing.T) {
	seg := &buffer{dt: compute.I32, n: 4}
	for _, a := range []compute.Attention{
		{Batch: 1, Seq: 4, Heads: 1, KVHeads: 1, HeadDim: 2, Prefix: -1},
		{Batch: 1, Seq: 4, Heads: 1, KVHeads: 1, HeadDim: 2, Prefix: 2, Segments: seg},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%+v: no panic", a)
				}
			}()
			checkAttention(a)
		}()
	}
	checkAttention(compute.Attention{Batch: 1, Seq: 4, Heads: 1, KVHeads: 1, HeadDim: 2, Prefix: 2})
}

// TestChunksPrefix: with a prefix, each chunk of the tensor-core path
// spans exactly the key positions its queries see, from the first its
// window shows any of them (prefix keys included) to its last query's.
func TestChunksPrefix(t *testing.T) {
	for _, a := range []compute.Attention{
		{Batch: 2, Seq: 20, Prefix: 5},
		{Batch: 2, Seq: 20, Prefix: 5, Window: 8},
		{Batch: 1, Seq: 9, Prefix: 30, Window: 33},
		{Batch: 1, Seq: 9, Prefix: 30, Window: 2},
	} {
		for _, c := range []int{1, 4, 7, 64} {
			name := fmt.Sprintf("%+v chunk %d", a, c)
			seen := map[[2]int]bool{}
			for _, ch := range chunks(a, c) {
				if ch.k0 < 0 || ch.k0+ch.keys > a.Keys() {
					t.Errorf("%s: keys %d..%d outside the %d of a sequence", name, ch.k0, ch.k0+ch.keys-1, a.Keys())
				}
				if last := a.Prefix + ch.i0 + ch.rows - 1; ch.k0+ch.keys-1 != last {
					t.Errorf("%s: chunk at %d ends at key %d, want %d", name, ch.i0, ch.k0+ch.keys-1, last)
				}
				lo := 0
				if a.Window > 0 {
					lo = max(0, a.Prefix+ch.i0-a.Window+1)
				}
				if ch.k0 != lo {
					t.Errorf("%s: chunk at %d starts at key %d, want %d", name, ch.i0, ch.k0, lo)
				}
				for i := ch.i0; i < ch.i0+ch.rows; i++ {
					seen[[2]int{ch.b, i}] = true
				}
			}
			if len(seen) != a.Batch*a.Seq {
				t.Errorf("%s: %d queries in chunks, want %d", name, len(seen), a.Batch*a.Seq)
			}
		}
	}
}

// TestAttnChunkPrefix: the chunk of queries keeps the scratch memory,
// which grows with the prefix, within its budget; without a prefix the
// choice is what it always was.
func TestAttnChunkPrefix(t *testing.T) {
	be := &Backend{}
	for _, c := range []struct {
		a    compute.Attention
		want int
	}{
		{compute.Attention{Seq: 1000, KVHeads: 8}, 1000},
		{compute.Attention{Seq: 4096, KVHeads: 8}, 512},
		{compute.Attention{Seq: 32768, KVHeads: 8}, 256},
		{compute.Attention{Seq: 1000, KVHeads: 8, Prefix: 30}, 1000},
		{compute.Attention{Seq: 1000, KVHeads: 8, Prefix: 20000}, 512},
		{compute.Attention{Seq: 300, KVHeads: 8, Prefix: 100000}, 75},
	} {
		got := be.attnChunk(c.a)
		if got != c.want {
			t.Errorf("%+v: chunk %d, want %d", c.a, got, c.want)
		}
		if c.a.Prefix > 0 && int64(c.a.KVHeads)*int64(got)*int64(c.a.Keys())*10 > attnScratchBudget {
			t.Errorf("%+v: chunk %d over the scratch budget", c.a, got)
		}
	}
}
