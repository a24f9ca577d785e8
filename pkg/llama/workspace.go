package llama

import (
	"github.com/lorakit/lorakit/pkg/compute"
)

// loraActs are the saved intermediates of one adapter in one layer.
type loraActs struct {
	u    compute.Buffer // [N, rank]: dropout(x)·Aᵀ
	comb compute.Buffer // training: DoRA base + s·lora, (IA)³ x·Wᵀ + b [N, out], part after part
}

// acts are the activations of one layer that the backward pass reads.
type acts struct {
	hIn           compute.Buffer // layer input [N, D] (not owned by acts in shared mode)
	x1, rstd1     compute.Buffer // input_layernorm output [N, D] and factors [N]
	qPre, kPre    compute.Buffer // QKNorm: q and k before their norms
	rstdQ, rstdK  compute.Buffer // QKNorm: their factors [N·heads], [N·kv heads]
	q, k, v       compute.Buffer // after the q/k norms and RoPE
	kx, vx        compute.Buffer // prefix tuning: [Batch·(P+Seq), kv] keys and values with each sequence's prefix first
	att, lse      compute.Buffer // attention output [N, H·hd] and log-sum-exp
	oPre, rstdO   compute.Buffer // sandwich norms: o_proj's output before its norm, factors
	hMid          compute.Buffer // residual after attention [N, D]
	x2, rstd2     compute.Buffer // the pre-feed-forward norm's output and factors
	gate, up, act compute.Buffer // [N, I]; act = act(gate)⊙up
	dPre, rstdD   compute.Buffer // sandwich norms: down_proj's output before its norm, factors
	lora          []loraActs     // per module of the layer
}

// Scratch slots of workspace.bf (PrecisionBF16): an f32 gradient that
// enters a GEMM, an adapter weight or bias, and a chunk of logit gradients.
const (
	slotA = iota
	slotW
	slotLogits
	numSlots
)

// ropeTable is the cos and sin table of one rotary embedding for
// positions [0, n), with LongRoPE's choice of factors.
type ropeTable struct {
	cos, sin compute.Buffer
	n        int
	long     bool
}

// workspace holds every buffer of a forward (and backward) pass for one
// batch shape.
type workspace struct {
	be         compute.Backend
	adt        compute.DType // activations: F32, or BF16 with PrecisionBF16
	bufs       []compute.Buffer
	bytes      int64 // of bufs
	rows, seq  int
	n          int  // rows·seq tokens
	train      bool // allocated for training
	ckpt       bool // gradient checkpointing: layers share one acts
	chunk      int  // loss rows per lm_head chunk
	ids, pos   compute.Buffer
	seg        compute.Buffer           // document ids [N] of a packed batch
	packed     bool                     // the current batch uses seg
	targets    compute.Buffer           // [N]: shifted labels, IgnoreIndex where none
	tgt        []int32                  // host copy of targets
	ctargets   compute.Buffer           // the targets ≠ IgnoreIndex, in order
	active     int                      // their number
	ropes      []ropeTable              // per distinct rotary embedding (plan.ropes)
	ones       compute.Buffer           // [N] ones: biases are added and summed through it
	bf         [numSlots]compute.Buffer // PrecisionBF16 scratch
	layers     []acts                   // one per layer, or one shared
	hIns       []compute.Buffer         // checkpointing: each layer's input
	h0, h1     compute.Buffer           // eval: ping-pong residual streams
	hFinal     compute.Buffer           // last layer output
	hScratch   compute.Buffer           // checkpoint recomputation output
	hf, rstdF  compute.Buffer           // final norm output and factors
	loss       compute.Buffer           // [N]
	logits     compute.Buffer           // [chunk, V]
	yD         compute.Buffer           // o_proj / down_proj output (after a sandwich norm) [N, D]
	mask       compute.Buffer           // dropout [N, maxIn]
	xdrop, tIn compute.Buffer           // [N, maxIn]
	base, lora compute.Buffer           // DoRA forward [N, maxOut]
	ia3        compute.Buffer           // (IA)³ scratch [N, maxDim]
	// backward
	dh, dx, dhf  compute.Buffer
	datt, dq     compute.Buffer
	dk, dv       compute.Buffer
	dkx, dvx     compute.Buffer // prefix tuning: the gradients of kx and vx
	pre          compute.Buffer // prefix tuning: one layer's prefix keys or values [P, kv] (F32)
	dqPre, dkPre compute.Buffer // QKNorm: gradients before the q/k norms
	dpre         compute.Buffer // sandwich norms: gradient before a post norm [N, D]
	dact, dgate  compute.Buffer
	dup          compute.Buffer
	dbase, dlora compute.Buffer
	du           compute.Buffer
	err          error
}

