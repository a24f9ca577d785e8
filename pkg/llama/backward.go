package llama

import "github.com/lorakit/lorakit/pkg/compute"

// backward propagates ws.dhf (the gradient at the final norm's output) down
// to the lowest layer with something to train, adding the gradients of
// adapters and trainable biases. Gradients with respect to activations are
// computed only where something below needs them.
func (m *Model) backward(seed uint64) {
	ws, c, be := m.ws, m.cfg, m.be
	N, D, hd := ws.n, c.Hidden, c.HeadDim
	eps := m.pl.eps
	be.Zero(ws.dh)
	be.RMSNormBackward(ws.dh, ws.dhf, ws.hFinal, m.finalNorm, ws.rstdF, N, D)
	lowest, input := m.lowestTrained()
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
		below := l > lowest || input
		prefix := m.prefixTokens() > 0
		needAtt := below || prefix || L.trains(pQ, pK, pV) // gradient at the attention output
		needMid := needAtt || L.trains(pO)                 // gradient at hMid beyond the residual
		needAct := needMid || L.trains(pGate, pUp)         // gradient at the gated activation
		orNil := func(ok bool, b compute.Buffer) compute.Buffer {
			if ok {
				return b
			}
			return nil
		}
		// MLP block: out = hMid + PostFF?(down(act(gate(x2))⊙up(x2))), x2 = norm(hMid).
		if needAct || L.trains(pDown) {
			dyDown := m.postNormBackward(ws.dh, a.dPre, L.ffOutNorm, a.rstdD)
			m.groupBackward(L, gDown, a.act, a, map[proj]compute.Buffer{pDown: dyDown}, orNil(needAct, ws.dact), seed)
		}
		if needAct {
			be.GLUBackward(m.pl.act, ws.dgate, ws.dup, ws.dact, a.gate, a.up)
			if L.trains(pGate, pUp) && !ws.ckpt {
				be.RMSNorm(a.x2, nil, a.hMid, L.ffInNorm, N, D, eps) // x2 is not kept
			}
			m.groupBackward(L, gGateUp, a.x2, a, map[proj]compute.Buffer{pGate: ws.dgate, pUp: ws.dup},
				orNil(needMid, ws.dx), seed)
		}
		if needMid {
			be.RMSNormBackward(ws.dh, ws.dx, a.hMid, L.ffInNorm, a.rstd2, N, D)
		}
		// Attention block: hMid = hIn + PostAttn?(o(attn(rope(QKNorm?(q(x1))), ...))).
		if !needMid {
			continue
		}
		dyO := m.postNormBackward(ws.dh, a.oPre, L.attnOutNorm, a.rstdO)
		m.groupBackward(L, gO, a.att, a, map[proj]compute.Buffer{pO: dyO}, orNil(needAtt, ws.datt), seed)
		if !needAtt {
			continue
		}
		if prefix {
			be.AttentionBackward(m.attnParams(l), ws.dq, ws.dkx, ws.dvx, ws.datt, a.q, a.kx, a.vx, a.att, a.lse)
			m.prefixBackward(l)
			if !below && !L.trains(pQ, pK, pV) {
				continue
			}
		} else {
			be.AttentionBackward(m.attnParams(l), ws.dq, ws.dk, ws.dv, ws.datt, a.q, a.k, a.v, a.att, a.lse)
		}
		m.rope(l, ws.dq, c.Heads, true)
		m.rope(l, ws.dk, c.KVHeads, true)
		dyQ, dyK := ws.dq, ws.dk
		if c.QKNorm {
			dyQ, dyK = ws.dqPre, ws.dkPre
			be.Zero(dyQ)
			be.Zero(dyK)
			be.RMSNormBackward(dyQ, ws.dq, a.qPre, L.qNorm, a.rstdQ, N*c.Heads, hd)
			be.RMSNormBackward(dyK, ws.dk, a.kPre, L.kNorm, a.rstdK, N*c.KVHeads, hd)
		}
		if L.trains(pQ, pK, pV) && !ws.ckpt {
			be.RMSNorm(a.x1, nil, a.hIn, L.inNorm, N, D, eps) // x1 is not kept
		}
		m.groupBackward(L, gQKV, a.x1, a, map[proj]compute.Buffer{pQ: dyQ, pK: dyK, pV: ws.dv}, orNil(below, ws.dx), seed)
		if below {
			be.RMSNormBackward(ws.dh, ws.dx, a.hIn, L.inNorm, a.rstd1, N, D)
		}
	}
	if input {
		m.promptBackward()
	}
}

