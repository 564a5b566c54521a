// Package migrations embeds the schema of every store, one folder per
// dialect and database kind, and lists it in order. It runs nothing itself:
// each backend applies its own list inside its own transactions.
package migrations

import (
	"embed"
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
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(name, ".sql"), SQL: string(body)})
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