func (ws *workspace) alloc(dt compute.DType, n int) compute.Buffer {
	if ws.err != nil {
		return nil
	}
	if ws.be == nil { // a plan (PlanMemory): count only
		ws.bytes += int64(n) * int64(dt.Size())
		return nil
	}
	b, err := ws.be.Alloc(dt, n)
	if err != nil {
		ws.err = err
		return nil
	}
	ws.bufs = append(ws.bufs, b)
	ws.bytes += int64(n) * int64(dt.Size())
	return b
}

func (ws *workspace) f32(n int) compute.Buffer { return ws.alloc(compute.F32, n) }

// act allocates an activation: BF16 with PrecisionBF16, F32 otherwise.
func (ws *workspace) act(n int) compute.Buffer { return ws.alloc(ws.adt, n) }

func (ws *workspace) free() {
	for _, b := range ws.bufs {
		ws.be.Free(b)
	}
	ws.bufs = nil
	ws.freeRopes()
}

func (ws *workspace) freeRopes() {
	for i := range ws.ropes {
		t := &ws.ropes[i]
		if t.cos != nil {
			ws.be.Free(t.cos)
			ws.be.Free(t.sin)
		}
		*t = ropeTable{}
	}
}

// ropeTables makes the RoPE tables of ws cover positions [0, n) for a batch
// whose largest position is n−1: for each distinct rotary embedding, the
// Dims/2 values of cos and sin per position as arch.Rope.CosSin computes
// them (angle p·inv_freq in f32 as transformers' rotary embeddings, times
// LongRoPE's attention factor; LongRoPE's factors chosen for n).
func (m *Model) ropeTables(ws *workspace, n int) error {
	for i, r := range m.pl.ropes {
		t := &ws.ropes[i]
		long := r.UsesLong(n)
		if n <= t.n && long == t.long {
			continue
		}
		size := max(n, ws.seq, t.n)
		if t.cos != nil {
			m.be.Free(t.cos)
			m.be.Free(t.sin)
			*t = ropeTable{}
		}
		half := r.Dims / 2
		var err error
		if t.cos, err = m.be.Alloc(compute.F32, size*half); err != nil {
			t.cos = nil
			return err
		}
		if t.sin, err = m.be.Alloc(compute.F32, size*half); err != nil {
			m.be.Free(t.cos)
			t.cos = nil
			return err
		}
		pos := make([]int, size)
		for p := range pos {
			pos[p] = p
		}
		cos, sin := r.CosSin(pos, n) // Dims values per position: the half twice
		hc, hs := make([]float32, size*half), make([]float32, size*half)
		for p := range size {
			copy(hc[p*half:(p+1)*half], cos[p*r.Dims:])
			copy(hs[p*half:(p+1)*half], sin[p*r.Dims:])
		}
		m.be.Upload(t.cos, hc)
		m.be.Upload(t.sin, hs)
		t.n, t.long = size, long
	}
	return nil
}

// keep says which activations of a layer its backward pass reads, so that
// a training workspace stores them per layer (the others share one
// buffer): attention's inputs and outputs (q, k, v, lse and att, and the
// q/k norms' inputs), att as o_proj's input, o_proj's output before a
// sandwich norm, hMid (the MLP norm's input), gate and up (the gated
// activation's inputs), act (down_proj's input) and down_proj's output
// before a sandwich norm. The norms' outputs x1 and x2 are never kept: the
// backward pass recomputes them from hIn and hMid when an adapter needs
// them.
type keep struct {
	att, out, oPre, mid, mlp, down, dPre bool
}

// keeps mirrors what backward reads of layer l.
func (m *Model) keeps(l int) keep {
	lowest, input := m.lowestTrained()
	if lowest < 0 || l < lowest {
		return keep{}
	}
	L := &m.layers[l]
	att := l > lowest || input || m.prefixTokens() > 0 || L.trains(pQ, pK, pV)
	mid := att || L.trains(pO)
	mlp := mid || L.trains(pGate, pUp)
	sw := m.cfg.SandwichNorms
	return keep{att: att, out: L.trains(pO), oPre: sw && mid, mid: mid, mlp: mlp, down: L.trains(pDown),
		dPre: sw && (mlp || L.trains(pDown))}
}

