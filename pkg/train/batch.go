package train

import (
	"cmp"
	"math/rand/v2"
	"slices"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/llama"
)

// Row is one row of a batch: one example, or several packed ones.
type Row struct {
	IDs    []int32
	Labels []int32
	// Segments holds the length of each example packed into the row, in
	// order; an unpacked row has one segment. Position ids restart at 0 at
	// each segment start (see Positions) and attention must not cross
	// segment boundaries.
	Segments []int
	// Lines are the data lines of the examples, in segment order.
	Lines []int
}

// Targets returns the number of scored positions of the row.
func (r *Row) Targets() int {
	e := Example{IDs: r.IDs, Labels: r.Labels}
	return e.Targets()
}

// Positions returns the position id of each token: 0, 1, ... restarting
// at each segment.
func (r *Row) Positions() []int32 {
	pos := make([]int32, 0, len(r.IDs))
	for _, n := range r.Segments {
		for i := range n {
			pos = append(pos, int32(i))
		}
	}
	return pos
}

// Rows makes one unpacked row per example.
func Rows(ex []Example) []Row {
	rows := make([]Row, len(ex))
	for i, e := range ex {
		rows[i] = Row{IDs: e.IDs, Labels: e.Labels, Segments: []int{len(e.IDs)}, Lines: []int{e.Line}}
	}
	return rows
}

// Pack packs examples into rows of at most seq tokens by best-fit
// decreasing (longest example first, each into the fullest row it fits,
// ties to the earliest), as TRL's "bfd" packing. Examples must already be
// truncated to seq. The first label of every segment after the first is
// masked, so that no position is scored against the next example's first
// token. Rows come out in order of their first example's position in ex.
func Pack(ex []Example, seq int) []Row {
	order := make([]int, len(ex))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(ex[b].IDs), len(ex[a].IDs)) })
	type bin struct {
		used  int
		items []int
	}
	var bins []*bin
	for _, i := range order {
		n := len(ex[i].IDs)
		var best *bin
		for _, b := range bins {
			if b.used+n <= seq && (best == nil || b.used > best.used) {
				best = b
			}
		}
		if best == nil {
			best = &bin{}
			bins = append(bins, best)
		}
		best.used += n
		best.items = append(best.items, i)
	}
	for _, b := range bins {
		slices.Sort(b.items) // file order within a row
	}
	slices.SortFunc(bins, func(a, b *bin) int { return cmp.Compare(a.items[0], b.items[0]) })
	rows := make([]Row, len(bins))
	for k, b := range bins {
		r := &rows[k]
		for j, i := range b.items {
			e := ex[i]
			start := len(r.IDs)
			r.IDs = append(r.IDs, e.IDs...)
			r.Labels = append(r.Labels, e.Labels...)
			if j > 0 {
				r.Labels[start] = compute.IgnoreIndex
			}
			r.Segments = append(r.Segments, len(e.IDs))
			r.Lines = append(r.Lines, e.Line)
		}
	}
	return rows
}

// permutation returns the order of rows in epoch e: file order, or a
// permutation drawn from (seed, epoch).
func permutation(n int, seed uint64, epoch int, shuffle bool) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	if shuffle {
		r := rand.New(rand.NewPCG(seed, 0x5eed_0000+uint64(epoch)))
		for i := n - 1; i > 0; i-- {
			j := r.IntN(i + 1)
			p[i], p[j] = p[j], p[i]
		}
	}
	return p
}

// makeBatch lays rows out as a right-padded llama.Batch of the longest
// row's length; padding has label −100 and token id pad. When a row holds
// packed examples, the batch carries document ids (llama.Batch.Segments):
// attention stays within an example and positions restart at each one;
// padding is a document of its own.
func makeBatch(rows []*Row, pad int32) llama.Batch {
	seq, packed := 0, false
	for _, r := range rows {
		seq = max(seq, len(r.IDs))
		packed = packed || len(r.Segments) > 1
	}
	n := len(rows) * seq
	b := llama.Batch{Rows: len(rows), Seq: seq, IDs: make([]int32, n), Labels: make([]int32, n)}
	if packed {
		b.Segments = make([]int32, n)
	}
	for i, r := range rows {
		ids, labels := b.IDs[i*seq:(i+1)*seq], b.Labels[i*seq:(i+1)*seq]
		copy(ids, r.IDs)
		copy(labels, r.Labels)
		for t := len(r.IDs); t < seq; t++ {
			ids[t], labels[t] = pad, compute.IgnoreIndex
		}
		if packed {
			segs, t := b.Segments[i*seq:(i+1)*seq], 0
			for k, l := range r.Segments {
				for range l {
					segs[t] = int32(k)
					t++
				}
			}
			for ; t < seq; t++ {
				segs[t] = int32(len(r.Segments))
			}
		}
	}
	return b
}

// tokenCount is the number of non-padding tokens of rows.
func tokenCount(rows []*Row) int {
	n := 0
	for _, r := range rows {
		n += len(r.IDs)
	}
	return n
}

// unshiftedTargets counts labels ≠ −100 including position 0: the rule of
// transformers before PR #46204 (spec §10.2).
func unshiftedTargets(rows []*Row) int {
	n := 0
	for _, r := range rows {
		for _, l := range r.Labels {
			if l != compute.IgnoreIndex {
				n++
			}
		}
	}
	return n
}
