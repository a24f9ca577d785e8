package tokenizer

import (
	"fmt"
	"sync"
	"unicode/utf8"
)

// tok is one token of a word: its id and the end of its bytes in the word.
type tok struct {
	id  int32
	end int32
}

type mergeVal struct {
	rank uint32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpe is the BPE model of tokenizer.json.
type bpe struct {
	vocab        map[string]int32
	merges       map[uint64]mergeVal
	byteLevel    bool       // words are raw bytes, mapped through byteToRune
	byteIDs      [256]int32 // byte-level: id of each byte's rune, -1 if absent
	rawVocab     map[string]int32
	unk          int32 // -1 if none
	fuseUnk      bool
	byteFallback bool
	fallbackIDs  [256]int32 // "<0xNN>" ids, valid when hasFallback
	hasFallback  bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix

	asciiIDs [utf8.RuneSelf]int32 // char-level: id of each ASCII char, -1 if absent

	mu    sync.RWMutex
	cache map[string][]tok
}

const (
	cacheMaxWords = 1 << 16
	cacheMaxLen   = 256
)

// sym is a symbol of a word being merged (a doubly linked list in a slice).
type sym struct {
	id         int32
	prev, next int32
	start, end int32
}

// tokenize appends the tokens of word w to dst.
func (m *bpe) tokenize(dst []tok, w string) []tok {
	if w == "" {
		return dst
	}
	if m.ignoreMerges {
		v := m.vocab
		if m.byteLevel {
			v = m.rawVocab
		}
		if id, ok := v[w]; ok {
			return append(dst, tok{id, int32(len(w))})
		}
	}
	cacheable := len(w) <= cacheMaxLen
	if cacheable {
		m.mu.RLock()
		hit, ok := m.cache[w]
		m.mu.RUnlock()
		if ok {
			return append(dst, hit...)
		}
	}
	n := len(dst)
	dst = m.merge(dst, w)
	if cacheable {
		val := append([]tok(nil), dst[n:]...)
		m.mu.Lock()
		if len(m.cache) < cacheMaxWords {
			m.cache[w] = val
		}
		m.mu.Unlock()
	}
	return dst
}

// initial builds the initial symbols of w.
func (m *bpe) initial(syms []sym, w string) []sym {
	add := func(id int32, a, b int) {
		syms = append(syms, sym{id: id, start: int32(a), end: int32(b)})
	}
	if m.byteLevel {
		for i := 0; i < len(w); i++ {
			if id := m.byteIDs[w[i]]; id >= 0 {
				add(id, i, i+1)
			} else if m.unk >= 0 {
				if k := len(syms); m.fuseUnk && k > 0 && syms[k-1].id == m.unk && int(syms[k-1].end) == i {
					syms[k-1].end = int32(i + 1)
				} else {
					add(m.unk, i, i+1)
				}
			}
		}
		return syms
	}
	unkStart, unkEnd := -1, -1
	flushUnk := func() {
		if unkStart >= 0 {
			add(m.unk, unkStart, unkEnd)
			unkStart = -1
		}
	}
	var buf []byte
	plainChars := m.prefix == "" && m.suffix == ""
	for i := 0; i < len(w); {
		if c := w[i]; c < utf8.RuneSelf && plainChars && m.asciiIDs[c] >= 0 {
			flushUnk()
			add(m.asciiIDs[c], i, i+1)
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(w[i:])
		s := w[i : i+size]
		if (i > 0 && m.prefix != "") || (i+size == len(w) && m.suffix != "") {
			buf = buf[:0]
			if i > 0 {
				buf = append(buf, m.prefix...)
			}
			buf = append(buf, s...)
			if i+size == len(w) {
				buf = append(buf, m.suffix...)
			}
			s = string(buf)
		}
		if id, ok := m.vocab[s]; ok {
			flushUnk()
			add(id, i, i+size)
		} else if m.byteFallback && m.hasFallback {
			// Each byte of the (prefixed) symbol becomes one <0xNN> token of length 1.
			for k := 0; k < len(s); k++ {
				add(m.fallbackIDs[s[k]], i+min(k, size-1), i+min(k, size-1)+1)
			}
		} else if m.unk >= 0 {
			switch {
			case unkStart >= 0 && m.fuseUnk:
				unkEnd = i + size
			default:
				flushUnk()
				unkStart, unkEnd = i, i+size
			}
		}
		i += size
	}
	flushUnk()
	return syms
}

// merge applies the merges to w by rank (lowest first, leftmost on ties).
func (m *bpe) merge(dst []tok, w string) []tok {
	var stack [32]sym
	syms := m.initial(stack[:0], w)
	n := len(syms)
	if n == 0 {
		return dst
	}
	if n <= 24 {
		syms = m.mergeSmall(syms)
		for _, s := range syms {
			dst = append(dst, tok{s.id, s.end})
		}
		return dst
	}
	for i := range syms {
		syms[i].prev = int32(i - 1)
		syms[i].next = int32(i + 1)
	}
	syms[n-1].next = -1
	h := mergeHeap{}
	for i := 0; i+1 < n; i++ {
		if mv, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h.push(heapItem{mv.rank, int32(i), mv.id})
		}
	}
	for len(h) > 0 {
		top := h.pop()
		l := &syms[top.pos]
		if l.end == l.start || l.next < 0 { // removed, or last
			continue
		}
		r := &syms[l.next]
		mv, ok := m.merges[pairKey(l.id, r.id)]
		if !ok || mv.id != top.id {
			continue
		}
		// Merge r into l.
		l.id = top.id
		l.end = r.end
		r.end = r.start // mark removed
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = top.pos
		}
		if l.prev >= 0 {
			p := &syms[l.prev]
			if mv, ok := m.merges[pairKey(p.id, l.id)]; ok {
				h.push(heapItem{mv.rank, l.prev, mv.id})
			}
		}
		if l.next >= 0 {
			if mv, ok := m.merges[pairKey(l.id, syms[l.next].id)]; ok {
				h.push(heapItem{mv.rank, top.pos, mv.id})
			}
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = append(dst, tok{syms[i].id, syms[i].end})
	}
	return dst
}

// mergeSmall is the quadratic merge loop for short words.
func (m *bpe) mergeSmall(syms []sym) []sym {
	for len(syms) > 1 {
		best, bestRank, bestID := -1, uint32(0), int32(0)
		for i := 0; i+1 < len(syms); i++ {
			if mv, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok && (best < 0 || mv.rank < bestRank) {
				best, bestRank, bestID = i, mv.rank, mv.id
			}
		}
		if best < 0 {
			break
		}
		syms[best].id = bestID
		syms[best].end = syms[best+1].end
		syms = append(syms[:best+1], syms[best+2:]...)
	}
	return syms
}

type heapItem struct {
	rank uint32
	pos  int32
	id   int32
}

// mergeHeap is a binary min-heap ordered by (rank, pos).
type mergeHeap []heapItem

func (h heapItem) less(o heapItem) bool {
	return h.rank < o.rank || (h.rank == o.rank && h.pos < o.pos)
}

func (h *mergeHeap) push(x heapItem) {
	*h = append(*h, x)
	a := *h
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !a[i].less(a[p]) {
			break
		}
		a[i], a[p] = a[p], a[i]
		i = p
	}
}

func (h *mergeHeap) pop() heapItem {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(a) {
			break
		}
		c := l
		if r := l + 1; r < len(a) && a[r].less(a[l]) {
			c = r
		}
		if !a[c].less(a[i]) {
			break
		}
		a[i], a[c] = a[c], a[i]
		i = c
	}
	*h = a
	return top
}

func fallbackName(b byte) string { return fmt.Sprintf("<0x%02X>", b) }
