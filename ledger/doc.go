// Package ledger is the server side of AgentSigna's transparency logs: one
// append-only Merkle log per organization plus one for the platform plane.
// It sequences appends in group-committed batches, extends the RFC 6962
// tree with a compact range, signs a C2SP checkpoint per batch with the
// log's key, and serves what auditors need — checkpoints, inclusion and
// consistency proofs, C2SP tlog-tiles — from stored hashes.
//
// Formats are ledger/verify's: the writer produces leaves with
// verify.Entry, so what is written is what an auditor parses.
//
// It must never sign two checkpoints of one log that are not consistent:
// every batch extends the tree read, under the log's lock, from the newest
// stored checkpoint, in the same transaction that stores the new one. It
// never updates or deletes an entry; the store offers no way to.
package ledger
