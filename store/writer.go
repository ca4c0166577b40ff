package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
)

// maxGroup bounds one commit group; big enough that under load durability
// costs one fsync per few hundred writes, small enough that no worker waits
// long for its acknowledgement.
const maxGroup = 512

type writeReq struct {
	fn   func(tx *sql.Tx) error
	done chan error
}

// WriterStats counts what the writer did: Writes acknowledged and Commits
// (group transactions, one fsync each) made for them. Writes/Commits is the
// mean group size, which shows whether durability is bounding throughput.
type WriterStats struct{ Writes, Commits int64 }

type writerStats struct{ writes, commits atomic.Int64 }

// WriterStats returns the counts since the ledger was opened.
func (s *Store) WriterStats() WriterStats {
	return WriterStats{Writes: s.stats.writes.Load(), Commits: s.stats.commits.Load()}
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("ledger is closed")

// write runs fn in the writer goroutine, inside a group transaction, and
// returns once the group is durably committed. ctx is checked only before
// the write is queued: once asked for, a write lands even when the run is
// being interrupted, or a request id could be lost.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.writes == nil {
		return fmt.Errorf("ledger %s is open read-only", s.path)
	}
	req := writeReq{fn: fn, done: make(chan error, 1)}
	// The read lock keeps Close from closing the channel during the send (a
	// send on a closed channel panics); the writer drains the channel until
	// it is closed, so the send never blocks for long.
	s.wmu.RLock()
	if s.closed {
		s.wmu.RUnlock()
		return ErrClosed
	}
	s.writes <- req
	s.wmu.RUnlock()
	return <-req.done
}

func (s *Store) writer() {
	defer s.wg.Done()
	group := make([]writeReq, 0, maxGroup)
	for req := range s.writes {
		group = append(group[:0], req)
	drain:
		for len(group) < maxGroup {
			select {
			case r, ok := <-s.writes:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		s.commit(group)
	}
}

// failGroup rolls back a group's transaction and fails every write in it.
func (s *Store) failGroup(tx *sql.Tx, group []writeReq, err error) {
	if tx != nil {
		tx.Rollback()
	}
	for _, r := range group {
		r.done <- err
	}
}

// commit runs a group in one transaction. Each write gets a savepoint so that
// one failing write (a state conflict, say) is rolled back alone and the rest
// of the group still commits.
func (s *Store) commit(group []writeReq) {
	errs := make([]error, len(group))
	tx, err := s.wdb.Begin()
	if err != nil {
		s.failGroup(nil, group, fmt.Errorf("ledger write: %w", err))
		return
	}
	for i, r := range group {
		if len(group) == 1 {
			errs[i] = r.fn(tx)
			continue
		}
		if _, err := tx.Exec("SAVEPOINT w"); err != nil {
			errs[i] = err
			continue
		}
		errs[i] = r.fn(tx)
		if errs[i] != nil {
			if _, err := tx.Exec("ROLLBACK TO w"); err != nil {
				// SQLite has rolled the whole transaction back (an I/O
				// error, a full disk): nothing of the group is saved, and
				// going on would commit the rest outside it, each write
				// told it failed.
				s.failGroup(tx, group, fmt.Errorf("ledger write: %w (then: %v)", errs[i], err))
				return
			}
		}
		if _, err := tx.Exec("RELEASE w"); err != nil {
			s.failGroup(tx, group, fmt.Errorf("ledger write: %w", err))
			return
		}
	}
	if len(group) == 1 && errs[0] != nil {
		tx.Rollback()
		group[0].done <- errs[0]
		return
	}
	if err := tx.Commit(); err != nil {
		s.failGroup(nil, group, fmt.Errorf("ledger commit: %w", err))
		return
	}
	s.stats.commits.Add(1)
	s.stats.writes.Add(int64(len(group)))
	for i, r := range group {
		r.done <- errs[i]
	}
}
