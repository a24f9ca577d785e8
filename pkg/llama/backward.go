package llama

import "github.com/lorakit/lorakit/pkg/compute"

// backward propagates ws.dhf (the gradient at the final norm's output) down
// to the lowest adapted layer, adding adapter gradients. Gradients with
// respect to activations are computed only where something below needs them.
func (m *Model) backward(seed uint64) {
	ws, c, be := m.ws, &m.cfg, m.be
	N, D := ws.n, c.Hidden
	eps := float32(c.RMSEps)
	be.Zero(ws.dh)
	be.RMSNormBackward(ws.dh, ws.dhf, ws.hFinal, m.finalNorm, ws.rstdF, N, D)
	lowest := m.adapters[0].Layer
	rope := func(x compute.Buffer, heads int) {
		be.Rope(compute.Rope{Tokens: N, Heads: heads, HeadDim: m.hd, Inverse: true}, x, ws.pos, ws.cos, ws.sin)
	}
	for l := c.Layers - 1; l >= lowest; l-- {
		L := &m.layers[l]
		var a *acts
		if ws.ckpt {
			a = &ws.layers[0]
			a.hIn = ws.hIns[l]
			m.layerForward(l, a, ws.hScratch, true, seed)
		} else {
			a = &ws.layers[l]
		}
		has := func(ts ...Target) bool {
			for _, t := range ts {
				if L.proj[t].ad != nil {
					return true
				}
			}
			return false
		}
		below := l > lowest
		needAtt := below || has(Q, K, V)    // gradient at the attention output
		needMid := needAtt || has(O)        // gradient at hMid beyond the residual
		needAct := needMid || has(Gate, Up) // gradient at the SwiGLU output
		orNil := func(ok bool, b compute.Buffer) compute.Buffer {
			if ok {
				return b
			}
			return nil
		}
		// MLP block: out = hMid + down(swiglu(gate(x2), up(x2))), x2 = norm(hMid).
		m.linearBackward(&L.proj[Down], a.act, ws.dh, orNil(needAct, ws.dact), false, &a.lora[Down], seed)
		if needAct {
			be.GLUBackward(compute.SiLU, ws.dgate, ws.dup, ws.dact, a.gate, a.up)
			if has(Gate, Up) && !ws.ckpt {
				be.RMSNorm(a.x2, nil, a.hMid, L.mlpNorm, N, D, eps) // x2 is not kept
			}
			m.linearBackward(&L.proj[Gate], a.x2, ws.dgate, orNil(needMid, ws.dx), false, &a.lora[Gate], seed)
			m.linearBackward(&L.proj[Up], a.x2, ws.dup, orNil(needMid, ws.dx), true, &a.lora[Up], seed)
		}
		if needMid {
			be.RMSNormBackward(ws.dh, ws.dx, a.hMid, L.mlpNorm, a.rstd2, N, D)
		}
		// Attention block: hMid = hIn + o(attn(rope(q(x1)), rope(k(x1)), v(x1))).
		m.linearBackward(&L.proj[O], a.att, ws.dh, orNil(needAtt, ws.datt), false, &a.lora[O], seed)
		if !needAtt {
			continue
		}
		be.AttentionBackward(m.attnParams(), ws.dq, ws.dk, ws.dv, ws.datt, a.q, a.k, a.v, a.att, a.lse)
		rope(ws.dq, c.Heads)
		rope(ws.dk, c.KVHeads)
		if has(Q, K, V) && !ws.ckpt {
			be.RMSNorm(a.x1, nil, a.hIn, L.attnNorm, N, D, eps) // x1 is not kept
		}
		m.linearBackward(&L.proj[Q], a.x1, ws.dq, orNil(below, ws.dx), false, &a.lora[Q], seed)
		m.linearBackward(&L.proj[K], a.x1, ws.dk, orNil(below, ws.dx), true, &a.lora[K], seed)
		m.linearBackward(&L.proj[V], a.x1, ws.dv, orNil(below, ws.dx), true, &a.lora[V], seed)
		if below {
			be.RMSNormBackward(ws.dh, ws.dx, a.hIn, L.attnNorm, a.rstd1, N, D)
		}
	}
}

