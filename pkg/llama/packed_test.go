package llama

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
)

// noDropout returns gradSpecs(kind) without adapter dropout (masks depend
// on a token's place in the batch).
func noDropout(kind string) []Adapter {
	s := gradSpecs(kind)
	for i := range s {
		s[i].Dropout = 0
	}
	return s
}

// packedPair returns two examples from the golden batch packed into one
// row (with Segments, Positions or both) and the same examples as two
// right-padded rows. The second example's first label is a real token, which
// the packed row must not score from the first example's last position.
func packedPair(t testing.TB, mode string) (packed, separate Batch, la, lb int) {
	_, g := loadGolden(t, fixtures(t)+"/peft/train/plain")
	la, lb = 7, 9
	seq := la + lb
	aIDs, aLab := g.IDs[:la], g.Labels[:la]
	bIDs, bLab := slices.Clone(g.IDs[g.Seq:g.Seq+lb]), slices.Clone(g.Labels[g.Seq:g.Seq+lb])
	bLab[0] = bIDs[0]
	aLab = slices.Clone(aLab)
	aLab[5] = compute.IgnoreIndex // a masked position inside a document
	packed = Batch{Rows: 1, Seq: seq, IDs: slices.Concat(aIDs, bIDs), Labels: slices.Concat(aLab, bLab)}
	seg := make([]int32, seq)
	pos := make([]int32, seq)
	for i := range seq {
		pos[i] = int32(i)
		if i >= la {
			seg[i], pos[i] = 5, int32(i-la)
		}
	}
	switch mode {
	case "segments":
		packed.Segments = seg
	case "positions":
		packed.Positions = pos
	case "both":
		packed.Segments, packed.Positions = seg, pos
	}
	pad := func(ids, lab []int32) ([]int32, []int32) {
		ids, lab = slices.Clone(ids), slices.Clone(lab)
		for len(ids) < seq {
			ids = append(ids, int32(len(ids)*37%256))
			lab = append(lab, compute.IgnoreIndex)
		}
		return ids, lab
	}
	ai, al := pad(aIDs, aLab)
	bi, bl := pad(bIDs, bLab)
	separate = Batch{Rows: 2, Seq: seq, IDs: slices.Concat(ai, bi), Labels: slices.Concat(al, bl)}
	return packed, separate, la, lb
}

// TestPacked requires each example of a packed row to compute exactly what
// it computes as a row of its own: logits, loss and adapter gradients.
func TestPacked(t *testing.T) {
	for _, mode := range []string{"segments", "positions", "both"} {
		for _, kind := range []string{"mixed", "ia3", "lora"} {
			for _, opt := range []Options{{}, {GradCheckpoint: true, LossChunk: 3}} {
				name := fmt.Sprintf("%s/%s/checkpoint=%v", mode, kind, opt.GradCheckpoint)
				t.Run(name, func(t *testing.T) { testPacked(t, mode, kind, opt) })
			}
		}
	}
}

