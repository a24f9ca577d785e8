package cpu

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/internal/kernels/vec"
	"github.com/lorakit/lorakit/pkg/compute"
)

// attnQueryBlock is the number of queries of one forward task.
const attnQueryBlock = 32

func checkAttention(p compute.Attention) {
	if p.Batch < 0 || p.Seq < 0 || p.Heads <= 0 || p.KVHeads <= 0 || p.HeadDim <= 0 || p.Heads%p.KVHeads != 0 ||
		p.Window < 0 || !(p.SoftCap >= 0) || p.Prefix < 0 {
		panic(fmt.Sprintf("cpu: invalid attention shape %+v", p))
	}
	if p.Prefix > 0 && p.Segments != nil {
		panic("cpu: attention with both a prefix and segments")
	}
}

// keyStart returns the first key position query i of sequence b sees: its
// document's start, and with a window Prefix+i−Window+1. Query i is at key
// position Prefix+i, the last it sees.
func keyStart(p compute.Attention, starts []int32, b, i int) int {
	lo := 0
	if starts != nil {
		lo = int(starts[b*p.Seq+i])
	}
	if p.Window > 0 {
		lo = max(lo, p.Prefix+i-p.Window+1)
	}
	return lo
}

// softCap returns cap·tanh(x/cap) (Attention.SoftCap).
func softCap(x, c float32) float32 {
	return float32(float64(c) * math.Tanh(float64(x)/float64(c)))
}

// segStarts returns, for every token of a packed batch, the index within
// its sequence of the first token of its document (nil without Segments).
func segStarts(p compute.Attention) []int32 {
	if p.Segments == nil {
		return nil
	}
	seg := i32(p.Segments)
	need("attention segments", len(seg), p.Batch*p.Seq)
	st := make([]int32, len(seg))
	for b := range p.Batch {
		for t := range p.Seq {
			i := b*p.Seq + t
			switch {
			case t == 0 || seg[i] != seg[i-1]:
				if t > 0 && seg[i] < seg[i-1] {
					panic(fmt.Sprintf("cpu: attention segment ids decrease at sequence %d, token %d", b, t))
				}
				st[i] = int32(t)
			default:
				st[i] = st[i-1]
			}
		}
	}
	return st
}

// Attention implements compute.Backend.
func (be *Backend) Attention(p compute.Attention, out, lse, q, k, v compute.Buffer) {
	checkAttention(p)
	if w := be.mixed(out, lse, q, k, v); w != nil {
		be.Attention(p, w.out(out), w.out(lse), w.in(q), w.in(k), w.in(v))
		w.done()
		return
	}
	ov, lv, qv, kv, vv := f32(out), f32(lse), f32(q), f32(k), f32(v)
	B, T, H, G, D := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim
	P, N := p.Prefix, p.Keys()
	need("attention q", len(qv), B*T*H*D)
	need("attention out", len(ov), B*T*H*D)
	need("attention k", len(kv), B*N*G*D)
	need("attention v", len(vv), B*N*G*D)
	need("attention lse", len(lv), B*H*T)
	blocks := ceilDiv(T, attnQueryBlock)
	group := H / G
	starts := segStarts(p)
	scores := make([][]float32, be.threads)
	be.tasks(B*H*blocks, func(w, task int) {
		if scores[w] == nil {
			scores[w] = make([]float32, N)
		}
		s := scores[w]
		b, h, blk := task/(H*blocks), (task/blocks)%H, task%blocks
		g := h / group
		for i := blk * attnQueryBlock; i < min(T, (blk+1)*attnQueryBlock); i++ {
			// Keys lo..P+i are visible; scores are kept from s[0] so that a
			// document computes the same as when it starts its sequence.
			lo := keyStart(p, starts, b, i)
			qi := qv[((b*T+i)*H+h)*D : ((b*T+i)*H+h+1)*D]
			kvOff := ((b*N+lo)*G + g) * D // key/value row lo; rows G·D apart
			sj := s[:P+i+1-lo]
			vec.DotN(qi, kv[kvOff:], G*D, sj)
			m := float32(math.Inf(-1))
			for j, x := range sj {
				x *= p.Scale
				if p.SoftCap > 0 {
					x = softCap(x, p.SoftCap)
				}
				sj[j] = x
				m = max(m, x)
			}
			for j := range sj {
				sj[j] -= m
			}
			vec.Exps(sj)
			var sum float64
			for _, e := range sj {
				sum += float64(e)
			}
			inv := 1 / sum
			for j, e := range sj {
				sj[j] = float32(float64(e) * inv)
			}
			oi := ov[((b*T+i)*H+h)*D : ((b*T+i)*H+h+1)*D]
			clear(oi)
			vec.AxpyAcc(oi, vv[kvOff:], G*D, sj)
			lv[(b*H+h)*T+i] = float32(float64(m) + math.Log(sum))
		}
	})
}

