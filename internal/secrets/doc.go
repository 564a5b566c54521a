// Package secrets owns the protection of secrets at rest (DESIGN §2): the
// 32-byte master key — read from AGENTSIGNA_MASTER_KEY or --master-key-file,
// or created as DATA_DIR/master.key by the embedded default on first run — and
// the AES-256-GCM envelope that encrypts private keys, TOTP secrets and
// counterparty bank details, bound by its associated data to the tenant,
// table, row and purpose it was written for.
//
// It must never log, print, return or put in an error any key material or
// plaintext: a [MasterKey] formats, marshals and logs as "[redacted]" however
// it is printed, and errors name a source, a path or a length, never content.
// It never reads the environment or flags itself (the caller passes values
// in, which keeps it testable) and never exits the process.
//
// An operator creates a key with, for example,
//
//	head -c 32 /dev/urandom | base64 > master.key && chmod 600 master.key
//
// Losing the master key loses every secret encrypted under it.
package secrets
