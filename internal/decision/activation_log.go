package decision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/agentsigna/agentsigna/internal/store"
)

// bytesIntact says whether a stored bundle's bytes (read with them) hash
// to its digest: a bundle edited in place does not.
func bytesIntact(b store.PolicyBundle) bool {
	sum := sha256.Sum256(b.Bundle)
	return bytes.Equal(sum[:], b.Digest)
}

// recordsDigest says whether a record's SHA-256 (a policy record's
// bundle_sha256, a counterparty's bank_details_sealed_sha256) is digest:
// in standard base64, as this build writes it, or in hex, as builds
// before 2026-11-28 did.
func recordsDigest(recorded string, digest []byte) bool {
	return recorded == base64.StdEncoding.EncodeToString(digest) || recorded == hex.EncodeToString(digest)
}

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
	if !bytesIntact(stored) {
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
	wantKind, wantEvent := "policy.activate", "activate"
	if act.Rollback {
		wantKind, wantEvent = "policy.rollback", "rollback"
	}
	rec, err := loggedRecord[policyRecord](ctx, p.ledger, org, index, act.Revision, errActivationNotLogged, wantKind)
	switch {
	case err != nil:
		return err
	case rec.Seq != act.Seq:
		return fmt.Errorf("%w: entry %d records activation %d, not %d", errActivationNotLogged, index, rec.Seq, act.Seq)
	case rec.Event != wantEvent || rec.Revision != act.Revision || !recordsDigest(rec.BundleSHA, stored.Digest) ||
		rec.By != act.ActivatedBy || rec.ApprovedBy != act.ApprovedBy:
		return fmt.Errorf("%w: entry %d records another activation", errActivationNotLogged, index)
	}
	return nil
}
