package llama

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Batch is a batch of equal-length token sequences.
type Batch struct {
	Rows, Seq int
	// IDs holds Rows·Seq token ids, row after row.
	IDs []int32
	// Labels holds Rows·Seq labels in the Hugging Face convention: the logit
	// at position t is scored against label t+1 (labels are shifted inside),
	// and compute.IgnoreIndex (−100) excludes a position. Nil means no loss.
	Labels []int32
}

// Targets returns the number of scored positions: labels[t+1] ≠ −100 for
// t+1 < Seq, in every row.
func (b *Batch) Targets() int {
	n := 0
	for r := range b.Rows {
		for t := 1; t < b.Seq; t++ {
			if b.Labels[r*b.Seq+t] != compute.IgnoreIndex {
				n++
			}
		}
	}
	return n
}

func (b *Batch) check(vocab int, labels bool) error {
	if b.Rows <= 0 || b.Seq <= 0 || b.Rows > 1<<20 || b.Seq > 1<<24 || b.Rows*b.Seq > 1<<26 {
		return fmt.Errorf("%w: shape %d×%d", ErrBatch, b.Rows, b.Seq)
	}
	n := b.Rows * b.Seq
	if len(b.IDs) != n {
		return fmt.Errorf("%w: %d token ids for %d×%d", ErrBatch, len(b.IDs), b.Rows, b.Seq)
	}
	for i, id := range b.IDs {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("%w: token id %d at %d outside [0, %d)", ErrBatch, id, i, vocab)
		}
	}
	if !labels {
		return nil
	}
	if len(b.Labels) != n {
		return fmt.Errorf("%w: %d labels for %d×%d", ErrBatch, len(b.Labels), b.Rows, b.Seq)
	}
	for i, l := range b.Labels {
		if l != compute.IgnoreIndex && (l < 0 || int(l) >= vocab) {
			return fmt.Errorf("%w: label %d at %d outside [0, %d)", ErrBatch, l, i, vocab)
		}
	}
	return nil
}

// Step tunes one ForwardBackward call.
type Step struct {
	// Denominator divides the summed token losses before differentiation
	// (the Trainer's num_items_in_batch). 0 means the batch's own number of
	// targets, i.e. the mean loss.
	Denominator float64
	// Seed selects the dropout masks of this forward pass.
	Seed uint64
}

// prepare validates b, sizes the workspace and uploads ids and targets.
func (m *Model) prepare(b *Batch, train, labels bool) error {
	if err := b.check(m.cfg.Vocab, labels); err != nil {
		return err
	}
	ws := m.ws
	if ws == nil || ws.rows != b.Rows || ws.seq != b.Seq || (train && !ws.train) || (train && ws.ckpt != m.opt.GradCheckpoint) {
		if ws != nil {
			ws.free()
			m.ws = nil
		}
		var err error
		if ws, err = m.newWorkspace(b.Rows, b.Seq, train); err != nil {
			return err
		}
		m.ws = ws
	}
	m.be.UploadInt32(ws.ids, b.IDs)
	if labels {
		t := make([]int32, len(b.IDs))
		for r := range b.Rows {
			for i := range b.Seq {
				t[r*b.Seq+i] = compute.IgnoreIndex
				if i+1 < b.Seq {
					t[r*b.Seq+i] = b.Labels[r*b.Seq+i+1]
				}
			}
		}
		m.be.UploadInt32(ws.targets, t)
	}
	return nil
}

// Logits runs the model in evaluation mode (no dropout) and writes the f32
// logits of every position, [Rows, Seq, Vocab], into dst.
func (m *Model) Logits(b Batch, dst []float32) error {
	if len(dst) != b.Rows*b.Seq*m.cfg.Vocab {
		return fmt.Errorf("%w: logits destination of %d values", ErrBatch, len(dst))
	}
	if err := m.prepare(&b, false, false); err != nil {
		return err
	}
	m.forward(false, 0)
	ws, V, D := m.ws, m.cfg.Vocab, m.cfg.Hidden
	for r0 := 0; r0 < ws.n; r0 += ws.chunk {
		c := min(ws.chunk, ws.n-r0)
		lg := m.be.View(ws.logits, 0, c*V)
		m.be.Gemm(compute.Gemm{M: c, N: V, K: D, TransB: true, Alpha: 1}, m.be.View(ws.hf, r0*D, c*D), m.lmHead, lg)
		if err := m.be.Download(dst[r0*V:(r0+c)*V], lg); err != nil {
			return err
		}
	}
	return m.be.Sync()
}

