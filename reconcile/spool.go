package reconcile

import (
	"bufio"
	"cmp"
	"container/heap"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/synapsedte/dtebridge/dtetype"
)

// DefaultSpill is how many divergences a run keeps in memory by default.
const DefaultSpill = 10000

// spool holds a run's divergences. Up to limit of them stay in memory;
// past that, each limit of them is sorted and written to a file of its
// own, and reading merges the files in order through a heap (an external
// merge sort): memory holds one chunk while writing, and a small buffer per
// file while reading, whatever the number of divergences. It keeps one
// divergence per key, phase and kind, the first added: a repeat of one in
// memory is dropped as it comes; each is numbered as it comes, the number
// breaks ties in the order, and reading the files skips a repeat of one
// written earlier. So a run needs no set of all it found to de-duplicate.
type spool struct {
	order func(a, b *dtetype.Divergence) int
	limit int
	buf   []entry
	// held identifies what buf holds.
	held   map[identity]bool
	seq    uint64
	dir    string
	files  []string
	err    error
	closed bool
}

// identity is what makes a divergence one: its key, phase and kind.
type identity struct {
	k     dtetype.Key
	phase dtetype.Phase
	kind  string
}

func identityOf(d *dtetype.Divergence) identity { return identity{d.Key, d.Phase, d.Kind} }

// entry is a divergence as spooled, numbered in the order it came.
type entry struct {
	D   dtetype.Divergence
	Seq uint64
}

func newSpool(limit int, order func(a, b *dtetype.Divergence) int) *spool {
	if limit <= 0 {
		limit = DefaultSpill
	}
	return &spool{order: order, limit: limit, held: map[identity]bool{}}
}

// compare orders entries by the divergence order, then as they came.
func (s *spool) compare(a, b *entry) int {
	if o := s.order(&a.D, &b.D); o != 0 {
		return o
	}
	return cmp.Compare(a.Seq, b.Seq)
}

// add appends d, spilling the buffer to a sorted file when it is full.
// A write error is kept and returned by finish.
func (s *spool) add(d dtetype.Divergence) {
	if s.err != nil {
		return // the run fails at finish; nothing more is kept
	}
	h := identityOf(&d)
	if s.held[h] {
		return // a repeat of one in memory
	}
	if len(s.buf) == s.limit {
		if s.err = s.spill(); s.err != nil {
			return
		}
	}
	s.seq++
	s.buf = append(s.buf, entry{D: d, Seq: s.seq})
	s.held[h] = true
}

