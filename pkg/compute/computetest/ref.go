package computetest

import (
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Float64 reference implementations of the forward operations. Backward
// operations are checked against central finite differences of these.

func refGemm(p compute.Gemm, a, b, c []float64) []float64 {
	out := make([]float64, p.M*p.N)
	for i := range p.M {
		for j := range p.N {
			var s float64
			for k := range p.K {
				var av, bv float64
				if p.TransA {
					av = a[k*p.M+i]
				} else {
					av = a[i*p.K+k]
				}
				if p.TransB {
					bv = b[j*p.K+k]
				} else {
					bv = b[k*p.N+j]
				}
				s += av * bv
			}
			v := float64(p.Alpha) * s
			if p.Beta != 0 {
				v += float64(p.Beta) * c[i*p.N+j]
			}
			out[i*p.N+j] = v
		}
	}
	return out
}

func refRMSNorm(x, w []float64, rows, dim int, eps float64) (y, rstd []float64) {
	y = make([]float64, rows*dim)
	rstd = make([]float64, rows)
	for r := range rows {
		var ss float64
		for _, v := range x[r*dim : (r+1)*dim] {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(dim)+eps)
		rstd[r] = s
		for i := range dim {
			y[r*dim+i] = w[i] * x[r*dim+i] * s
		}
	}
	return y, rstd
}

func refRope(p compute.Rope, x []float64, pos []int32, cos, sin []float64) []float64 {
	y := append([]float64(nil), x...)
	half := p.Dims() / 2
	for t := range p.Tokens {
		for h := range p.Heads {
			o := (t*p.Heads + h) * p.HeadDim
			for i := range half {
				c, s := cos[int(pos[t])*half+i], sin[int(pos[t])*half+i]
				if p.Inverse {
					s = -s
				}
				a, b := x[o+i], x[o+i+half]
				y[o+i] = a*c - b*s
				y[o+i+half] = b*c + a*s
			}
		}
	}
	return y
}

func refAttention(p compute.Attention, q, k, v []float64) (out, lse []float64) {
	return refAttentionSeg(p, q, k, v, nil)
}

// refVisible reports whether query i of sequence b sees the key at
// position j ≤ Prefix+i of its sequence, given document ids seg (nil:
// none): the same document, and within the window.
func refVisible(p compute.Attention, seg []int32, b, i, j int) bool {
	return (seg == nil || seg[b*p.Seq+i] == seg[b*p.Seq+j]) && (p.Window <= 0 || j > p.Prefix+i-p.Window)
}

// refAttentionSeg is refAttention with document ids seg (nil: none): query
// i sees key j ≤ i of its sequence when seg[j] = seg[i]. With a prefix,
// query i is at key position Prefix+i and k, v hold Prefix+Seq rows per
// sequence.
func refAttentionSeg(p compute.Attention, q, k, v []float64, seg []int32) (out, lse []float64) {
	B, T, H, G, D, P, N := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim, p.Prefix, p.Keys()
	visible := func(b, i, j int) bool { return refVisible(p, seg, b, i, j) }
	out = make([]float64, B*T*H*D)
	lse = make([]float64, B*H*T)
	s := make([]float64, N)
	for b := range B {
		for h := range H {
			g := h / (H / G)
			for i := range T {
				m := math.Inf(-1)
				for j := 0; j <= P+i; j++ {
					if !visible(b, i, j) {
						continue
					}
					var d float64
					for e := range D {
						d += q[((b*T+i)*H+h)*D+e] * k[((b*N+j)*G+g)*D+e]
					}
					s[j] = d * float64(p.Scale)
					if c := float64(p.SoftCap); c > 0 {
						s[j] = c * math.Tanh(s[j]/c)
					}
					m = max(m, s[j])
				}
				var sum float64
				for j := 0; j <= P+i; j++ {
					if visible(b, i, j) {
						sum += math.Exp(s[j] - m)
					}
				}
				for j := 0; j <= P+i; j++ {
					if !visible(b, i, j) {
						continue
					}
					pj := math.Exp(s[j]-m) / sum
					for e := range D {
						out[((b*T+i)*H+h)*D+e] += pj * v[((b*N+j)*G+g)*D+e]
					}
				}
				lse[(b*H+h)*T+i] = m + math.Log(sum)
			}
		}
	}
	return out, lse
}

func refSiLU(x float64) float64 { return x / (1 + math.Exp(-x)) }

func refGELUTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

func refGELU(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

func refGLU(act compute.Activation, g, u []float64) []float64 {
	f := map[compute.Activation]func(float64) float64{compute.SiLU: refSiLU, compute.GELUTanh: refGELUTanh,
		compute.GELU: refGELU}[act]
	o := make([]float64, len(g))
	for i := range g {
		o[i] = f(g[i]) * u[i]
	}
	return o
}

// refSoftCap returns c·tanh(x/c) elementwise, or x when c is 0.
func refSoftCap(x []float64, c float64) []float64 {
	if c == 0 {
		return x
	}
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = c * math.Tanh(v/c)
	}
	return y
}

func refCrossEntropy(logits []float64, targets []int32, rows, vocab int) []float64 {
	loss := make([]float64, rows)
	for r := range rows {
		t := targets[r]
		if t < 0 {
			continue
		}
		x := logits[r*vocab : (r+1)*vocab]
		m := math.Inf(-1)
		for _, v := range x {
			m = max(m, v)
		}
		var s float64
		for _, v := range x {
			s += math.Exp(v - m)
		}
		loss[r] = m + math.Log(s) - x[t]
	}
	return loss
}

func refDoRANorm(w, a, b []float64, out, in, rank int, scale float64) []float64 {
	n := make([]float64, out)
	for o := range out {
		var ss float64
		for i := range in {
			var ba float64
			for k := range rank {
				ba += b[o*rank+k] * a[k*in+i]
			}
			v := w[o*in+i] + scale*ba
			ss += v * v
		}
		n[o] = math.Sqrt(ss)
	}
	return n
}

// refDoRAForward returns y + (g−1)⊙base + g⊙lora·scale and base + scale·lora.
func refDoRAForward(y, base, lora, mag, norm []float64, rows, cols int, scale float64) (out, comb []float64) {
	out = make([]float64, rows*cols)
	comb = make([]float64, rows*cols)
	for r := range rows {
		for c := range cols {
			i := r*cols + c
			g := mag[c] / norm[c]
			out[i] = y[i] + (g-1)*base[i] + g*lora[i]*scale
			comb[i] = base[i] + scale*lora[i]
		}
	}
	return out, comb
}

// refAdamW runs one torch AdamW update in float64.
func refAdamW(h compute.AdamW, p, g, m, v []float64) {
	t := float64(h.Step)
	for i := range p {
		p[i] *= 1 - h.LR*h.WeightDecay
		m[i] = h.Beta1*m[i] + (1-h.Beta1)*g[i]
		v[i] = h.Beta2*v[i] + (1-h.Beta2)*g[i]*g[i]
		denom := math.Sqrt(v[i])/math.Sqrt(1-math.Pow(h.Beta2, t)) + h.Eps
		p[i] -= h.LR / (1 - math.Pow(h.Beta1, t)) * m[i] / denom
	}
}

// refAttentionGrad returns the gradients of dot(dout, out) with respect to
// q, k and v for refAttentionSeg (analytic, in float64; the cases check it
// against finite differences on small shapes).
func refAttentionGrad(p compute.Attention, q, k, v, dout []float64, seg []int32) (dq, dk, dv []float64) {
	B, T, H, G, D, P, N := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim, p.Prefix, p.Keys()
	out, lse := refAttentionSeg(p, q, k, v, seg)
	dq, dk, dv = make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
	c := float64(p.SoftCap)
	for b := range B {
		for h := range H {
			g := h / (H / G)
			for i := range T {
				qo := ((b*T+i)*H + h) * D
				delta := dot64(dout[qo:qo+D], out[qo:qo+D])
				for j := 0; j <= P+i; j++ {
					if !refVisible(p, seg, b, i, j) {
						continue
					}
					ko := ((b*N+j)*G + g) * D
					s := dot64(q[qo:qo+D], k[ko:ko+D]) * float64(p.Scale)
					dcap := 1.0
					if c > 0 {
						t := math.Tanh(s / c)
						s, dcap = c*t, 1-t*t
					}
					pij := math.Exp(s - lse[(b*H+h)*T+i])
					dp := dot64(dout[qo:qo+D], v[ko:ko+D])
					ds := pij * (dp - delta) * dcap * float64(p.Scale)
					for e := range D {
						dv[ko+e] += pij * dout[qo+e]
						dq[qo+e] += ds * k[ko+e]
						dk[ko+e] += ds * q[qo+e]
					}
				}
			}
		}
	}
	return dq, dk, dv
}
