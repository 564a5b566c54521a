package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// LogAccess decides whether the request may read what of a log, and which
// log: it returns what it grants, or an error (ErrUnauthorized,
// ErrForbidden…). It is the only authorization of the ledger read routes.
type LogAccess func(c *fiber.Ctx, what LogRead) (LogGrant, error)

// LogGrant is what LogAccess lets a request read: a log, and, for a reader
// who may see only some of its entries, which.
type LogGrant struct {
	Log ledger.Log
	// Entry, when set, limits a ReadEntry request to the entries it
	// permits. The route asks it of the entry the request names (by
	// index, or by leaf hash), after finding it and before answering,
	// and an error it returns (a 403 problem) is the answer. Nil
	// permits every entry.
	Entry func(c *fiber.Ctx, e verify.Entry, record []byte) error
}

// LogRead is what a ledger route reads of a log.
type LogRead int

const (
	// ReadHead is the log's head: its newest checkpoint, and consistency
	// proofs between signed tree sizes. They show no entry's bytes: sizes,
	// and the hashes of subtrees (some of one leaf: an entry's leaf hash,
	// which says nothing of its content) that tie one size to the other.
	ReadHead LogRead = iota
	// ReadEntry is one entry the request names: the entry, or its
	// inclusion proof (by index or leaf hash). LogGrant.Entry may limit
	// which.
	ReadEntry
	// ReadEntries is what shows entries, or finds them, many at a time:
	// tiles and exports.
	ReadEntries
)

// DenyLogAccess refuses every request: the ledger read side stays closed
// until an identity plane provides a LogAccess.
func DenyLogAccess(*fiber.Ctx, LogRead) (LogGrant, error) {
	return LogGrant{}, Problem(ErrUnauthorized, "Authentication is required to read the ledger.")
}

// MountLedger adds the read side of a transparency log (DESIGN §4) under
// /v1/ledger on a plane: checkpoint, tlog-tiles, entries, proofs.
func MountLedger(p *Plane, l *ledger.Ledger, access LogAccess) {
	h := &ledgerHandlers{l: l, access: access, log: p.log, writeTimeout: p.writeTimeout, exportTimeout: p.exportTimeout}
	g := p.app.Group("/v1/ledger")
	g.Get("/checkpoint", h.checkpoint)
	g.Get("/tile/*", h.tile)
	g.Get("/entries/:index", h.entry)
	g.Get("/proofs/inclusion", h.inclusion)
	g.Get("/proofs/consistency", h.consistency)
	g.Get("/export", h.export)
}

// MountLogKeys publishes each organization's log verifier key at
// /t/<slug>/.well-known/log-key: public, no authentication.
func MountLogKeys(p *Plane, l *ledger.Ledger, tenants store.TenantStore) {
	p.app.Get("/t/:slug/.well-known/log-key", func(c *fiber.Ctx) error {
		slug := c.Params("slug")
		ref, err := tenants.ResolveTenant(c.UserContext(), slug)
		if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) {
			return Problem(ErrNotFound, "No such organization.")
		}
		if err != nil {
			return err
		}
		vkey, err := l.VerifierKey(c.UserContext(), l.TenantLog(ref.ID, ref.Slug))
		if errors.Is(err, store.ErrNotFound) {
			return Problem(ErrNotFound, "This organization's log has no key yet.")
		}
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
		return c.SendString(vkey + "\n")
	})
}

// MountJWKS publishes each organization's receipt keys, current and retired,
// at /t/<slug>/.well-known/jwks.json: public, no authentication. Any JOSE
// library verifies a receipt with this set alone.
func MountJWKS(p *Plane, tenants store.TenantStore, keys *signing.Keyring) {
	p.app.Get("/t/:slug/.well-known/jwks.json", func(c *fiber.Ctx) error {
		ref, err := tenants.ResolveTenant(c.UserContext(), c.Params("slug"))
		if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) {
			return Problem(ErrNotFound, "No such organization.")
		}
		if err != nil {
			return err
		}
		var jwks []byte
		err = tenants.InTenantReadTx(c.UserContext(), ref.ID, func(ctx context.Context, tx store.TenantTx) error {
			jwks, err = keys.JWKS(ctx, tx.Keys(), ref.ID, store.PurposeReceipt)
			return err
		})
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, "application/jwk-set+json")
		return c.Send(jwks)
	})
}

