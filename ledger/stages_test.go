package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/ledger"
)

// Config.Stages times every append's wait for its batch and every batch's
// commit: as many "queued" as appends, as many "commit" as batches (each
// signs one checkpoint).
func TestStagesCountAppendsAndBatches(t *testing.T) {
	stages := ledger.NewStages()
	e := newEnv(t, "sqlite", ledger.Config{Stages: stages})
	before := stages.Snapshots()
	ctx := context.Background()
	const appenders, each = 16, 4
	var mu sync.Mutex
	batches := map[uint64]bool{}
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Go(func() {
			for i := range each {
				a, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test", Subject: fmt.Sprintf("%d/%d", g, i)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				batches[a.Checkpoint.Size] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	after := stages.Snapshots()
	queued, err := after[ledger.StageQueued].Sub(before[ledger.StageQueued])
	if err != nil {
		t.Fatal(err)
	}
	commit, err := after[ledger.StageCommit].Sub(before[ledger.StageCommit])
	if err != nil {
		t.Fatal(err)
	}
	if queued.Count() != appenders*each {
		t.Errorf("queued counted %d appends, want %d", queued.Count(), appenders*each)
	}
	if commit.Count() != uint64(len(batches)) {
		t.Errorf("commit counted %d batches; the appends saw %d checkpoints", commit.Count(), len(batches))
	}
	if commit.Sum <= 0 {
		t.Errorf("commits took %v in all", commit.Sum)
	}
}

// "queued" is the wait before the batch's transaction starts: an append
// lingering for company (MaxWait) waits that long.
func TestQueuedIncludesTheLinger(t *testing.T) {
	stages := ledger.NewStages()
	const linger = 300 * time.Millisecond
	e := newEnv(t, "sqlite", ledger.Config{Stages: stages, MaxWait: linger, MaxBatch: 64})
	before := stages.Snapshots()
	if _, err := e.ledger.Append(context.Background(), e.log, ledger.Entry{Kind: "test"}); err != nil {
		t.Fatal(err)
	}
	queued, err := stages.Snapshots()[ledger.StageQueued].Sub(before[ledger.StageQueued])
	if err != nil {
		t.Fatal(err)
	}
	// Within a bucket's width below: a quantile is the bucket's interpolation.
	if queued.Count() != 1 || queued.Sum < linger || queued.Quantile(1) < linger*100/119 {
		t.Errorf("queued: %d appends, %v in all, max about %v; want 1, at least %v", queued.Count(), queued.Sum, queued.Quantile(1), linger)
	}
}
