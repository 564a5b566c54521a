package ledger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/ledger"
)

// A reader that trusts a row only once its entry is proven (ProvenEntry)
// gets the entry and its record from an untouched log, ErrNotProven when
// the entry's rows were written behind the service's back, and
// ErrUntrustedHead when the log's newest checkpoint was.
func TestProvenEntry(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			setup := func(t *testing.T) *env {
				e := newEnv(t, kind, ledger.Config{})
				appendAll(t, e, []ledger.Entry{{Kind: "test.a", Subject: "s0", Record: []byte("r0")}, {Kind: "test.b", Subject: "s1", Record: []byte("r1")}})
				appendAll(t, e, []ledger.Entry{{Kind: "test.c", Subject: "s2", Record: []byte("r2")}})
				return e
			}
			refused := func(t *testing.T, e *env, index uint64, what string) {
				t.Helper()
				if _, rec, err := e.ledger.ProvenEntry(ctx, e.log, index); !errors.Is(err, ledger.ErrNotProven) {
					t.Fatalf("%s: ProvenEntry(%d) = %q, %v; want ErrNotProven", what, index, rec, err)
				}
			}

			t.Run("untouched", func(t *testing.T) {
				e := setup(t)
				for i, want := range []string{"r0", "r1", "r2"} {
					entry, rec, err := e.ledger.ProvenEntry(ctx, e.log, uint64(i))
					if err != nil {
						t.Fatalf("entry %d: %v", i, err)
					}
					if entry.Index != uint64(i) || entry.Subject != fmt.Sprintf("s%d", i) || string(rec) != want {
						t.Fatalf("entry %d: %+v with record %q", i, entry, rec)
					}
				}
				refused(t, e, 3, "an index past the tree")
				refused(t, e, 1<<63, "an index far past the tree")
				// ProvenRecord: the entry must be of a kind asked for, about
				// the subject asked for.
				if rec, err := e.ledger.ProvenRecord(ctx, e.log, 1, "s1", "test.a", "test.b"); err != nil || string(rec) != "r1" {
					t.Fatalf("ProvenRecord(1) = %q, %v", rec, err)
				}
				for _, tc := range []struct {
					subject string
					kinds   []string
				}{{"s1", []string{"test.a"}}, {"s0", []string{"test.b"}}, {"s1", nil}} {
					if rec, err := e.ledger.ProvenRecord(ctx, e.log, 1, tc.subject, tc.kinds...); !errors.Is(err, ledger.ErrNotProven) {
						t.Fatalf("ProvenRecord(1, %q, %v) = %q, %v; want ErrNotProven", tc.subject, tc.kinds, rec, err)
					}
				}
			})
			t.Run("record rewritten", func(t *testing.T) {
				e := setup(t)
				e.tamper(t, fmt.Sprintf(`UPDATE ledger_entries SET record = %s WHERE tenant_id = '%%[1]s' AND idx = 1`, blob(kind, []byte("forged"))))
				refused(t, e, 1, "a rewritten record")
			})
			t.Run("entry swapped for another", func(t *testing.T) {
				e := setup(t)
				zero, err := e.ledger.Entry(ctx, e.log, 0)
				if err != nil {
					t.Fatal(err)
				}
				// Entry 0's bytes and record stored at index 1: a record that
				// digests and an entry that parses, not the tree's leaf 1.
				e.tamper(t, fmt.Sprintf(`UPDATE ledger_entries SET entry = %s, record = %s WHERE tenant_id = '%%[1]s' AND idx = 1`,
					blob(kind, zero.Entry), blob(kind, zero.Record)))
				refused(t, e, 1, "another entry's bytes")
			})
			t.Run("checkpoint not the log key's", func(t *testing.T) {
				e := setup(t)
				cp, err := e.ledger.LatestCheckpoint(ctx, e.log)
				if err != nil {
					t.Fatal(err)
				}
				vkey, _ := e.ledger.VerifierKey(ctx, e.log)
				name := vkey[:bytes.IndexByte([]byte(vkey), '+')]
				skey, _, _ := note.GenerateKey(rand.Reader, name)
				signer, _ := note.NewSigner(skey)
				forged, _ := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: name, Size: cp.Size, Hash: cp.Root}.Marshal())}, signer)
				e.tamper(t, fmt.Sprintf(`UPDATE ledger_checkpoints SET note = %s WHERE tenant_id = '%%[1]s' AND size = %d`, blob(kind, forged), cp.Size))
				// The head is wrong, not the entry: an outage, not a refusal.
				if _, _, err := e.ledger.ProvenEntry(ctx, e.log, 2); !errors.Is(err, ledger.ErrUntrustedHead) || errors.Is(err, ledger.ErrNotProven) {
					t.Fatalf("under a note another key signed: %v, want ErrUntrustedHead", err)
				}
			})
		})
	}
}
