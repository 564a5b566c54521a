package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/agentsigna/agentsigna/internal/osfile"
)

// DefaultKeyFileName is the key file the embedded default creates in the data dir.
const DefaultKeyFileName = "master.key"

// maxKeyFileSize bounds what is read from a key file: base64 of 32 bytes is
// 44 bytes; the rest is room for line endings and spaces.
const maxKeyFileSize = 1024

// LoadOptions says where the master key comes from. The caller fills it from
// the environment and the flags; this package reads neither itself.
type LoadOptions struct {
	// EnvValue is the value of AGENTSIGNA_MASTER_KEY, "" when unset.
	EnvValue string
	// KeyFile is --master-key-file: a file holding the base64 key, readable
	// by its owner only.
	KeyFile string
	// DataDir is --data-dir, given only for the embedded (SQLite) default:
	// when neither EnvValue nor KeyFile is set, the key is DataDir/master.key,
	// created on first run. Leave it empty with PostgreSQL, where a key must
	// be configured explicitly (replicas must share it).
	DataDir string
}

// Source says where a loaded master key came from.
type Source int

// Sources of a master key.
const (
	SourceEnv     Source = iota + 1 // AGENTSIGNA_MASTER_KEY
	SourceFile                      // --master-key-file
	SourceDataDir                   // DATA_DIR/master.key
)

func (s Source) String() string {
	switch s {
	case SourceEnv:
		return "AGENTSIGNA_MASTER_KEY"
	case SourceFile:
		return "--master-key-file"
	case SourceDataDir:
		return "data dir"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// LoadInfo tells the caller what LoadMasterKey did, so that it can log it.
// It holds no key material.
type LoadInfo struct {
	Source Source
	// Path is the key file read or created; empty for SourceEnv.
	Path string
	// Created is true only when this call generated a new key at Path. The
	// caller logs it once ("generated a new master key at …"): losing that
	// file loses every secret encrypted under it.
	Created bool
}

// LoadMasterKey returns the master key from, in order: opts.EnvValue, else
// opts.KeyFile, else opts.DataDir/master.key (created with mode 0600 on first
// run). Giving both EnvValue and KeyFile is ErrMasterKeyConflict; giving
// nothing is ErrNoMasterKey. A key file (given or created) that its group or
// others can read, that another user owns, or that is not a regular file,
// is ErrInsecureKeyFile.
// Errors name the source and path, never the key or the text it came from.
func LoadMasterKey(opts LoadOptions) (*MasterKey, LoadInfo, error) {
	switch {
	case opts.EnvValue != "" && opts.KeyFile != "":
		return nil, LoadInfo{}, ErrMasterKeyConflict
	case opts.EnvValue != "":
		k, err := ParseMasterKey(opts.EnvValue)
		if err != nil {
			return nil, LoadInfo{}, fmt.Errorf("AGENTSIGNA_MASTER_KEY: %w", err)
		}
		return k, LoadInfo{Source: SourceEnv}, nil
	case opts.KeyFile != "":
		k, err := readKeyFile(opts.KeyFile)
		if err != nil {
			return nil, LoadInfo{}, err
		}
		return k, LoadInfo{Source: SourceFile, Path: opts.KeyFile}, nil
	case opts.DataDir != "":
		return loadOrCreateDataDirKey(opts.DataDir)
	}
	return nil, LoadInfo{}, fmt.Errorf("%w: set AGENTSIGNA_MASTER_KEY or --master-key-file", ErrNoMasterKey)
}

// readKeyFile reads and checks a key file. The checks are made on the opened
// file, not the path, so that the file checked is the file read.
func readKeyFile(path string) (*MasterKey, error) {
	// Not a plain open: on a FIFO it would wait for a writer forever.
	f, err := osfile.OpenRegular(path)
	if errors.Is(err, osfile.ErrNotRegular) {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInsecureKeyFile, path)
	}
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err) // *PathError: op, path, errno
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	// Unix permission bits mean nothing on Windows, where ACLs decide.
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, readable beyond its owner; run chmod 600 %s",
			ErrInsecureKeyFile, path, perm, path)
	}
	// A key another user made is a key another user knows: one planted in
	// a data dir others may write in, or behind a symbolic link, would
	// have sealed everything under it (found by review). A root service
	// reads anyone's file, so the mode alone does not tell.
	if uid, other := osfile.OwnedByOther(fi); other {
		return nil, fmt.Errorf("%w: %s is owned by uid %d, not by this process's user (uid %d); its owner knows the key",
			ErrInsecureKeyFile, path, uid, os.Geteuid())
	}
	buf := make([]byte, maxKeyFileSize+1)
	defer clear(buf)
	n, err := io.ReadFull(f, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("master key file: %w", err)
	default:
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidMasterKey, path, maxKeyFileSize)
	}
	k, err := ParseMasterKey(string(buf[:n]))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return k, nil
}

