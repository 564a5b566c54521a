// Package migrations embeds the schema of every store, one folder per
// dialect and database kind, and lists it in order. It runs nothing itself:
// each backend applies its own list inside its own transactions.
package migrations

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed sqlite/platform/*.sql sqlite/tenant/*.sql postgres/*.sql
var files embed.FS

// Set names one ordered list of migrations.
type Set string

const (
	SQLitePlatform Set = "sqlite/platform" // DATA_DIR/platform.db
	SQLiteTenant   Set = "sqlite/tenant"   // DATA_DIR/tenants/<id>.db
	Postgres       Set = "postgres"        // the one shared database
)

// Migration is one numbered schema step.
type Migration struct {
	Version int
	Name    string
	SQL     string
	// SHA256 is the hex SHA-256 of SQL. Stores record it with the version
	// they applied and refuse to open a database whose recorded digest
	// differs (CheckApplied): a migration is never edited once applied, so a
	// difference means the database was built by another schema — before
	// a release, an earlier build that changed a migration in place.
	SHA256 string
}

// List returns the migrations of a set in version order. File names are
// NNNN_name.sql; versions must start at 1 and have no gaps, so a missing
// or misnumbered file fails loudly at build-test time rather than in
// production.
func List(set Set) ([]Migration, error) {
	entries, err := fs.ReadDir(files, string(set))
	if err != nil {
		return nil, fmt.Errorf("migrations %s: %w", set, err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		if !ok || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migrations %s: bad file name %q", set, name)
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migrations %s: bad version in %q", set, name)
		}
		body, err := fs.ReadFile(files, path.Join(string(set), name))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(name, ".sql"), SQL: string(body), SHA256: digest(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations %s: expected version %d, found %q", set, i+1, m.Name)
		}
	}
	return out, nil
}

// Latest is the highest version of a set.
func Latest(set Set) (int, error) {
	ms, err := List(set)
	if err != nil {
		return 0, err
	}
	return len(ms), nil
}

// CheckApplied compares the digests a database recorded for the versions
// it applied (version -> digest; "" for a version recorded without one)
// with this binary's, and describes the first that differs; nil if none.
func CheckApplied(set Set, applied map[int]string) error {
	list, err := List(set)
	if err != nil {
		return err
	}
	for _, m := range list {
		got, ok := applied[m.Version]
		switch {
		case !ok:
			continue
		case got == "":
			return fmt.Errorf("migration %s/%s was applied without a digest: the database was built by an earlier "+
				"pre-release build, whose schema may differ", set, m.Name)
		case got != m.SHA256:
			return fmt.Errorf("migration %s/%s was applied with a different text (sha256 %q, this binary's %s): "+
				"the database was built by another schema — an earlier pre-release build, which changed it in place",
				set, m.Name, got, m.SHA256)
		}
	}
	return nil
}

// digest is a migration's SHA256. Line endings do not make another schema:
// a checkout that turned them into CRLF accepts what an LF build applied.
func digest(body []byte) string {
	sum := sha256.Sum256(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")))
	return hex.EncodeToString(sum[:])
}