type ledgerHandlers struct {
	l             *ledger.Ledger
	access        LogAccess
	log           *slog.Logger
	writeTimeout  time.Duration
	exportTimeout time.Duration
}

// ledgerError turns the ledger's refusals into problems a client can act on.
func ledgerError(err error) error {
	switch {
	case errors.Is(err, ledger.ErrNoCheckpoint):
		return Problem(ErrNotFound, "No signed checkpoint has that tree size.")
	case errors.Is(err, store.ErrNotFound):
		return Problem(ErrNotFound, "Not in this log.")
	case errors.Is(err, store.ErrInvalid):
		return Problem(ErrBadRequest, "The index or tree sizes are out of range.")
	}
	return err
}

func (h *ledgerHandlers) checkpoint(c *fiber.Ctx) error {
	g, err := h.access(c, ReadHead)
	if err != nil {
		return err
	}
	cp, err := h.l.LatestCheckpoint(c.UserContext(), g.Log)
	if errors.Is(err, store.ErrNotFound) {
		return Problem(ErrNotFound, "The log is empty: no checkpoint yet.")
	}
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	return c.Send(cp.Note)
}

// tile serves c2sp.org/tlog-tiles paths: tile/<L>/<N>[.p/<W>] and
// tile/entries/<N>[.p/<W>].
func (h *ledgerHandlers) tile(c *fiber.Ctx) error {
	g, err := h.access(c, ReadEntries)
	if err != nil {
		return err
	}
	level, index, width, err := verify.ParseTilePath("tile/" + c.Params("*"))
	if err != nil {
		return Problem(ErrNotFound, "Not a tlog-tiles path.")
	}
	var body []byte
	if level < 0 {
		body, err = h.l.EntryBundle(c.UserContext(), g.Log, index, width)
	} else {
		body, err = h.l.Tile(c.UserContext(), g.Log, uint(level), index, width)
	}
	if err != nil {
		return ledgerError(err)
	}
	c.Set(fiber.HeaderContentType, "application/octet-stream")
	if width == verify.FullTileWidth {
		// SPEC: c2sp.org/tlog-tiles — a full tile or entry bundle never
		// changes, so its caching SHOULD be long-lived; a partial one (and
		// the checkpoint) keeps the boundary's no-store. private: the
		// routes are authenticated, and which log a path names depends on
		// the caller, so a cache keeps it per credential.
		c.Set(fiber.HeaderCacheControl, immutableCacheControl)
		c.Vary(fiber.HeaderAuthorization, fiber.HeaderCookie)
	}
	return c.Send(body)
}

// immutableCacheControl is the Cache-Control of full tiles and entry
// bundles: a year, and never revalidated.
const immutableCacheControl = "private, max-age=31536000, immutable"

type entryJSON struct {
	Index    uint64         `json:"index"`
	Entry    []byte         `json:"entry"`     // base64 of the exact leaf bytes
	LeafHash []byte         `json:"leaf_hash"` // base64
	Record   jsontext.Value `json:"record"`
}