// lowestTrained returns the lowest layer the backward pass reaches (−1:
// none) and whether it needs the gradient at that layer's input, as prompt
// tuning's virtual tokens do (they are the first layer's input).
func (m *Model) lowestTrained() (layer int, input bool) {
	if m.promptTokens() > 0 {
		return 0, true
	}
	if m.prefixTokens() > 0 {
		return 0, false
	}
	if len(m.adapters) == 0 {
		return -1, false
	}
	return m.adapters[0].Layer, false
}

// postNormBackward returns the gradient at the input of a sandwich norm
// (w: nil without one, then dy itself) from dy at its output.
func (m *Model) postNormBackward(dy, x, w, rstd compute.Buffer) compute.Buffer {
	if w == nil {
		return dy
	}
	d := m.ws.dpre
	m.be.Zero(d)
	m.be.RMSNormBackward(d, dy, x, w, rstd, m.ws.n, m.cfg.Hidden)
	return d
}

// groupBackward runs the backward pass of the modules of L that read x
// (group g) from the gradients at their projections' outputs; dx, when not
// nil, receives the sum of their input gradients.
func (m *Model) groupBackward(L *layer, g group, x compute.Buffer, a *acts, dy map[proj]compute.Buffer,
	dx compute.Buffer, seed uint64) {
	first := true
	for i := range L.mods {
		mod := &L.mods[i]
		if mod.parts[0].p.group() != g {
			continue
		}
		dys := make([]compute.Buffer, len(mod.parts))
		for j, pt := range mod.parts {
			dys[j] = dy[pt.p]
		}
		m.moduleBackward(mod, x, dys, dx, !first, &a.lora[i], seed)
		first = false
	}
}

// moduleBackward takes the gradients dys at the outputs of mod's parts
// (input x in the forward) and adds the gradients of its adapter and
// trainable bias; if dx is not nil it receives (accumulate: adds) the
// gradient with respect to x.
func (m *Model) moduleBackward(mod *module, x compute.Buffer, dys []compute.Buffer, dx compute.Buffer, accumulate bool,
	la *loraActs, seed uint64) {
	be, ws, N := m.be, m.ws, m.ws.n
	ad := mod.ad
	// beta returns the β of the next product into dx.
	beta := func() float32 {
		if accumulate {
			return 1
		}
		accumulate = true
		return 0
	}
	if ad != nil && ad.Bias { // y = …·Wᵀ + b: db = Σ_rows dy
		for j, pt := range mod.parts {
			be.Gemm(compute.Gemm{TransA: true, M: pt.rows, N: 1, K: N, Alpha: 1, Beta: 1}, m.cast(dys[j], slotA), ws.ones,
				m.rowsView(ad.gbias, pt, 1))
		}
	}
	if ad == nil || !ad.IA3 && !ad.lora() {
		if dx != nil {
			w := m.weight(mod)
			for j, pt := range mod.parts {
				be.Gemm(compute.Gemm{M: N, N: mod.in, K: pt.rows, Alpha: 1, Beta: beta()}, m.cast(dys[j], slotA),
					m.rowsView(w, pt, mod.in), dx)
			}
		}
		return
	}
	if ad.IA3 {
		m.ia3Backward(mod, x, dys, dx, beta, la)
		return
	}
	drop := ad.Dropout > 0
	xd, mask := x, compute.Buffer(nil)
	if drop {
		mask = m.view(ws.mask, N*mod.in)
		xd = m.view(ws.xdrop, N*mod.in)
		be.DropoutMask(mask, ad.Dropout, seed, ad.stream)
		be.Mul(xd, x, mask)
	}
	var w compute.Buffer
	if dx != nil || ad.DoRA && drop {
		w = m.weight(mod)
	}
	// u and du are activations (bf16 with PrecisionBF16): no cast.
	u, du := m.view(la.u, N*ad.Rank), m.view(ws.du, N*ad.Rank)
	bc := m.cast(ad.b, slotW)
	var dbase compute.Buffer
	if ad.DoRA {
		dbase = m.view(ws.dbase, N*mod.out)
	}
	for j, pt := range mod.parts {
		dy := dys[j]
		dyl, sl := dy, ad.Scale // gradient at B·A·x and its factor
		var db compute.Buffer
		if ad.DoRA {
			db, dyl = m.partView(dbase, pt), m.partView(m.view(ws.dlora, N*mod.out), pt)
			be.DoRABackward(db, dyl, m.rowsView(ad.gm, pt, 1), dy, m.partView(la.comb, pt), m.rowsView(ad.mag, pt, 1),
				m.rowsView(ad.norm, pt, 1), N, pt.rows, ad.Scale)
			sl = 1
			if !drop {
				be.Axpy(db, dy, 1) // the base term sees g·dy in total
			}
		}
		// dyl is dy itself, or (DoRA) an activation-typed buffer that needs
		// no cast: only one f32 gradient ever occupies slotA here.
		dylc := m.cast(dyl, slotA)
		// dB += sl·dylᵀ·u; du (+)= sl·dyl·B.
		be.Gemm(compute.Gemm{TransA: true, M: pt.rows, N: ad.Rank, K: N, Alpha: sl, Beta: 1}, dylc, u,
			m.rowsView(ad.gb, pt, ad.Rank))
		var b float32
		if j > 0 {
			b = 1
		}
		be.Gemm(compute.Gemm{M: N, N: ad.Rank, K: pt.rows, Alpha: sl, Beta: b}, dylc, m.rowsView(bc, pt, ad.Rank), du)
		if dx == nil {
			continue
		}
		// The input gradient through W: dy (or DoRA's g·dy); with DoRA and
		// dropout the base term's share goes through the mask below.
		src := dylc
		switch {
		case ad.DoRA && !drop:
			src = db
		case dyl != dy:
			src = m.cast(dy, slotA)
		}
		be.Gemm(compute.Gemm{M: N, N: mod.in, K: pt.rows, Alpha: 1, Beta: beta()}, src, m.rowsView(w, pt, mod.in), dx)
	}
	// dA += duᵀ·dropout(x).
	duc := du
	be.Gemm(compute.Gemm{TransA: true, M: ad.Rank, N: mod.in, K: N, Alpha: 1, Beta: 1}, duc, xd, ad.ga)
	if dx == nil {
		return
	}
	if !drop {
		be.Gemm(compute.Gemm{M: N, N: mod.in, K: ad.Rank, Alpha: 1, Beta: 1}, duc, m.cast(ad.a, slotW), dx)
		return
	}
	t := m.view(ws.tIn, N*mod.in)
	be.Gemm(compute.Gemm{M: N, N: mod.in, K: ad.Rank, Alpha: 1}, duc, m.cast(ad.a, slotW), t)
	if ad.DoRA {
		for _, pt := range mod.parts {
			be.Gemm(compute.Gemm{M: N, N: mod.in, K: pt.rows, Alpha: 1, Beta: 1}, m.cast(m.partView(dbase, pt), slotA),
				m.rowsView(w, pt, mod.in), t)
		}
	}
	be.AddMul(dx, t, mask)
}