// linearBackward takes dy at the output of lin (input x in the forward) and
// adds the adapter's gradients; if dx is not nil it receives (accumulate:
// adds) the gradient with respect to x.
func (m *Model) linearBackward(lin *linear, x, dy, dx compute.Buffer, accumulate bool, la *loraActs, seed uint64) {
	be, ws, N := m.be, m.ws, m.ws.n
	var beta float32
	if accumulate {
		beta = 1
	}
	ad := lin.ad
	if ad == nil {
		if dx != nil {
			be.Gemm(compute.Gemm{M: N, N: lin.in, K: lin.out, Alpha: 1, Beta: beta}, m.cast(dy, slotA), m.weight(lin), dx)
		}
		return
	}
	if ad.IA3 {
		m.ia3Backward(lin, x, dy, dx, beta, accumulate, la)
		return
	}
	drop := ad.Dropout > 0
	xd, mask := x, compute.Buffer(nil)
	if drop {
		mask = m.view(ws.mask, N*lin.in)
		xd = m.view(ws.xdrop, N*lin.in)
		be.DropoutMask(mask, ad.Dropout, seed, ad.stream)
		be.Mul(xd, x, mask)
	}
	dyl, sl := dy, ad.Scale // gradient at B·A·x and its factor
	var dbase, w compute.Buffer
	if ad.DoRA {
		dbase, dyl = m.view(ws.dbase, N*lin.out), m.view(ws.dlora, N*lin.out)
		be.DoRABackward(dbase, dyl, ad.gm, dy, m.view(la.comb, N*lin.out), ad.mag, ad.norm, N, lin.out, ad.Scale)
		sl = 1
		if !drop {
			be.Axpy(dbase, dy, 1) // the base term sees g·dy in total
		}
	}
	if dx != nil || ad.DoRA && drop {
		w = m.weight(lin)
	}
	// dyl is dy itself, or (DoRA) an activation-typed buffer that needs no
	// cast: only one f32 gradient ever occupies slotA here.
	dylc := m.cast(dyl, slotA)
	if dx != nil {
		src := dylc
		if ad.DoRA && !drop {
			src = dbase
		} else if dyl != dy {
			src = m.cast(dy, slotA)
		}
		be.Gemm(compute.Gemm{M: N, N: lin.in, K: lin.out, Alpha: 1, Beta: beta}, src, w, dx)
	}
	// u and du are activations (bf16 with PrecisionBF16): no cast.
	u, du := m.view(la.u, N*ad.Rank), m.view(ws.du, N*ad.Rank)
	// dB += sl·dylᵀ·u; du = sl·dyl·B; dA += duᵀ·dropout(x).
	be.Gemm(compute.Gemm{TransA: true, M: lin.out, N: ad.Rank, K: N, Alpha: sl, Beta: 1}, dylc, u, ad.gb)
	be.Gemm(compute.Gemm{M: N, N: ad.Rank, K: lin.out, Alpha: sl}, dylc, m.cast(ad.b, slotW), du)
	duc := du
	be.Gemm(compute.Gemm{TransA: true, M: ad.Rank, N: lin.in, K: N, Alpha: 1, Beta: 1}, duc, xd, ad.ga)
	if dx == nil {
		return
	}
	if !drop {
		be.Gemm(compute.Gemm{M: N, N: lin.in, K: ad.Rank, Alpha: 1, Beta: 1}, duc, m.cast(ad.a, slotW), dx)
		return
	}
	t := m.view(ws.tIn, N*lin.in)
	be.Gemm(compute.Gemm{M: N, N: lin.in, K: ad.Rank, Alpha: 1}, duc, m.cast(ad.a, slotW), t)
	if ad.DoRA {
		be.Gemm(compute.Gemm{M: N, N: lin.in, K: lin.out, Alpha: 1, Beta: 1}, m.cast(dbase, slotA), w, t)
	}
	be.AddMul(dx, t, mask)
}

// ia3Backward is linearBackward for an (IA)³ adapter.
func (m *Model) ia3Backward(lin *linear, x, dy, dx compute.Buffer, beta float32, accumulate bool, la *loraActs) {
	be, N, ad := m.be, m.ws.n, lin.ad
	if ad.FeedForward { // y = (x⊙l)·Wᵀ: dl = Σ (dy·W)⊙x, dx = (dy·W)⊙l
		dxs := m.view(m.ws.ia3, N*lin.in)
		be.Gemm(compute.Gemm{M: N, N: lin.in, K: lin.out, Alpha: 1}, m.cast(dy, slotA), m.weight(lin), dxs)
		be.ColDot(ad.gl, dxs, x, N, lin.in)
		if dx != nil {
			be.ScaleCols(dx, dxs, ad.l, N, lin.in, accumulate)
		}
		return
	}
	// y = (x·Wᵀ)⊙l: dl = Σ dy⊙(x·Wᵀ), dx = (dy⊙l)·W
	be.ColDot(ad.gl, dy, m.view(la.comb, N*lin.out), N, lin.out)
	if dx != nil {
		dys := m.view(m.ws.ia3, N*lin.out)
		be.ScaleCols(dys, dy, ad.l, N, lin.out, false)
		be.Gemm(compute.Gemm{M: N, N: lin.in, K: lin.out, Alpha: 1, Beta: beta}, m.cast(dys, slotA), m.weight(lin), dx)
	}
}
