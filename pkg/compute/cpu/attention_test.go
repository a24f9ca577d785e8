package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/computetest"
)

// TestAttentionPrefixEquivalenceExact: on this backend, attention with a
// prefix computes exactly what attention without one computes for the last
// queries of the sequence that starts with the prefix (the conformance
// case, with no tolerance at all): the same keys in the same order.
func TestAttentionPrefixEquivalenceExact(t *testing.T) {
	n := 0
	for _, c := range computetest.Cases {
		if c.Name != "attention_prefix_equivalence" && c.Name != "attention_prefix_equivalence_bf16" {
			continue
		}
		n++
		c.Tol = 0
		for _, threads := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/threads=%d", c.Name, threads), func(t *testing.T) {
				computetest.RunCase(t, New(threads), c)
			})
		}
	}
	if n != 2 {
		t.Fatalf("%d equivalence cases, want 2", n)
	}
}

// TestAttentionPrefixInvalid: a negative prefix, or a prefix with packed
// documents, is a programming error.
func TestAttentionPrefixInvalid(t *testing.T) {
	be := New(1)
	buf := func(n int) compute.Buffer { return NewBuffer(make([]float32, n)) }
	seg, _ := be.Alloc(compute.I32, 4)
	for _, p := range []compute.Attention{
		{Batch: 1, Seq: 4, Heads: 1, KVHeads: 1, HeadDim: 2, Prefix: -1},
		{Batch: 1, Seq: 4, Heads: 1, KVHeads: 1, HeadDim: 2, Prefix: 2, Segments: seg},
	} {
		for name, op := range map[string]func(){
			"forward": func() { be.Attention(p, buf(8), buf(4), buf(8), buf(12), buf(12)) },
			"backward": func() {
				be.AttentionBackward(p, buf(8), buf(12), buf(12), buf(8), buf(8), buf(12), buf(12), buf(8), buf(4))
			},
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s %+v: no panic", name, p)
					}
				}()
				op()
			}()
		}
	}
}

// BenchmarkAttention times the f32 forward and backward passes on one
// thread for a small Llama-like layer (8 heads over 2 key/value heads of
// 64) at 512 tokens, without and with a prefix of 32 keys (prefix tuning's
// usual size), whose cost should be that of 32 more keys per query.
func BenchmarkAttention(b *testing.B) {
	for _, prefix := range []int{0, 32} {
		p := compute.Attention{Batch: 1, Seq: 512, Heads: 8, KVHeads: 2, HeadDim: 64, Scale: 0.125, Prefix: prefix}
		r := rand.New(rand.NewPCG(1, 2))
		nq, nk := p.Batch*p.Seq*p.Heads*p.HeadDim, p.Batch*p.Keys()*p.KVHeads*p.HeadDim
		buf := func(n int) compute.Buffer { return NewBuffer(randSlice(r, n)) }
		q, k, v, out, lse := buf(nq), buf(nk), buf(nk), buf(nq), buf(p.Batch*p.Heads*p.Seq)
		be := New(1)
		b.Run(fmt.Sprintf("prefix=%d/forward", prefix), func(b *testing.B) {
			for b.Loop() {
				be.Attention(p, out, lse, q, k, v)
			}
		})
		dq, dk, dv, dout := buf(nq), buf(nk), buf(nk), buf(nq)
		be.Attention(p, out, lse, q, k, v)
		b.Run(fmt.Sprintf("prefix=%d/backward", prefix), func(b *testing.B) {
			for b.Loop() {
				be.AttentionBackward(p, dq, dk, dv, dout, q, k, v, out, lse)
			}
		})
	}
}