// ia3Backward is moduleBackward for an (IA)³ adapter.
func (m *Model) ia3Backward(mod *module, x compute.Buffer, dys []compute.Buffer, dx compute.Buffer, beta func() float32,
	la *loraActs) {
	be, N, ad := m.be, m.ws.n, mod.ad
	if ad.FeedForward { // y = (x⊙l)·Wᵀ: dl = Σ (dy·W)⊙x, dx = (dy·W)⊙l
		w := m.weight(mod)
		dxs := m.view(m.ws.ia3, N*mod.in)
		for j, pt := range mod.parts {
			var b float32
			if j > 0 {
				b = 1
			}
			be.Gemm(compute.Gemm{M: N, N: mod.in, K: pt.rows, Alpha: 1, Beta: b}, m.cast(dys[j], slotA),
				m.rowsView(w, pt, mod.in), dxs)
		}
		be.ColDot(ad.gl, dxs, x, N, mod.in)
		if dx != nil {
			be.ScaleCols(dx, dxs, ad.l, N, mod.in, beta() == 1)
		}
		return
	}
	// y = (x·Wᵀ + b)⊙l: dl = Σ dy⊙(x·Wᵀ + b), dx = (dy⊙l)·W
	var w compute.Buffer
	if dx != nil {
		w = m.weight(mod)
	}
	for j, pt := range mod.parts {
		n := pt.rows
		be.ColDot(m.rowsView(ad.gl, pt, 1), dys[j], m.partView(la.comb, pt), N, n)
		if dx != nil {
			s := m.view(m.ws.ia3, N*n)
			be.ScaleCols(s, dys[j], m.rowsView(ad.l, pt, 1), N, n, false)
			be.Gemm(compute.Gemm{M: N, N: mod.in, K: n, Alpha: 1, Beta: beta()}, m.cast(s, slotA),
				m.rowsView(w, pt, mod.in), dx)
		}
	}
}