// newWorkspace allocates the buffers for rows×seq tokens.
func (m *Model) newWorkspace(rows, seq int, train bool) (*workspace, error) {
	c := m.cfg
	n := rows * seq
	D, I, hq, hkv := c.Hidden, c.Intermediate, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	maxDim := max(D, I, hq)
	ws := &workspace{be: m.be, rows: rows, seq: seq, n: n, train: train, ckpt: train && m.opt.GradCheckpoint,
		adt: compute.F32, ropes: make([]ropeTable, len(m.pl.ropes))}
	bf16 := m.opt.Precision == PrecisionBF16
	if bf16 {
		ws.adt = compute.BF16
	}
	ws.chunk = m.opt.LossChunk
	if ws.chunk <= 0 {
		ws.chunk = max(1, (16<<20)/c.Vocab)
	}
	ws.chunk = min(ws.chunk, n)
	ws.ids = ws.alloc(compute.I32, n)
	ws.pos = ws.alloc(compute.I32, n)
	ws.seg = ws.alloc(compute.I32, n)
	ws.targets = ws.alloc(compute.I32, n)
	ws.ctargets = ws.alloc(compute.I32, n)

	maxRank, dora, ia3, ia3Out, dropIn, maxW := 0, false, false, false, 0, 0
	for _, ad := range m.adapters {
		maxRank = max(maxRank, ad.Rank)
		dora = dora || ad.DoRA
		ia3 = ia3 || ad.IA3
		ia3Out = ia3Out || ad.IA3 && !ad.FeedForward
		if ad.Dropout > 0 {
			dropIn = max(dropIn, ad.in) // the widest input a dropout masks
		}
		maxW = max(maxW, ad.Rank*max(ad.in, ad.out))
	}
	maxOut, biases := 0, false
	for _, mp := range m.pl.modules {
		maxOut = max(maxOut, mp.out)
		if mp.hasBias {
			biases = true
			maxW = max(maxW, mp.out) // a bias rounded for its product
		}
	}
	// The activations of a layer: one buffer each, or in a training
	// workspace kept per layer only where backward reads them (keep); a
	// layer uses the shared scratch, allocated on first need, for the rest.
	var scratch acts
	made := map[*compute.Buffer]bool{} // (a plan's buffers are all nil)
	get := func(b *compute.Buffer, alloc func() compute.Buffer) compute.Buffer {
		if !made[b] {
			*b, made[b] = alloc(), true
		}
		return *b
	}
	pick := func(kept bool, b *compute.Buffer, alloc func() compute.Buffer) compute.Buffer {
		if kept {
			return alloc()
		}
		return get(b, alloc)
	}
	hidden := func() compute.Buffer { return ws.act(n * D) }
	inter := func() compute.Buffer { return ws.act(n * I) }
	heads := func() compute.Buffer { return ws.act(n * hq) }
	kvHeads := func() compute.Buffer { return ws.act(n * hkv) }
	f32s := func(k int) func() compute.Buffer { return func() compute.Buffer { return ws.f32(k) } }
	P := m.prefixTokens()
	prefixed := func() compute.Buffer { return ws.act(rows * (P + seq) * hkv) }
	newActs := func(l int, shared bool, k keep) acts {
		a := acts{rstd1: ws.f32(n), rstd2: ws.f32(n)}
		a.x1, a.x2 = get(&scratch.x1, hidden), get(&scratch.x2, hidden)
		a.q, a.k, a.v = pick(k.att, &scratch.q, heads), pick(k.att, &scratch.k, kvHeads), pick(k.att, &scratch.v, kvHeads)
		if c.QKNorm {
			a.qPre, a.kPre = pick(k.att, &scratch.qPre, heads), pick(k.att, &scratch.kPre, kvHeads)
			a.rstdQ, a.rstdK = pick(k.att, &scratch.rstdQ, f32s(n*c.Heads)), pick(k.att, &scratch.rstdK, f32s(n*c.KVHeads))
		}
		a.lse = pick(k.att, &scratch.lse, f32s(rows*c.Heads*seq))
		if P > 0 {
			a.kx, a.vx = pick(k.att, &scratch.kx, prefixed), pick(k.att, &scratch.vx, prefixed)
		}
		a.att = pick(k.att || k.out, &scratch.att, heads)
		if c.SandwichNorms {
			a.oPre, a.rstdO = pick(k.oPre, &scratch.oPre, hidden), pick(k.oPre, &scratch.rstdO, f32s(n))
			a.dPre, a.rstdD = pick(k.dPre, &scratch.dPre, hidden), pick(k.dPre, &scratch.rstdD, f32s(n))
		}
		a.hMid = pick(k.mid, &scratch.hMid, hidden)
		a.gate, a.up = pick(k.mlp, &scratch.gate, inter), pick(k.mlp, &scratch.up, inter)
		a.act = pick(k.down, &scratch.act, inter)
		a.lora = make([]loraActs, len(m.pl.modules))
		for i, mp := range m.pl.modules {
			if shared {
				if maxRank > 0 {
					a.lora[i].u = ws.act(n * maxRank)
				}
				if train && (dora || ia3Out) {
					a.lora[i].comb = ws.act(n * maxOut)
				}
				continue
			}
			ad := m.layers[l].mods[i].ad
			if ad == nil {
				continue
			}
			if ad.Rank > 0 {
				a.lora[i].u = ws.act(n * ad.Rank)
			}
			if train && (ad.DoRA || ad.IA3 && !ad.FeedForward) {
				a.lora[i].comb = ws.act(n * mp.out)
			}
		}
		return a
	}
	switch {
	case !train:
		ws.layers = []acts{newActs(0, true, keep{})}
		ws.h0, ws.h1 = ws.act(n*D), ws.act(n*D)
	case ws.ckpt:
		ws.layers = []acts{newActs(0, true, keep{})}
		ws.hIns = make([]compute.Buffer, c.Layers)
		for l := range ws.hIns {
			ws.hIns[l] = ws.act(n * D)
		}
		ws.hScratch = ws.act(n * D)
	default:
		ws.layers = make([]acts, c.Layers)
		for l := range ws.layers {
			ws.layers[l] = newActs(l, false, m.keeps(l))
			ws.layers[l].hIn = ws.act(n * D)
		}
	}
	if P > 0 {
		ws.pre = ws.f32(P * hkv)
	}
	ws.hFinal = ws.act(n * D)
	ws.hf, ws.rstdF = ws.act(n*D), ws.f32(n)
	ws.loss = ws.f32(n)
	ws.logits = ws.f32(ws.chunk * c.Vocab)
	ws.yD = ws.act(n * D)
	if biases {
		ws.ones = ws.act(n)
	}
	if dropIn > 0 && train {
		ws.mask, ws.xdrop, ws.tIn = ws.f32(n*dropIn), ws.act(n*dropIn), ws.f32(n*dropIn)
	}
	if ia3 {
		ws.ia3 = ws.act(n * maxDim)
	}
	if dora {
		ws.lora = ws.act(n * maxOut)
		if dropIn > 0 && train {
			ws.base = ws.act(n * maxOut)
		}
	}
	if train {
		// The residual stream's gradient and the input gradients that
		// several products add into stay f32.
		// dhf lives before the layers' backward, dx during it; dgate
		// overwrites dact in GLUBackward.
		ws.dh, ws.dx = ws.f32(n*D), ws.f32(n*D)
		ws.dhf = ws.dx
		ws.datt, ws.dq = ws.act(n*hq), ws.act(n*hq)
		ws.dk, ws.dv = ws.act(n*hkv), ws.act(n*hkv)
		if P > 0 {
			ws.dkx, ws.dvx = prefixed(), prefixed()
		}
		if c.QKNorm {
			ws.dqPre, ws.dkPre = ws.act(n*hq), ws.act(n*hkv)
		}
		if c.SandwichNorms {
			ws.dpre = ws.act(n * D)
		}
		ws.dact, ws.dup = ws.act(n*I), ws.act(n*I)
		ws.dgate = ws.dact
		if maxRank > 0 {
			ws.du = ws.act(n * maxRank)
		}
		if dora {
			ws.dbase, ws.dlora = ws.act(n*maxOut), ws.act(n*maxOut)
		}
	}
	if bf16 {
		if train {
			ws.bf[slotA] = ws.alloc(compute.BF16, n*D) // dh
		}
		ws.bf[slotW] = ws.alloc(compute.BF16, maxW)
		ws.bf[slotLogits] = ws.alloc(compute.BF16, ws.chunk*c.Vocab)
	}
	if ws.err == nil && ws.be != nil {
		if ws.ones != nil {
			ones := make([]float32, n)
			for i := range ones {
				ones[i] = 1
			}
			ws.be.Upload(ws.ones, ones)
		}
		ws.err = m.ropeTables(ws, seq)
	}
	if ws.err != nil {
		err := ws.err
		ws.free()
		return nil, err
	}
	return ws, nil
}