// AttentionBackward implements compute.Backend. One task handles one
// (sequence, key/value head) pair and all its query heads, so the sums into dk
// and dv run in a fixed order.
func (be *Backend) AttentionBackward(p compute.Attention, dq, dk, dv, dout, q, k, v, out, lse compute.Buffer) {
	checkAttention(p)
	if w := be.mixed(dq, dk, dv, dout, q, k, v, out, lse); w != nil {
		be.AttentionBackward(p, w.out(dq), w.out(dk), w.out(dv), w.in(dout), w.in(q), w.in(k), w.in(v), w.in(out), w.in(lse))
		w.done()
		return
	}
	dqv, dkv, dvv, dov := f32(dq), f32(dk), f32(dv), f32(dout)
	qv, kv, vv, ov, lv := f32(q), f32(k), f32(v), f32(out), f32(lse)
	B, T, H, G, D := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim
	P, N := p.Prefix, p.Keys()
	for _, s := range []struct {
		name string
		v    []float32
		n    int
	}{
		{"attention dq", dqv, B * T * H * D}, {"attention dout", dov, B * T * H * D},
		{"attention q", qv, B * T * H * D}, {"attention out", ov, B * T * H * D},
		{"attention dk", dkv, B * N * G * D}, {"attention dv", dvv, B * N * G * D},
		{"attention k", kv, B * N * G * D}, {"attention v", vv, B * N * G * D},
		{"attention lse", lv, B * H * T},
	} {
		need(s.name, len(s.v), s.n)
	}
	group := H / G
	starts := segStarts(p)
	scratch := make([][]float32, be.threads)
	be.tasks(B*G, func(w, task int) {
		if scratch[w] == nil {
			scratch[w] = make([]float32, 3*N) // scores, dp, and ∂capped/∂score with SoftCap
		}
		ds, dps, dcs := scratch[w][:N], scratch[w][N:2*N], scratch[w][2*N:]
		b, g := task/G, task%G
		for j := range N {
			off := ((b*N+j)*G + g) * D
			clear(dkv[off : off+D])
			clear(dvv[off : off+D])
		}
		for h := g * group; h < (g+1)*group; h++ {
			for i := range T {
				qo := ((b*T+i)*H + h) * D
				qi, doi, oi := qv[qo:qo+D], dov[qo:qo+D], ov[qo:qo+D]
				dqi := dqv[qo : qo+D]
				l := lv[(b*H+h)*T+i]
				di := vec.Dot(doi, oi)
				lo := keyStart(p, starts, b, i)
				kvOff := ((b*N+lo)*G + g) * D // key/value row lo; rows G·D apart
				d, dp, dc := ds[:P+i+1-lo], dps[:P+i+1-lo], dcs[:P+i+1-lo]
				vec.DotN(qi, kv[kvOff:], G*D, d)
				for j := range d {
					x := d[j] * p.Scale
					if p.SoftCap > 0 {
						x = softCap(x, p.SoftCap)
						t := x / p.SoftCap
						dc[j] = 1 - t*t
					}
					d[j] = x - l
				}
				vec.Exps(d) // the probabilities p_ij
				vec.DotN(doi, vv[kvOff:], G*D, dp)
				vec.AxpyN(dvv[kvOff:], G*D, doi, d)
				for j := range d {
					if p.SoftCap > 0 {
						d[j] = d[j] * (dp[j] - di) * dc[j] * p.Scale
						continue
					}
					d[j] = d[j] * (dp[j] - di) * p.Scale
				}
				clear(dqi)
				vec.AxpyAcc(dqi, kv[kvOff:], G*D, d)
				vec.AxpyN(dkv[kvOff:], G*D, qi, d)
			}
		}
	})
}