// Loss runs the model in evaluation mode and returns the summed
// cross-entropy of the batch's targets and their number.
func (m *Model) Loss(b Batch) (sum float64, n int, err error) {
	if err := m.prepare(&b, false, true); err != nil {
		return 0, 0, err
	}
	m.forward(false, 0)
	sum, err = m.loss(false, 0)
	return sum, b.Targets(), err
}

// ForwardBackward runs a training forward pass (adapter dropout active) and
// the backward pass, adding the gradients of sum/Denominator to the
// parameters' gradient buffers (see ZeroGrad). It returns the summed
// cross-entropy and the number of targets.
func (m *Model) ForwardBackward(b Batch, st Step) (sum float64, n int, err error) {
	if len(m.adapters) == 0 {
		return 0, 0, fmt.Errorf("%w: no adapters to train", ErrAdapter)
	}
	if err := m.prepare(&b, true, true); err != nil {
		return 0, 0, err
	}
	n = b.Targets()
	denom := st.Denominator
	if denom == 0 {
		denom = float64(n)
	}
	if !(denom > 0) || math.IsInf(denom, 0) {
		if n == 0 {
			return 0, 0, nil
		}
		return 0, 0, fmt.Errorf("%w: loss denominator %g", ErrBatch, denom)
	}
	m.forward(true, st.Seed)
	if sum, err = m.loss(true, float32(1/denom)); err != nil {
		return 0, 0, err
	}
	m.backward(st.Seed)
	return sum, n, m.be.Sync()
}

// forward runs embedding, layers and the final norm into ws.hf. train
// enables adapter dropout and saves what DoRA's backward needs; the buffers
// used depend on how the workspace was laid out, not on train.
func (m *Model) forward(train bool, seed uint64) {
	ws, c := m.ws, &m.cfg
	be := m.be
	N, D := ws.n, c.Hidden
	var h compute.Buffer
	switch {
	case !ws.train:
		h = ws.h0
	case ws.ckpt:
		h = ws.hIns[0]
	default:
		h = ws.layers[0].hIn
	}
	be.Embedding(h, m.embed, ws.ids, D)
	for l := range c.Layers {
		a := &ws.layers[0]
		var out compute.Buffer
		last := l+1 == c.Layers
		switch {
		case last:
			out = ws.hFinal
		case !ws.train:
			out = ws.h1
			if h == ws.h1 {
				out = ws.h0
			}
		case ws.ckpt:
			out = ws.hIns[l+1]
		default:
			out = ws.layers[l+1].hIn
		}
		if ws.train && !ws.ckpt {
			a = &ws.layers[l]
		} else {
			a.hIn = h
		}
		m.layerForward(l, a, out, train, seed)
		h = out
	}
	be.RMSNorm(ws.hf, ws.rstdF, ws.hFinal, m.finalNorm, N, D, float32(c.RMSEps))
}

func (m *Model) attnParams() compute.Attention {
	c := &m.cfg
	return compute.Attention{Batch: m.ws.rows, Seq: m.ws.seq, Heads: c.Heads, KVHeads: c.KVHeads,
		HeadDim: m.hd, Scale: float32(math.Pow(float64(m.hd), -0.5))}
}

func (m *Model) layerForward(l int, a *acts, out compute.Buffer, train bool, seed uint64) {
	ws, c, be := m.ws, &m.cfg, m.be
	N, D := ws.n, c.Hidden
	L := &m.layers[l]
	eps := float32(c.RMSEps)
	be.RMSNorm(a.x1, a.rstd1, a.hIn, L.attnNorm, N, D, eps)
	m.linearForward(&L.proj[Q], a.x1, a.q, &a.lora[Q], train, seed)
	m.linearForward(&L.proj[K], a.x1, a.k, &a.lora[K], train, seed)
	m.linearForward(&L.proj[V], a.x1, a.v, &a.lora[V], train, seed)
	be.Rope(compute.Rope{Tokens: N, Heads: c.Heads, HeadDim: m.hd}, a.q, ws.pos, ws.cos, ws.sin)
	be.Rope(compute.Rope{Tokens: N, Heads: c.KVHeads, HeadDim: m.hd}, a.k, ws.pos, ws.cos, ws.sin)
	be.Attention(m.attnParams(), a.att, a.lse, a.q, a.k, a.v)
	m.linearForward(&L.proj[O], a.att, ws.yD, &a.lora[O], train, seed)
	be.Copy(a.hMid, a.hIn)
	be.Axpy(a.hMid, ws.yD, 1)
	be.RMSNorm(a.x2, a.rstd2, a.hMid, L.mlpNorm, N, D, eps)
	m.linearForward(&L.proj[Gate], a.x2, a.gate, &a.lora[Gate], train, seed)
	m.linearForward(&L.proj[Up], a.x2, a.up, &a.lora[Up], train, seed)
	be.SwiGLU(a.act, a.gate, a.up)
	m.linearForward(&L.proj[Down], a.act, ws.yD, &a.lora[Down], train, seed)
	be.Copy(out, a.hMid)
	be.Axpy(out, ws.yD, 1)
}

