package llama

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
)

// MaxPosition bounds the RoPE positions a Batch may give.
const MaxPosition = 1 << 20

// Batch is a batch of equal-length token sequences.
type Batch struct {
	Rows, Seq int
	// IDs holds Rows·Seq token ids, row after row.
	IDs []int32
	// Labels holds Rows·Seq labels in the Hugging Face convention: the logit
	// at position t is scored against label t+1 (labels are shifted inside),
	// and compute.IgnoreIndex (−100) excludes a position. Nil means no loss.
	Labels []int32
	// Positions holds Rows·Seq RoPE positions in [0, MaxPosition)
	// (transformers' position_ids). Nil means each token's index in its
	// document: 0..Seq−1 in every row without Segments.
	Positions []int32
	// Segments packs several documents (examples) into a row: Rows·Seq
	// document ids, non-decreasing along each row. A token attends only to
	// the earlier tokens of its row with the same id, and no label is scored
	// across a change of id (as the −100 separators of transformers'
	// DataCollatorWithFlattening). Nil means: derived from Positions as
	// transformers does for packed position_ids (a new document wherever a
	// position is not its predecessor + 1), or one document per row when
	// Positions is nil too. Each document then computes what it computes as
	// a row of its own (bit for bit on the CPU backend).
	Segments []int32
}

// layout returns the RoPE position and the document id of every token;
// segs is nil when every row holds one document. b must have passed check
// (or have nil or full-length Positions and Segments).
func (b *Batch) layout() (pos, segs []int32) {
	n := b.Rows * b.Seq
	pos, segs = b.Positions, b.Segments
	if len(pos) != n {
		pos = nil
	}
	if len(segs) != n {
		segs = nil
	}
	if segs == nil && pos != nil { // transformers' find_packed_sequence_indices
		segs = make([]int32, n)
		for i := range segs {
			if i%b.Seq != 0 {
				segs[i] = segs[i-1]
				if pos[i] != pos[i-1]+1 {
					segs[i]++
				}
			}
		}
	}
	if pos == nil {
		pos = make([]int32, n)
		for i := range pos {
			pos[i] = int32(i % b.Seq)
			if segs != nil && i%b.Seq != 0 && segs[i] == segs[i-1] {
				pos[i] = pos[i-1] + 1
			} else if segs != nil {
				pos[i] = 0
			}
		}
	}
	if segs != nil {
		single := true
		for i := range segs {
			if i%b.Seq != 0 && segs[i] != segs[i-1] {
				single = false
				break
			}
		}
		if single {
			segs = nil
		}
	}
	return pos, segs
}

// shifted returns the target of every position: labels[t+1], or
// IgnoreIndex at the end of a row and across a change of document.
func (b *Batch) shifted(segs []int32) []int32 {
	t := make([]int32, b.Rows*b.Seq)
	for r := range b.Rows {
		for i := range b.Seq {
			k := r*b.Seq + i
			t[k] = compute.IgnoreIndex
			if i+1 < b.Seq && (segs == nil || segs[k+1] == segs[k]) {
				t[k] = b.Labels[k+1]
			}
		}
	}
	return t
}

