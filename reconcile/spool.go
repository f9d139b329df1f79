package reconcile

import (
	"bufio"
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
// own, and reading merges the files in order, so that memory does not grow
// with the number of divergences (an external merge sort).
type spool struct {
	order func(a, b *dtetype.Divergence) int
	limit int
	buf   []dtetype.Divergence
	dir   string
	files []string
	n     int64
	err   error
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
	s.n++
	s.buf = append(s.buf, d)
	if len(s.buf) >= s.limit && s.err == nil {
		s.err = s.spill()
	}
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
		if !s.spilled() {
			for _, d := range s.buf {
				if !yield(d, nil) {
					return
				}
			}
			return
		}
		type head struct {
			dec  *gob.Decoder
			f    *os.File
			d    dtetype.Divergence
			done bool
		}
		heads := make([]*head, 0, len(s.files))
		defer func() {
			for _, h := range heads {
				h.f.Close()
			}
		}()
		next := func(h *head) error {
			h.d = dtetype.Divergence{}
			err := h.dec.Decode(&h.d)
			if errors.Is(err, io.EOF) {
				h.done = true
				return nil
			}
			return err
		}
		for _, path := range s.files {
			f, err := os.Open(path)
			if err != nil {
				yield(dtetype.Divergence{}, fmt.Errorf("error reading spilled divergences: %w", err))
				return
			}
			h := &head{dec: gob.NewDecoder(bufio.NewReaderSize(f, 1<<16)), f: f}
			heads = append(heads, h)
			if err := next(h); err != nil {
				yield(dtetype.Divergence{}, fmt.Errorf("error reading %s: %w", path, err))
				return
			}
		}
		for {
			var min *head
			for _, h := range heads {
				if !h.done && (min == nil || s.order(&h.d, &min.d) < 0) {
					min = h
				}
			}
			if min == nil {
				return
			}
			if !yield(min.d, nil) {
				return
			}
			if err := next(min); err != nil {
				yield(dtetype.Divergence{}, fmt.Errorf("error reading spilled divergences: %w", err))
				return
			}
		}
	}
}

// close removes the files.
func (s *spool) close() error {
	if s.dir == "" {
		return nil
	}
	err := os.RemoveAll(s.dir)
	s.dir, s.files = "", nil
	return err
}
