package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// syncBytes is what the disk floor writes before each fsync: about two of
// SQLite's 8 KiB pages. A decision's commit writes more (twenty pages, in
// a batch of one), but the tail of an fsync on a virtual disk is the
// host's flush more than the bytes.
const syncBytes = 16 << 10

// syncTarget is the floor the disk puts under a durable answer. Each
// request waits for a write and fsync that began after it arrived, as a
// decision waits for its log's next commit; requests that arrive while
// one runs share the next, as decisions share a batch. At the open loop's
// rate no p99 of the service is below this one's.
type syncTarget struct {
	f    *os.File
	buf  []byte
	next int64
	ask  chan chan error
	stop chan struct{}
	done chan struct{}
}

// newSyncTarget creates its file in dir (the harness's temporary
// directory, where it also puts the embedded store) and starts its
// writer.
func newSyncTarget(dir string) (*syncTarget, error) {
	f, err := os.OpenFile(filepath.Join(dir, "disk-floor"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("disk floor: %w", err)
	}
	buf := make([]byte, syncBytes)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	t := &syncTarget{f: f, buf: buf, ask: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{})}
	go t.write()
	return t, nil
}

func (t *syncTarget) Name() string {
	return fmt.Sprintf("disk: write %d KiB and fsync", syncBytes>>10)
}

func (t *syncTarget) Do(ctx context.Context) error {
	c := make(chan error, 1)
	select {
	case t.ask <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// write serves the requests waiting, all with one write and fsync, over
// the file's first MiB in turn (as a WAL is written again from its start
// once checkpointed), until Close.
func (t *syncTarget) write() {
	defer close(t.done)
	for {
		var waiting []chan error
		select {
		case c := <-t.ask:
			waiting = append(waiting, c)
		case <-t.stop:
			return
		}
		for more := true; more; {
			select {
			case c := <-t.ask:
				waiting = append(waiting, c)
			default:
				more = false
			}
		}
		_, err := t.f.WriteAt(t.buf, t.next%(1<<20))
		if err == nil {
			err = t.f.Sync()
		}
		t.next += syncBytes
		for _, c := range waiting {
			c <- err
		}
	}
}

// Close stops the writer and closes the file.
func (t *syncTarget) Close() error {
	close(t.stop)
	<-t.done
	return t.f.Close()
}