func (h *ledgerHandlers) entry(c *fiber.Ctx) error {
	g, err := h.access(c, ReadEntry)
	if err != nil {
		return err
	}
	index, ok := verify.ParseDecimal(c.Params("index"))
	if !ok {
		return Problem(ErrBadRequest, "The entry index must be a non-negative integer.")
	}
	e, err := h.l.Entry(c.UserContext(), g.Log, index)
	if err != nil {
		return ledgerError(err)
	}
	if err := g.permits(c, e); err != nil {
		return err
	}
	// The record is served byte for byte, so that its SHA-256 is the
	// entry's digest. Not c.JSON: encoding/json escapes <, > and & (and
	// U+2028/9) even inside a RawMessage, where a canonical record has
	// them bare. Nor json/v2 as it is: it rewrites a raw value's strings
	// in its own escaping, where a record encoding/json wrote has
	// \u003c. Preserved, with duplicates and invalid UTF-8 let through
	// as json.Valid lets them, a record only loses whitespace (there is
	// none: records are compact).
	b, err := jsonv2.Marshal(entryJSON{Index: e.Index, Entry: e.Entry, LeafHash: e.LeafHash, Record: recordJSON(e.Record)},
		jsontext.PreserveRawStrings(true), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

// permits asks the grant's Entry, if any, about an entry the request
// names.
func (g LogGrant) permits(c *fiber.Ctx, e store.LedgerEntry) error {
	if g.Entry == nil {
		return nil
	}
	parsed, err := verify.ParseEntry(e.Entry)
	if err != nil {
		return err
	}
	return g.Entry(c, parsed, e.Record)
}

// recordJSON embeds a JSON record as it is, and anything else (a compact
// JWS…) as a JSON string.
func recordJSON(rec []byte) jsontext.Value {
	if json.Valid(rec) {
		return rec
	}
	s, _ := json.Marshal(string(rec))
	return s
}

func (h *ledgerHandlers) inclusion(c *fiber.Ctx) error {
	g, err := h.access(c, ReadEntry)
	if err != nil {
		return err
	}
	treeSize, err := optionalUint(c, "tree_size", false)
	if err != nil {
		return err
	}
	var p ledger.InclusionProof
	switch idx, lh := c.Query("index"), c.Query("leaf_hash"); {
	case idx != "" && lh == "":
		index, ok := verify.ParseDecimal(idx)
		if !ok {
			return Problem(ErrBadRequest, "index must be a non-negative integer.")
		}
		p, err = h.l.InclusionProof(c.UserContext(), g.Log, index, treeSize)
		if err != nil {
			return ledgerError(err)
		}
	case lh != "" && idx == "":
		hash, err := base64.StdEncoding.DecodeString(lh)
		if err != nil || len(hash) != 32 {
			return Problem(ErrBadRequest, "leaf_hash must be the standard base64 of 32 bytes.")
		}
		p, err = h.l.InclusionProofByLeafHash(c.UserContext(), g.Log, hash, treeSize)
		if err != nil {
			return ledgerError(err)
		}
	default:
		return Problem(ErrBadRequest, "Give exactly one of index or leaf_hash.")
	}
	if g.Entry != nil {
		e, err := h.l.Entry(c.UserContext(), g.Log, p.Index)
		if err != nil {
			return ledgerError(err)
		}
		if err := g.permits(c, e); err != nil {
			return err
		}
	}
	return c.JSON(verify.InclusionProofJSON{
		Index: p.Index, TreeSize: p.Checkpoint.Size, LeafHash: p.LeafHash,
		Hashes: nonNilHashes(p.Hashes), Checkpoint: string(p.Checkpoint.Note),
	})
}

func (h *ledgerHandlers) consistency(c *fiber.Ctx) error {
	g, err := h.access(c, ReadHead)
	if err != nil {
		return err
	}
	first, ok1 := verify.ParseDecimal(c.Query("first"))
	second, ok2 := verify.ParseDecimal(c.Query("second"))
	if !ok1 || !ok2 {
		return Problem(ErrBadRequest, "first and second must be non-negative integers.")
	}
	p, err := h.l.ConsistencyProof(c.UserContext(), g.Log, first, second)
	if err != nil {
		return ledgerError(err)
	}
	return c.JSON(verify.ConsistencyProofJSON{
		First: p.First, Second: p.Second, Hashes: nonNilHashes(p.Hashes), Checkpoint: string(p.Checkpoint.Note),
	})
}

// optionalUint is an optional integer query parameter, 0 when absent. A
// size must be positive when given (allowZero false); an index may be 0.
func optionalUint(c *fiber.Ctx, name string, allowZero bool) (uint64, error) {
	v := c.Query(name)
	if v == "" {
		return 0, nil
	}
	// One spelling (verify.ParseDecimal): strconv.ParseUint alone took
	// "012" and "00", and a TrimSpace before it " 10" (found by review).
	n, ok := verify.ParseDecimal(v)
	if ok && (n > 0 || allowZero) {
		return n, nil
	}
	want := "a positive integer"
	if allowZero {
		want = "a non-negative integer"
	}
	return 0, Problem(ErrBadRequest, name+" must be "+want+".")
}

func nonNilHashes(h [][]byte) [][]byte {
	if h == nil {
		return [][]byte{}
	}
	return h
}

// export serves GET /v1/ledger/export?from=&to= (verify.ExportFormat).
func (h *ledgerHandlers) export(c *fiber.Ctx) error {
	g, err := h.access(c, ReadEntries)
	if err != nil {
		return err
	}
	// from is an index: 0, the first entry, is as good as absent.
	from, err := optionalUint(c, "from", true)
	if err != nil {
		return err
	}
	to, err := optionalUint(c, "to", false)
	if err != nil {
		return err
	}
	// ExportTimeout bounds the export as a whole, from here: the sizing
	// pass reads every entry of the range too.
	end := time.Now().Add(h.exportTimeout)
	// Checked and sized first, so that what can refuse the request is a
	// problem response; then streamed, a chunk of entries at a time, not
	// held in memory.
	prepCtx, cancelPrep := context.WithDeadline(c.UserContext(), end)
	x, err := h.l.PrepareExport(prepCtx, g.Log, from, to)
	// Past the deadline the store may say so in its own words (a
	// transaction database/sql rolled back): the context tells.
	timedOut := err != nil && errors.Is(prepCtx.Err(), context.DeadlineExceeded)
	cancelPrep()
	if timedOut {
		return Problem(ErrUnavailable, "The export did not finish within its time; ask for a shorter range (from, to).")
	}
	if err != nil {
		return ledgerError(err)
	}
	c.Set(fiber.HeaderContentType, "application/gzip")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="ledger-export.tar.gz"`)
	if c.Method() == fiber.MethodHead {
		return nil
	}
	// The archive is made while it is sent, so the connection's write
	// deadline cannot be the plane's WriteTimeout from the start: it
	// would cover reading and compressing the whole log. Instead each
	// piece handed to the connection gets WriteTimeout to leave, so a
	// client that stops reading is dropped after WriteTimeout, and the
	// whole export gets at most ExportTimeout. Best effort: a connection
	// that cannot take deadlines keeps the plane's WriteTimeout.
	//
	// The goroutine below holds the connection, never the request's
	// fasthttp context, which is reused once the response ends (a
	// deadline set on a closed connection does nothing). The first
	// deadline goes through the context, so that fasthttp leaves it be.
	_ = c.Context().SetWriteDeadline(earliest(time.Now().Add(h.writeTimeout), end))
	conn := c.Context().Conn()
	deadline := func() { _ = conn.SetWriteDeadline(earliest(time.Now().Add(h.writeTimeout), end)) }
	// A failure part-way closes the pipe with its error: fasthttp then
	// drops the connection without the chunked body's last chunk, so no
	// HTTP client takes the cut-short archive for a whole one. A client
	// that goes away closes the pipe from its end, and Write stops.
	pr, pw := io.Pipe()
	log := h.log.With(slog.String("request_id", RequestID(c)))
	go func() {
		// The write deadline stops the socket, not a store read that
		// hangs: the reads get the same bound.
		ctx, cancel := context.WithDeadline(context.Background(), end)
		defer cancel()
		// The deadline moves only before a write into the pipe, while the
		// response is still being sent, never after this goroutine closed
		// the pipe, when the connection may serve the next request. (A
		// write the client's end already closed moves the deadline of a
		// connection that is closing: harmless.)
		bw := bufio.NewWriterSize(paced{pw, deadline}, 64<<10)
		err := x.Write(ctx, bw)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		switch {
		case errors.Is(err, io.ErrClosedPipe):
			log.Info("ledger export not delivered: the connection closed first")
		case err != nil:
			log.Error("ledger export failed part-way; the connection was dropped", slog.Any("error", err))
		}
	}()
	c.Context().SetBodyStream(pr, -1)
	return nil
}

// paced calls before each write, to move the connection's write deadline.
type paced struct {
	w      io.Writer
	before func()
}

func (p paced) Write(b []byte) (int, error) {
	p.before()
	return p.w.Write(b)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
