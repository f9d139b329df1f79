package reconcile

import (
	"bufio"
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
// file while reading, whatever the number of divergences.
type spool struct {
	order  func(a, b *dtetype.Divergence) int
	limit  int
	buf    []dtetype.Divergence
	dir    string
	files  []string
	err    error
	closed bool
}

func newSpool(limit int, order func(a, b *dtetype.Divergence) int) *spool {
	if limit <= 0 {
		limit = DefaultSpill
	}
	return &spool{order: order, limit: limit}
}

// add appends d, spilling the buffer to a sorted file when it is full.
// A write error is kept and returned by finish.
func (s *spool) add(d dtetype.Divergence) {
	if s.err != nil {
		return // the run fails at finish; nothing more is kept
	}
	if len(s.buf) == s.limit {
		s.err = s.spill()
	}
	s.buf = append(s.buf, d)
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
	slices.SortFunc(s.buf, func(a, b dtetype.Divergence) int { return s.order(&a, &b) })
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
	slices.SortFunc(s.buf, func(a, b dtetype.Divergence) int { return s.order(&a, &b) })
	return nil
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
			for _, d := range s.buf {
				if !yield(d, nil) {
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
		heads.order = s.order
		heap.Init(&heads)
		for heads.Len() > 0 {
			h := heads.heads[0]
			if !yield(h.d, nil) {
				return
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
	d    dtetype.Divergence
	done bool
}

func (h *mergeHead) next() error {
	h.d = dtetype.Divergence{}
	err := h.dec.Decode(&h.d)
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
	heads []*mergeHead
	order func(a, b *dtetype.Divergence) int
}

func (m *mergeHeap) Len() int           { return len(m.heads) }
func (m *mergeHeap) Less(i, j int) bool { return m.order(&m.heads[i].d, &m.heads[j].d) < 0 }
func (m *mergeHeap) Swap(i, j int)      { m.heads[i], m.heads[j] = m.heads[j], m.heads[i] }
func (m *mergeHeap) Push(x any)         { m.heads = append(m.heads, x.(*mergeHead)) }
func (m *mergeHeap) Pop() any {
	h := m.heads[len(m.heads)-1]
	m.heads = m.heads[:len(m.heads)-1]
	return h
}