// view returns the first n elements of b.
func (m *Model) view(b compute.Buffer, n int) compute.Buffer { return m.be.View(b, 0, n) }

// linearForward computes y = x·Wᵀ plus the adapter's term:
// LoRA: + s·B·A·dropout(x); DoRA: PEFT's DoraLinearLayer.forward; (IA)³:
// PEFT's ia3 Linear.forward.
func (m *Model) linearForward(lin *linear, x, y compute.Buffer, la *loraActs, train bool, seed uint64) {
	be, N := m.be, m.ws.n
	ad := lin.ad
	if ad != nil && ad.IA3 && ad.FeedForward { // y = (x⊙l)·Wᵀ
		xs := m.view(m.ws.ia3, N*lin.in)
		be.ScaleCols(xs, x, ad.l, N, lin.in, false)
		x = xs
	}
	be.Gemm(compute.Gemm{M: N, N: lin.out, K: lin.in, TransB: true, Alpha: 1}, x, lin.w, y)
	if ad == nil {
		return
	}
	if ad.IA3 {
		if !ad.FeedForward { // y = (x·Wᵀ)⊙l
			if train {
				be.Copy(m.view(la.comb, N*lin.out), y)
			}
			be.ScaleCols(y, y, ad.l, N, lin.out, false)
		}
		return
	}
	xd := x
	drop := train && ad.Dropout > 0
	if drop {
		mask, xdrop := m.view(m.ws.mask, N*lin.in), m.view(m.ws.xdrop, N*lin.in)
		be.DropoutMask(mask, ad.Dropout, seed, ad.stream)
		be.Mul(xdrop, x, mask)
		xd = xdrop
	}
	u := m.view(la.u, N*ad.Rank)
	be.Gemm(compute.Gemm{M: N, N: ad.Rank, K: lin.in, TransB: true, Alpha: 1}, xd, ad.a, u)
	if !ad.DoRA {
		be.Gemm(compute.Gemm{M: N, N: lin.out, K: ad.Rank, TransB: true, Alpha: ad.Scale, Beta: 1}, u, ad.b, y)
		return
	}
	if !m.frozenNorms {
		be.DoRANorm(ad.norm, lin.w, ad.a, ad.b, lin.out, lin.in, ad.Rank, ad.Scale)
	}
	lora := m.view(m.ws.lora, N*lin.out)
	be.Gemm(compute.Gemm{M: N, N: lin.out, K: ad.Rank, TransB: true, Alpha: 1}, u, ad.b, lora)
	base := y
	if drop {
		base = m.view(m.ws.base, N*lin.out)
		be.Gemm(compute.Gemm{M: N, N: lin.out, K: lin.in, TransB: true, Alpha: 1}, xd, lin.w, base)
	}
	var comb compute.Buffer
	if train {
		comb = m.view(la.comb, N*lin.out)
	}
	be.DoRAForward(y, comb, base, lora, ad.mag, ad.norm, N, lin.out, ad.Scale)
}

// loss computes the per-row cross-entropy of ws.hf·lm_headᵀ in chunks of
// rows and, with grad, ws.dhf = ∂(Σ loss·scale)/∂hf.
func (m *Model) loss(grad bool, scale float32) (float64, error) {
	ws, be := m.ws, m.be
	V, D := m.cfg.Vocab, m.cfg.Hidden
	for r0 := 0; r0 < ws.n; r0 += ws.chunk {
		c := min(ws.chunk, ws.n-r0)
		lg := be.View(ws.logits, 0, c*V)
		h := be.View(ws.hf, r0*D, c*D)
		be.Gemm(compute.Gemm{M: c, N: V, K: D, TransB: true, Alpha: 1}, h, m.lmHead, lg)
		lv, tg := be.View(ws.loss, r0, c), be.View(ws.targets, r0, c)
		if !grad {
			be.CrossEntropy(lv, nil, lg, tg, c, V, 0)
			continue
		}
		be.CrossEntropy(lv, lg, lg, tg, c, V, scale)
		be.Gemm(compute.Gemm{M: c, N: D, K: V, Alpha: 1}, lg, m.lmHead, be.View(ws.dhf, r0*D, c*D))
	}
	per := make([]float32, ws.n)
	if err := be.Download(per, ws.loss); err != nil {
		return 0, err
	}
	var sum float64
	for _, v := range per {
		sum += float64(v)
	}
	return sum, nil
}