// loadOrCreateDataDirKey reads dataDir/master.key, creating it first if it
// does not exist.
func loadOrCreateDataDirKey(dataDir string) (*MasterKey, LoadInfo, error) {
	path := filepath.Join(dataDir, DefaultKeyFileName)
	info := LoadInfo{Source: SourceDataDir, Path: path}
	k, err := readKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, info, err
	}
	created, err := createKeyFile(dataDir, path)
	if err != nil {
		return nil, LoadInfo{}, err
	}
	// Read back what is on disk, not what we generated: if another process
	// created the file first, its key is the one in use.
	k, err = readKeyFile(path)
	if err != nil {
		return nil, LoadInfo{}, err
	}
	info.Created = created
	return k, info, nil
}

// createKeyFile writes a new random key to path atomically: a temporary file
// (mode 0600) in the same directory is written and fsynced, then published
// under its final name and the directory fsynced, so that a crash leaves
// either no key file or a complete one — never a truncated key that would
// refuse to load, or a key that vanishes after secrets were sealed with it.
//
// It publishes with link(2), which fails if path exists, rather than
// rename(2), which would silently replace a key that a concurrent first run
// had just created (and maybe used). It returns false when that happened.
func createKeyFile(dataDir, path string) (created bool, err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return false, fmt.Errorf("creating data dir for the master key: %w", err)
	}
	k, err := GenerateMasterKey()
	if err != nil {
		return false, err
	}
	encoded := k.encode()
	defer clear(encoded)

	tmp, err := os.CreateTemp(dataDir, "."+DefaultKeyFileName+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("creating master key file: %w", err)
	}
	tmpPath := tmp.Name()
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmpPath) // after link, only the temporary name goes
	}()
	// CreateTemp already uses 0600; Chmod makes it independent of that detail.
	if err := tmp.Chmod(0o600); err != nil {
		return false, fmt.Errorf("creating master key file: %w", err)
	}
	if _, err := tmp.Write(encoded); err != nil {
		return false, fmt.Errorf("writing master key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return false, fmt.Errorf("syncing master key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("writing master key file: %w", err)
	}

	created = true
	if err := os.Link(tmpPath, path); errors.Is(err, fs.ErrExist) {
		created = false // lost a race with another first run: use its key
	} else if err != nil {
		// Some filesystems have no hard links. Fall back to rename after
		// checking again, accepting the tiny race window.
		if _, serr := os.Lstat(path); serr == nil {
			created = false
		} else if err := os.Rename(tmpPath, path); err != nil {
			return false, fmt.Errorf("publishing master key file: %w", err)
		}
	}
	if created {
		// Remove the temporary name before the directory sync so that both
		// changes are durable together.
		_ = os.Remove(tmpPath)
		if err := syncDir(dataDir); err != nil {
			return false, fmt.Errorf("syncing data dir after creating the master key: %w", err)
		}
	}
	return created, nil
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for sync there
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