func testPacked(t *testing.T, mode, kind string, opt Options) {
	packed, separate, la, lb := packedPair(t, mode)
	if n, want := packed.Targets(), separate.Targets(); n != want {
		t.Errorf("packed targets %d, separate %d", n, want)
	}
	run := func(b Batch) (logits []float32, sum float64, n int, grads [][]float32) {
		m := loadTiny(t, cpu.New(2), "tiny", opt)
		if err := m.AddAdapters(noDropout(kind), randomAdapters(5)); err != nil {
			t.Fatal(err)
		}
		logits = make([]float32, b.Rows*b.Seq*256)
		if err := m.Logits(b, logits); err != nil {
			t.Fatal(err)
		}
		m.ZeroGrad()
		sum, n, err := m.ForwardBackward(b, Step{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if ev, en, err := m.Loss(b); err != nil || ev != sum || en != n {
			t.Errorf("evaluation loss %v over %d (%v), training %v over %d", ev, en, err, sum, n)
		}
		for _, p := range m.Params() {
			grads = append(grads, download(t, m.be, p.Grad))
		}
		return logits, sum, n, grads
	}
	pl, ps, pn, pg := run(packed)
	sl, ss, sn, sg := run(separate)
	const V = 256
	sameBits(t, "first example's logits", pl[:la*V], sl[:la*V])
	sameBits(t, "second example's logits", pl[la*V:(la+lb)*V], sl[packed.Seq*V:(packed.Seq+lb)*V])
	if ps != ss || pn != sn {
		t.Errorf("packed loss sum %v over %d targets, separate %v over %d", ps, pn, ss, sn)
	}
	for i := range pg {
		sameBits(t, fmt.Sprintf("gradient %d", i), pg[i], sg[i])
	}
	// And packing changes something: the same row unpacked differs.
	plain := packed
	plain.Segments, plain.Positions = nil, nil
	ul, _, _, _ := run(plain)
	if d, _ := maxAbs(ul[la*V:], pl[la*V:]); d == 0 {
		t.Error("the unpacked row gives the packed row's logits")
	}
}

// TestBatchLayout checks positions and document ids derived as transformers
// derives them, and the targets they leave.
func TestBatchLayout(t *testing.T) {
	b := Batch{Rows: 2, Seq: 6, IDs: make([]int32, 12), Positions: []int32{0, 1, 2, 0, 1, 0, 5, 6, 7, 8, 0, 1}}
	pos, segs := b.layout()
	if !slices.Equal(pos, b.Positions) || !slices.Equal(segs, []int32{0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 1, 1}) {
		t.Errorf("positions %v: layout %v, %v", b.Positions, pos, segs)
	}
	b.Positions, b.Segments = nil, []int32{3, 3, 4, 4, 4, 9, 0, 0, 0, 0, 0, 0}
	pos, segs = b.layout()
	if !slices.Equal(pos, []int32{0, 1, 0, 1, 2, 0, 0, 1, 2, 3, 4, 5}) || !slices.Equal(segs, b.Segments) {
		t.Errorf("segments %v: layout %v, %v", b.Segments, pos, segs)
	}
	b.Segments = []int32{1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2}
	if pos, segs = b.layout(); segs != nil || pos[7] != 1 {
		t.Errorf("one document per row: layout %v, %v", pos, segs)
	}
	b.Segments = []int32{0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0}
	b.Labels = []int32{5, 5, 5, 5, -100, 5, 5, 5, 5, 5, 5, 5}
	// Row 0 scores t=0 (label 1), not t=1 (across documents), t=2, not
	// t=3 (label −100), t=4; row 1 scores five positions.
	if n := b.Targets(); n != 3+5 {
		t.Errorf("targets %d, want 8", n)
	}
}

// TestBatchErrors checks that malformed packing is refused.
func TestBatchErrors(t *testing.T) {
	m := loadTiny(t, newCPU(), "tiny", Options{})
	ok := Batch{Rows: 1, Seq: 4, IDs: []int32{1, 2, 3, 4}, Labels: []int32{1, 2, 3, 4}}
	for name, edit := range map[string]func(b *Batch){
		"short positions":    func(b *Batch) { b.Positions = []int32{0, 1, 2} },
		"negative position":  func(b *Batch) { b.Positions = []int32{0, 1, -1, 0} },
		"huge position":      func(b *Batch) { b.Positions = []int32{0, 1, MaxPosition, 0} },
		"long segments":      func(b *Batch) { b.Segments = []int32{0, 0, 0, 0, 0} },
		"decreasing segment": func(b *Batch) { b.Segments = []int32{0, 1, 0, 1} },
	} {
		b := ok
		edit(&b)
		if _, _, err := m.Loss(b); !errors.Is(err, ErrBatch) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Positions beyond the sequence length grow the RoPE tables (one
	// document, given explicitly, with a gap in its positions).
	b := ok
	b.Positions, b.Segments = []int32{0, 1000, 1001, 1002}, []int32{0, 0, 0, 0}
	far, _, err := m.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	b.Positions = []int32{0, 1, 2, 3}
	near, _, err := m.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	b.Positions, b.Segments = nil, nil
	def, _, err := m.Loss(b)
	if err != nil || near != def || far == near {
		t.Errorf("losses: positions 1000.. %v, 0.. %v, default %v (%v)", far, near, def, err)
	}
}

// TestLossSkipsUnscored checks that lm_head runs only on positions with a
// target, and that the loss is what scoring every position gives.
func TestLossSkipsUnscored(t *testing.T) {
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	cb := &countingBackend{Backend: cpu.New(0), vocab: 256}
	m := loadTiny(t, cb, "tiny", Options{LossChunk: 5})
	if err := m.AddAdapters(noDropout("lora"), randomAdapters(1)); err != nil {
		t.Fatal(err)
	}
	sum, n, err := m.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	if cb.headRows != n || n != 24 {
		t.Errorf("lm_head computed %d rows for %d targets (want 24)", cb.headRows, n)
	}
	cb.headRows = 0
	m.ZeroGrad()
	if s, _, err := m.ForwardBackward(b, Step{}); err != nil || s != sum {
		t.Errorf("training loss %v (%v), evaluation %v", s, err, sum)
	}
	if cb.headRows != 2*n { // logits and their gradient
		t.Errorf("training: lm_head GEMM rows %d, want %d", cb.headRows, 2*n)
	}
	// Reference: score every position from the logits.
	logits := make([]float32, b.Rows*b.Seq*256)
	if err := m.Logits(b, logits); err != nil {
		t.Fatal(err)
	}
	be := cpu.New(1)
	tg, _ := be.Alloc(compute.I32, b.Rows*b.Seq)
	_, segs := b.layout()
	be.UploadInt32(tg, b.shifted(segs))
	loss, _ := be.Alloc(compute.F32, b.Rows*b.Seq)
	be.CrossEntropy(loss, nil, cpu.NewBuffer(logits), tg, b.Rows*b.Seq, 256, 0, 0)
	var want float64
	for _, v := range cpu.Float32s(loss) {
		want += float64(v)
	}
	if sum != want {
		t.Errorf("loss %v, scoring every position %v", sum, want)
	}
	// No target at all: nothing to compute.
	none := b
	none.Labels = make([]int32, len(b.Labels))
	for i := range none.Labels {
		none.Labels[i] = compute.IgnoreIndex
	}
	cb.headRows = 0
	if s, n, err := m.Loss(none); err != nil || s != 0 || n != 0 || cb.headRows != 0 {
		t.Errorf("no targets: loss %v over %d (%v), %d lm_head rows", s, n, err, cb.headRows)
	}
	m.ZeroGrad()
	if _, _, err := m.ForwardBackward(none, Step{Denominator: 3}); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		for _, v := range download(t, m.be, p.Grad) {
			if v != 0 {
				t.Fatalf("%s: gradient %v without targets", p.Name, v)
			}
		}
	}
}

// TestPackedThreads requires bit-identical results for a packed batch with
// any thread count, with and without checkpointing, with dropout.
func TestPackedThreads(t *testing.T) {
	packed, _, _, _ := packedPair(t, "positions")
	packed.Rows, packed.Seq = 2, packed.Seq/2 // two rows of 8: documents of 7+1 and 8
	var ref [][]float32
	var refSum float64
	for i, c := range []struct {
		threads int
		opt     Options
	}{{1, Options{}}, {2, Options{}}, {3, Options{GradCheckpoint: true, LossChunk: 2}}} {
		m := loadTiny(t, cpu.New(c.threads), "tiny", c.opt)
		if err := m.AddAdapters(gradSpecs("mixed"), randomAdapters(5)); err != nil {
			t.Fatal(err)
		}
		m.ZeroGrad()
		sum, _, err := m.ForwardBackward(packed, Step{Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		var gs [][]float32
		for _, p := range m.Params() {
			gs = append(gs, download(t, m.be, p.Grad))
		}
		if i == 0 {
			ref, refSum = gs, sum
			continue
		}
		if sum != refSum {
			t.Errorf("threads=%d: loss %v, want %v", c.threads, sum, refSum)
		}
		for j := range gs {
			sameBits(t, fmt.Sprintf("threads=%d gradient %d", c.threads, j), gs[j], ref[j])
		}
	}
}

// FuzzBatch feeds arbitrary positions, document ids and labels to the
// model: it must either refuse the batch with ErrBatch or compute a finite
// loss over Targets() positions.
func FuzzBatch(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0, 1}, []byte{0, 0, 0, 1, 1, 1}, uint8(3), uint8(0))
	f.Add([]byte{5, 6, 0, 9, 10, 11, 12, 0}, []byte{}, uint8(2), uint8(1))
	f.Add([]byte{}, []byte{2, 1, 0}, uint8(1), uint8(2))
	f.Add([]byte{255, 0, 255, 1}, []byte{0, 3, 3, 9}, uint8(2), uint8(3))
	m := loadTiny(f, newCPU(), "tiny", Options{})
	f.Fuzz(func(t *testing.T, pos, seg []byte, seq, flags uint8) {
		S := int(seq%12) + 1
		rows := max(len(pos), len(seg), 1)/S + 1
		n := rows * S
		b := Batch{Rows: rows, Seq: S, IDs: make([]int32, n), Labels: make([]int32, n)}
		for i := range n {
			b.IDs[i] = int32(i * 31 % 256)
			b.Labels[i] = int32(i * 7 % 256)
			if (i+int(flags))%3 == 0 {
				b.Labels[i] = compute.IgnoreIndex
			}
		}
		fill := func(src []byte, scale int32) []int32 {
			if len(src) == 0 {
				return nil
			}
			out := make([]int32, n)
			for i := range out {
				out[i] = int32(src[i%len(src)]) * scale
			}
			if flags&4 != 0 {
				out = out[:n-1]
			}
			return out
		}
		b.Positions = fill(pos, 1+int32(flags>>4)*1000)
		b.Segments = fill(seg, 1)
		sum, got, err := m.Loss(b)
		if err != nil {
			if !errors.Is(err, ErrBatch) {
				t.Fatalf("error %v is not ErrBatch", err)
			}
			return
		}
		if want := b.Targets(); got != want || sum != sum || sum < 0 {
			t.Fatalf("loss %v over %d targets, Targets() = %d", sum, got, want)
		}
	})
}