// spill sorts the buffer and writes it to a new file.
func (s *spool) spill() error {
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "dtebridge-reconcile-")
		if err != nil {
			return fmt.Errorf("error spilling divergences to disk: %w", err)
		}
		s.dir = dir
		// A report dropped without Close has its files removed once the
		// garbage collector finds its spool unreachable.
		runtime.AddCleanup(s, func(dir string) { os.RemoveAll(dir) }, dir)
	}
	slices.SortFunc(s.buf, func(a, b entry) int { return s.compare(&a, &b) })
	path := filepath.Join(s.dir, fmt.Sprintf("%06d.gob", len(s.files)))
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("error spilling divergences to disk: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<16)
	enc := gob.NewEncoder(w)
	for i := range s.buf {
		if err := enc.Encode(&s.buf[i]); err != nil {
			f.Close()
			return fmt.Errorf("error spilling divergences to %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("error spilling divergences to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("error spilling divergences to %s: %w", path, err)
	}
	s.files = append(s.files, path)
	clear(s.held)
	clear(s.buf)
	s.buf = s.buf[:0]
	return nil
}

// finish sorts what is in memory; a spilled spool writes it out too, so
// that every divergence is in exactly one sorted file.
func (s *spool) finish() error {
	if s.err != nil {
		return s.err
	}
	if len(s.files) > 0 && len(s.buf) > 0 {
		return s.spill()
	}
	slices.SortFunc(s.buf, func(a, b entry) int { return s.compare(&a, &b) })
	return nil
}

// divergences takes the divergences held in memory, in order, from a
// spool that did not spill.
func (s *spool) divergences() []dtetype.Divergence {
	out := make([]dtetype.Divergence, len(s.buf))
	for i := range s.buf {
		out[i] = s.buf[i].D
	}
	s.buf = nil
	clear(s.held)
	return out
}

// spilled reports whether the divergences are on disk.
func (s *spool) spilled() bool { return len(s.files) > 0 }

// all yields every divergence in order: from memory, or merged from the
// files.
func (s *spool) all() iter.Seq2[dtetype.Divergence, error] {
	return func(yield func(dtetype.Divergence, error) bool) {
		if s.closed {
			yield(dtetype.Divergence{}, errors.New("reconcile: the report's spilled divergences were removed (Report.Close)"))
			return
		}
		if !s.spilled() {
			for i := range s.buf {
				if !yield(s.buf[i].D, nil) {
					return
				}
			}
			return
		}
		heads := mergeHeap{heads: make([]*mergeHead, 0, len(s.files))}
		defer func() {
			for _, h := range heads.heads {
				h.f.Close()
			}
		}()
		for _, path := range s.files {
			f, err := os.Open(path)
			if err != nil {
				yield(dtetype.Divergence{}, fmt.Errorf("error reading spilled divergences: %w", err))
				return
			}
			h := &mergeHead{dec: gob.NewDecoder(bufio.NewReaderSize(f, 16<<10)), f: f}
			if err := h.next(); err != nil {
				f.Close()
				yield(dtetype.Divergence{}, fmt.Errorf("error reading %s: %w", path, err))
				return
			}
			if h.done {
				f.Close()
				continue
			}
			heads.heads = append(heads.heads, h)
		}
		heads.compare = s.compare
		heap.Init(&heads)
		var last identity
		for n := 0; heads.Len() > 0; n++ {
			h := heads.heads[0]
			// The first of a key, phase and kind is kept; the files are
			// merged in order, so a repeat follows it.
			if id := identityOf(&h.e.D); n == 0 || id != last {
				last = id
				if !yield(h.e.D, nil) {
					return
				}
			}
			if err := h.next(); err != nil {
				yield(dtetype.Divergence{}, fmt.Errorf("error reading spilled divergences: %w", err))
				return
			}
			if h.done {
				heap.Pop(&heads)
				h.f.Close()
			} else {
				heap.Fix(&heads, 0)
			}
		}
	}
}

// mergeHead is one spilled file being merged, with its next divergence.
type mergeHead struct {
	dec  *gob.Decoder
	f    *os.File
	e    entry
	done bool
}

func (h *mergeHead) next() error {
	h.e = entry{}
	err := h.dec.Decode(&h.e)
	if errors.Is(err, io.EOF) {
		h.done = true
		return nil
	}
	return err
}

// close removes the files.
func (s *spool) close() error {
	if s.dir == "" {
		return nil
	}
	err := os.RemoveAll(s.dir)
	s.dir, s.files, s.closed = "", nil, true
	return err
}

// mergeHeap orders the files being merged by their next divergence.
type mergeHeap struct {
	heads   []*mergeHead
	compare func(a, b *entry) int
}

func (m *mergeHeap) Len() int           { return len(m.heads) }
func (m *mergeHeap) Less(i, j int) bool { return m.compare(&m.heads[i].e, &m.heads[j].e) < 0 }
func (m *mergeHeap) Swap(i, j int)      { m.heads[i], m.heads[j] = m.heads[j], m.heads[i] }
func (m *mergeHeap) Push(x any)         { m.heads = append(m.heads, x.(*mergeHead)) }
func (m *mergeHeap) Pop() any {
	h := m.heads[len(m.heads)-1]
	m.heads = m.heads[:len(m.heads)-1]
	return h
}