// Targets returns the number of scored positions: labels[t+1] ≠ −100 for
// t+1 < Seq, in every row, where t and t+1 are in the same document.
func (b *Batch) Targets() int {
	_, segs := b.layout()
	n := 0
	for _, t := range b.shifted(segs) {
		if t != compute.IgnoreIndex {
			n++
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
	if b.Positions != nil {
		if len(b.Positions) != n {
			return fmt.Errorf("%w: %d positions for %d×%d", ErrBatch, len(b.Positions), b.Rows, b.Seq)
		}
		for i, p := range b.Positions {
			if p < 0 || p >= MaxPosition {
				return fmt.Errorf("%w: position %d at %d outside [0, %d)", ErrBatch, p, i, MaxPosition)
			}
		}
	}
	if b.Segments != nil {
		if len(b.Segments) != n {
			return fmt.Errorf("%w: %d segment ids for %d×%d", ErrBatch, len(b.Segments), b.Rows, b.Seq)
		}
		for i := range b.Segments {
			if i%b.Seq != 0 && b.Segments[i] < b.Segments[i-1] {
				return fmt.Errorf("%w: segment id %d at %d after %d (ids must not decrease along a row)",
					ErrBatch, b.Segments[i], i, b.Segments[i-1])
			}
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
	// KeepDoRANorms reuses the DoRA weight norms of the previous forward
	// pass instead of recomputing them. The gradient treats the norms as
	// constants (PEFT detaches them), so a finite-difference check of the
	// gradient must hold them fixed too.
	KeepDoRANorms bool
}

// prepare validates b, sizes the workspace and uploads ids, positions,
// document ids and targets.
func (m *Model) prepare(b *Batch, train, labels bool) error {
	if err := b.check(m.cfg.Vocab, labels); err != nil {
		return err
	}
	if m.virt != nil {
		ext, err := m.withVirtual(b)
		if err != nil {
			return err
		}
		*b = ext
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
	pos, segs := b.layout()
	maxPos := int32(0)
	for _, p := range pos {
		maxPos = max(maxPos, p)
	}
	if err := m.ropeTables(ws, int(maxPos)+1); err != nil {
		return err
	}
	m.be.UploadInt32(ws.pos, pos)
	ws.packed = segs != nil
	if ws.packed {
		m.be.UploadInt32(ws.seg, segs)
	}
	if labels {
		ws.tgt = b.shifted(segs)
		m.be.UploadInt32(ws.targets, ws.tgt)
		// The targets of the positions that have one, in order (the loss
		// computes logits for these rows only).
		var act []int32
		for _, t := range ws.tgt {
			if t != compute.IgnoreIndex {
				act = append(act, t)
			}
		}
		ws.active = len(act)
		if len(act) > 0 {
			m.be.UploadInt32(m.be.View(ws.ctargets, 0, len(act)), act)
		}
	}
	return nil
}

// Reserve allocates the training workspace for batches of rows×seq tokens
// (plus prompt tuning's virtual tokens) now, so that a device too small for
// them fails here rather than in the first ForwardBackward (which otherwise
// allocates it).
func (m *Model) Reserve(rows, seq int) error {
	if rows <= 0 || seq <= 0 {
		return fmt.Errorf("%w: shape %d×%d", ErrBatch, rows, seq)
	}
	seq += m.promptTokens() // the rows the layers see
	ws := m.ws
	if ws != nil && ws.rows == rows && ws.seq == seq && ws.train && ws.ckpt == m.opt.GradCheckpoint {
		return nil
	}
	if ws != nil {
		ws.free()
		m.ws = nil
	}
	ws, err := m.newWorkspace(rows, seq, true)
	if err != nil {
		return err
	}
	m.ws = ws
	return nil
}

// WorkspaceBytes returns the bytes of the current workspace: the
// activations, gradients and scratch of the last batch shape (0 before the
// first pass or Reserve).
func (m *Model) WorkspaceBytes() int64 {
	if m.ws == nil {
		return 0
	}
	return m.ws.bytes
}

// Logits runs the model in evaluation mode (no dropout) and writes the f32
// logits of every position of b, [Rows, Seq, Vocab], into dst (soft-capped
// when the architecture caps them). Virtual tokens' positions have no
// logits here: dst holds those of the batch's own tokens.
func (m *Model) Logits(b Batch, dst []float32) error {
	if len(dst) != b.Rows*b.Seq*m.cfg.Vocab {
		return fmt.Errorf("%w: logits destination of %d values", ErrBatch, len(dst))
	}
	seq := b.Seq
	if err := m.prepare(&b, false, false); err != nil {
		return err
	}
	m.forward(false, 0)
	ws, V, D := m.ws, m.cfg.Vocab, m.cfg.Hidden
	hf := m.cast(ws.hf, slotA)
	// The batch's own tokens: one run of rows per sequence after its virtual
	// rows, or all rows at once without them.
	type run struct{ src, dst, n int }
	runs := []run{{0, 0, ws.n}}
	if P := ws.seq - seq; P > 0 {
		runs = runs[:0]
		for r := range ws.rows {
			runs = append(runs, run{r*ws.seq + P, r * seq, seq})
		}
	}
	for _, rn := range runs {
		for o := 0; o < rn.n; o += ws.chunk {
			c := min(ws.chunk, rn.n-o)
			lg := m.be.View(ws.logits, 0, c*V)
			m.be.Gemm(compute.Gemm{M: c, N: V, K: D, TransB: true, Alpha: 1}, m.be.View(hf, (rn.src+o)*D, c*D), m.lmHead, lg)
			if m.cfg.FinalSoftcap > 0 {
				m.be.SoftCap(lg, float32(m.cfg.FinalSoftcap))
			}
			if err := m.be.Download(dst[(rn.dst+o)*V:(rn.dst+o+c)*V], lg); err != nil {
				return err
			}
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
	if len(m.adapters) == 0 && m.virt == nil {
		return 0, 0, fmt.Errorf("%w: no adapters to train", ErrAdapter)
	}
	if err := m.prepare(&b, true, true); err != nil {
		return 0, 0, err
	}
	m.keepNorms = st.KeepDoRANorms
	defer func() { m.keepNorms = false }()
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
	ws, c := m.ws, m.cfg
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
	if m.embedScale != 0 {
		be.Scale(h, m.embedScale) // hidden · normalizer, in the activations' dtype
	}
	m.promptForward(h)
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
	be.RMSNorm(ws.hf, ws.rstdF, ws.hFinal, m.finalNorm, N, D, m.pl.eps)
}

// attnParams returns layer l's attention: its window, the soft-cap and the
// registry's score scale.
func (m *Model) attnParams(l int) compute.Attention {
	c := m.cfg
	p := compute.Attention{Batch: m.ws.rows, Seq: m.ws.seq, Heads: c.Heads, KVHeads: c.KVHeads,
		HeadDim: c.HeadDim, Scale: float32(c.AttnScale), SoftCap: float32(c.AttnSoftcap)}
	if a := c.Attention[l]; a.Sliding {
		p.Window = a.Window
	}
	if m.ws.packed {
		p.Segments = m.ws.seg
	}
	p.Prefix = m.prefixTokens()
	return p
}

// rope rotates x (heads per token) with layer l's embedding; inverse is the
// backward pass.
func (m *Model) rope(l int, x compute.Buffer, heads int, inverse bool) {
	ws := m.ws
	t := &ws.ropes[m.pl.ropeOf[l]]
	m.be.Rope(compute.Rope{Tokens: ws.n, Heads: heads, HeadDim: m.cfg.HeadDim, Rotary: m.pl.ropes[m.pl.ropeOf[l]].Dims,
		Inverse: inverse}, x, ws.pos, t.cos, t.sin)
}

// cast returns the GEMM operand for x: x itself, or with PrecisionBF16 an
// F32 x (an adapter weight, a gradient kept in f32) rounded to bfloat16 in
// the workspace's scratch slot (see workspace.bf); the copy is valid until
// the slot is used again.
func (m *Model) cast(x compute.Buffer, slot int) compute.Buffer {
	if m.opt.Precision != PrecisionBF16 || x.DType() == compute.BF16 {
		return x
	}
	d := m.be.View(m.ws.bf[slot], 0, x.Len())
	m.be.Convert(d, x)
	return d
}

// output returns the buffer projection p writes in the forward pass.
func (m *Model) output(a *acts, p proj) compute.Buffer {
	switch p {
	case pQ:
		if m.cfg.QKNorm {
			return a.qPre
		}
		return a.q
	case pK:
		if m.cfg.QKNorm {
			return a.kPre
		}
		return a.k
	case pV:
		return a.v
	case pO:
		if m.cfg.SandwichNorms {
			return a.oPre
		}
	case pGate:
		return a.gate
	case pUp:
		return a.up
	case pDown:
		if m.cfg.SandwichNorms {
			return a.dPre
		}
	}
	return m.ws.yD
}

// groupForward runs the modules of L that read x (group g), writing each
// projection's output.
func (m *Model) groupForward(L *layer, g group, x compute.Buffer, a *acts, train bool, seed uint64) {
	for i := range L.mods {
		mod := &L.mods[i]
		if mod.parts[0].p.group() != g {
			continue
		}
		ys := make([]compute.Buffer, len(mod.parts))
		for j, pt := range mod.parts {
			ys[j] = m.output(a, pt.p)
		}
		m.moduleForward(mod, x, ys, &a.lora[i], train, seed)
	}
}

func (m *Model) layerForward(l int, a *acts, out compute.Buffer, train bool, seed uint64) {
	ws, c, be := m.ws, m.cfg, m.be
	N, D, hd := ws.n, c.Hidden, c.HeadDim
	L := &m.layers[l]
	eps := m.pl.eps
	be.RMSNorm(a.x1, a.rstd1, a.hIn, L.inNorm, N, D, eps)
	m.groupForward(L, gQKV, a.x1, a, train, seed)
	if c.QKNorm { // per head, over head_dim, before RoPE
		be.RMSNorm(a.q, a.rstdQ, a.qPre, L.qNorm, N*c.Heads, hd, eps)
		be.RMSNorm(a.k, a.rstdK, a.kPre, L.kNorm, N*c.KVHeads, hd, eps)
	}
	m.rope(l, a.q, c.Heads, false)
	m.rope(l, a.k, c.KVHeads, false)
	if m.prefixTokens() > 0 {
		m.prefixForward(l, a)
		be.Attention(m.attnParams(l), a.att, a.lse, a.q, a.kx, a.vx)
	} else {
		be.Attention(m.attnParams(l), a.att, a.lse, a.q, a.k, a.v)
	}
	m.groupForward(L, gO, a.att, a, train, seed)
	if c.SandwichNorms {
		be.RMSNorm(ws.yD, a.rstdO, a.oPre, L.attnOutNorm, N, D, eps)
	}
	be.Copy(a.hMid, a.hIn)
	be.Axpy(a.hMid, ws.yD, 1)
	be.RMSNorm(a.x2, a.rstd2, a.hMid, L.ffInNorm, N, D, eps)
	m.groupForward(L, gGateUp, a.x2, a, train, seed)
	be.GLU(m.pl.act, a.act, a.gate, a.up)
	m.groupForward(L, gDown, a.act, a, train, seed)
	if c.SandwichNorms {
		be.RMSNorm(ws.yD, a.rstdD, a.dPre, L.ffOutNorm, N, D, eps)
	}
	be.Copy(out, a.hMid)
	be.Axpy(out, ws.yD, 1)
}

// view returns the first n elements of b.
func (m *Model) view(b compute.Buffer, n int) compute.Buffer { return m.be.View(b, 0, n) }

// partView returns the rows of part j of a module's [N, out] output held
// part after part in b (each part's rows contiguous): [N, rows] at N·off.
func (m *Model) partView(b compute.Buffer, pt part) compute.Buffer {
	return m.be.View(b, m.ws.n*pt.off, m.ws.n*pt.rows)
}

// rowsView returns rows [pt.off, pt.off+pt.rows) of a row-major [out, k]
// matrix (a weight, lora_B, or a vector with k = 1).
func (m *Model) rowsView(b compute.Buffer, pt part, k int) compute.Buffer {
	return m.be.View(b, pt.off*k, pt.rows*k)
}

// addBias adds the bias (rows of it for part pt) to y [N, rows]: as a rank-1
// product ones·biasᵀ accumulated into y, which is the addmm of nn.Linear.
func (m *Model) addBias(y, bias compute.Buffer, pt part) {
	N := m.ws.n
	b := m.cast(m.rowsView(bias, pt, 1), slotW)
	m.be.Gemm(compute.Gemm{M: N, N: pt.rows, K: 1, Alpha: 1, Beta: 1}, m.ws.ones, b, y)
}

// moduleForward computes each part j of y = x·Wᵀ + b into ys[j], plus the
// adapter's term: LoRA: + s·B·A·dropout(x) (one A, the rows of B of each
// part); DoRA: PEFT's DoraLinearLayer.forward, the magnitude scaling W·x
// but not the bias; (IA)³: PEFT's ia3 Linear.forward, bias included in the
// scaled output.
func (m *Model) moduleForward(mod *module, x compute.Buffer, ys []compute.Buffer, la *loraActs, train bool, seed uint64) {
	be, N := m.be, m.ws.n
	ad := mod.ad
	if ad != nil && ad.IA3 && ad.FeedForward { // y = (x⊙l)·Wᵀ
		xs := m.view(m.ws.ia3, N*mod.in)
		be.ScaleCols(xs, x, ad.l, N, mod.in, false)
		x = xs
	}
	w := m.weight(mod)
	xc := m.cast(x, slotA)
	bias := mod.biasBuf()
	dora := ad != nil && ad.DoRA
	drop := train && ad != nil && ad.lora() && ad.Dropout > 0
	for j, pt := range mod.parts {
		be.Gemm(compute.Gemm{M: N, N: pt.rows, K: mod.in, TransB: true, Alpha: 1}, xc, m.rowsView(w, pt, mod.in), ys[j])
		if bias != nil && !(dora && !drop) { // DoRA without dropout adds it after its terms
			m.addBias(ys[j], bias, pt)
		}
	}
	if ad == nil {
		return
	}
	if ad.IA3 {
		if !ad.FeedForward { // y = (x·Wᵀ + b)⊙l
			for j, pt := range mod.parts {
				if train {
					be.Copy(m.partView(la.comb, pt), ys[j])
				}
				be.ScaleCols(ys[j], ys[j], m.rowsView(ad.l, pt, 1), N, pt.rows, false)
			}
		}
		return
	}
	if !ad.lora() {
		return
	}
	xd := x
	if drop {
		mask, xdrop := m.view(m.ws.mask, N*mod.in), m.view(m.ws.xdrop, N*mod.in)
		be.DropoutMask(mask, ad.Dropout, seed, ad.stream)
		be.Mul(xdrop, x, mask)
		xd = xdrop
		xc = m.cast(xd, slotA)
	}
	u := m.view(la.u, N*ad.Rank)
	be.Gemm(compute.Gemm{M: N, N: ad.Rank, K: mod.in, TransB: true, Alpha: 1}, xc, m.cast(ad.a, slotW), u)
	uc := u // an activation: bf16 with PrecisionBF16
	if !dora {
		bc := m.cast(ad.b, slotW)
		for j, pt := range mod.parts {
			be.Gemm(compute.Gemm{M: N, N: pt.rows, K: ad.Rank, TransB: true, Alpha: ad.Scale, Beta: 1}, uc,
				m.rowsView(bc, pt, ad.Rank), ys[j])
		}
		return
	}
	if !m.keepNorms {
		be.DoRANorm(ad.norm, w, ad.a, ad.b, mod.out, mod.in, ad.Rank, ad.Scale)
	}
	lora := m.view(m.ws.lora, N*mod.out)
	bc := m.cast(ad.b, slotW)
	for _, pt := range mod.parts {
		be.Gemm(compute.Gemm{M: N, N: pt.rows, K: ad.Rank, TransB: true, Alpha: 1}, uc, m.rowsView(bc, pt, ad.Rank),
			m.partView(lora, pt))
	}
	for j, pt := range mod.parts {
		base := ys[j]
		if drop {
			base = m.partView(m.view(m.ws.base, N*mod.out), pt)
			be.Gemm(compute.Gemm{M: N, N: pt.rows, K: mod.in, TransB: true, Alpha: 1}, xc, m.rowsView(w, pt, mod.in), base)
		}
		var comb compute.Buffer
		if train {
			comb = m.partView(la.comb, pt)
		}
		be.DoRAForward(ys[j], comb, base, m.partView(lora, pt), m.rowsView(ad.mag, pt, 1), m.rowsView(ad.norm, pt, 1),
			N, pt.rows, ad.Scale)
		if bias != nil && !drop {
			m.addBias(ys[j], bias, pt)
		}
	}
}

// loss computes the cross-entropy of ws.hf·lm_headᵀ (soft-capped when the
// architecture caps its logits) against the targets and, with grad, ws.dhf
// = ∂(Σ loss·scale)/∂hf. Logits exist only for the positions that have a
// target, at most ws.chunk rows at a time; the others get a zero gradient.
func (m *Model) loss(grad bool, scale float32) (float64, error) {
	ws, be := m.ws, m.be
	V, D := m.cfg.Vocab, m.cfg.Hidden
	softCap := float32(m.cfg.FinalSoftcap)
	if grad {
		be.Zero(ws.dhf)
	}
	if ws.active == 0 {
		return 0, nil
	}
	hf := m.cast(ws.hf, slotA)
	// A chunk is a list of runs of consecutive positions with targets.
	type run struct{ src, dst, n int }
	var runs []run
	done, rows := 0, 0 // targets in earlier chunks, rows in this one
	flush := func() {
		lg := be.View(ws.logits, 0, rows*V)
		for _, r := range runs {
			be.Gemm(compute.Gemm{M: r.n, N: V, K: D, TransB: true, Alpha: 1},
				be.View(hf, r.src*D, r.n*D), m.lmHead, be.View(lg, r.dst*V, r.n*V))
		}
		lv, tg := be.View(ws.loss, done, rows), be.View(ws.ctargets, done, rows)
		if !grad {
			be.CrossEntropy(lv, nil, lg, tg, rows, V, 0, softCap)
		} else {
			be.CrossEntropy(lv, lg, lg, tg, rows, V, scale, softCap)
			lc := m.cast(lg, slotLogits)
			for _, r := range runs {
				be.Gemm(compute.Gemm{M: r.n, N: D, K: V, Alpha: 1},
					be.View(lc, r.dst*V, r.n*V), m.lmHead, be.View(ws.dhf, r.src*D, r.n*D))
			}
		}
		done += rows
		runs, rows = runs[:0], 0
	}
	for t := 0; t < ws.n; {
		if ws.tgt[t] == compute.IgnoreIndex {
			t++
			continue
		}
		e := t + 1
		for e < ws.n && e-t < ws.chunk-rows && ws.tgt[e] != compute.IgnoreIndex {
			e++
		}
		runs = append(runs, run{src: t, dst: rows, n: e - t})
		rows += e - t
		if rows == ws.chunk {
			flush()
		}
		t = e
	}
	if rows > 0 {
		flush()
	}
	per := make([]float32, ws.active)
	if err := be.Download(per, be.View(ws.loss, 0, ws.active)); err != nil {
		return 0, err
	}
	var sum float64
	for _, v := range per {
		sum += float64(v)
	}
	return sum, nil
}
