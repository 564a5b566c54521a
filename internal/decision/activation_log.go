package decision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// errActivationNotLogged: the newest activation row is not what the
// organization's log recorded. Someone who can write the store's rows
// (the organization's database role can insert into policy_activations
// and policy_bundles) could otherwise make any bundle active, unsigned and
// without a second person; the log's entries they cannot forge under a
// checkpoint the log key signed. It is errBundleDoesNotLoad: the
// organization's decisions fail until an activation the log records.
var errActivationNotLogged = fmt.Errorf("%w: its activation is not the one the organization's log records", errBundleDoesNotLoad)

// checkActivation checks the active revision's activation, act (the
// newest of all), against its ledger entry: an entry of kind
// policy.activate or policy.rollback, included under the newest
// checkpoint the log key signed, whose record names act's seq and
// revision, the stored bundle's SHA-256 (which the stored bytes must
// have) and act's two people. A seq is the row's key, so an entry names
// one row: a row planted to name an older activation's entry (a replay of
// an old approval) has another seq, and a planted row that names nothing
// true stops only itself (the next real activation takes the next seq).
//
// A row stored before rows named their entry is trusted as before only
// while no row of the organization names one: the binding starts with its
// first activation since.
func (p *Policies) checkActivation(ctx context.Context, org Organization, act store.PolicyActivation, all []store.PolicyActivation, stored store.PolicyBundle) error {
	sum := sha256.Sum256(stored.Bundle)
	if !bytes.Equal(sum[:], stored.Digest) {
		return fmt.Errorf("%w: the stored bytes of revision %q are not the bundle uploaded", errActivationNotLogged, stored.Revision)
	}
	if act.LedgerIndex == nil {
		for _, a := range all {
			if a.LedgerIndex != nil {
				return fmt.Errorf("%w: activation %d names no ledger entry, after activation %d, which does", errActivationNotLogged, act.Seq, a.Seq)
			}
		}
		return nil
	}
	index := *act.LedgerIndex
	entry, record, err := provenEntry(ctx, p.ledger, p.ledger.TenantLog(org.ID, org.Slug), index)
	if err != nil {
		return err
	}
	var rec policyRecord
	wantKind, wantEvent := "policy.activate", "activate"
	if act.Rollback {
		wantKind, wantEvent = "policy.rollback", "rollback"
	}
	switch {
	case entry.Kind != wantKind || entry.Subject != act.Revision:
		return fmt.Errorf("%w: entry %d is %s of %q", errActivationNotLogged, index, entry.Kind, entry.Subject)
	case json.Unmarshal(record, &rec) != nil:
		return fmt.Errorf("%w: entry %d's record does not decode", errActivationNotLogged, index)
	case rec.Seq != act.Seq:
		return fmt.Errorf("%w: entry %d records activation %d, not %d", errActivationNotLogged, index, rec.Seq, act.Seq)
	case rec.Event != wantEvent || rec.Revision != act.Revision || rec.BundleSHA != hex.EncodeToString(stored.Digest) ||
		rec.By != act.ActivatedBy || rec.ApprovedBy != act.ApprovedBy:
		return fmt.Errorf("%w: entry %d records another activation", errActivationNotLogged, index)
	}
	return nil
}

// provenEntry reads entry index of lg with its record, once the entry is
// proven included under the newest checkpoint the log key signed and the
// record is the one it digests.
func provenEntry(ctx context.Context, l *ledger.Ledger, lg ledger.Log, index uint64) (verify.Entry, []byte, error) {
	vkey, err := l.VerifierKey(ctx, lg)
	if err != nil {
		return verify.Entry{}, nil, err
	}
	p, err := l.EntryInclusionProof(ctx, lg, index, 0)
	switch {
	case errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) || errors.Is(err, ledger.ErrNoCheckpoint):
		return verify.Entry{}, nil, fmt.Errorf("%w: entry %d: %v", errActivationNotLogged, index, err)
	case err != nil:
		return verify.Entry{}, nil, err
	}
	// What an auditor runs: the note under the log key, the entry in its tree.
	cp, err := verify.VerifyCheckpoint(p.Checkpoint.Note, vkey)
	if err != nil {
		return verify.Entry{}, nil, fmt.Errorf("%w: the log's newest checkpoint does not verify: %v", errActivationNotLogged, err)
	}
	if err := verify.VerifyInclusion(cp, index, verify.LeafHash(p.Entry), p.Hashes); err != nil {
		return verify.Entry{}, nil, fmt.Errorf("%w: entry %d is not in the signed tree: %v", errActivationNotLogged, index, err)
	}
	entry, err := verify.ParseEntry(p.Entry)
	if err != nil || entry.Index != index {
		return verify.Entry{}, nil, fmt.Errorf("%w: entry %d does not parse as itself", errActivationNotLogged, index)
	}
	stored, err := l.Entry(ctx, lg, index)
	if err != nil {
		return verify.Entry{}, nil, err
	}
	if d := sha256.Sum256(stored.Record); !bytes.Equal(d[:], entry.Digest) {
		return verify.Entry{}, nil, fmt.Errorf("%w: entry %d's stored record is not the one it digests", errActivationNotLogged, index)
	}
	return entry, stored.Record, nil
}
