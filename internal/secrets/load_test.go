package secrets_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/agentsigna/agentsigna/internal/secrets"
)

// A fixed, recognisable key: its bytes and encodings must never show up in
// an error or a formatted value.
var (
	testKeyBytes = bytes.Repeat([]byte{0xa5, 0x3c}, secrets.KeySize/2)
	testKeyB64   = base64.StdEncoding.EncodeToString(testKeyBytes)
)

// sameKey reports whether a and b are the same key, without reading either:
// what one seals, the other opens.
func sameKey(t *testing.T, a, b *secrets.MasterKey) bool {
	t.Helper()
	ct, err := a.Seal([]byte("probe"), bind)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Open(ct, bind)
	return err == nil
}

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-independent
		t.Fatal(err)
	}
	return path
}

// assertNoKeyMaterial fails if s holds the input or anything close to it.
func assertNoKeyMaterial(t *testing.T, s string, input string) {
	t.Helper()
	for _, leak := range []string{input, strings.TrimSpace(input), testKeyB64, testKeyB64[:16], "a53ca53c", "165 60 165 60", "\xa5\x3c\xa5\x3c"} {
		if leak != "" && strings.Contains(s, leak) {
			t.Errorf("%q leaks %q", s, leak)
		}
	}
}

func TestLoadMasterKeyFromEnv(t *testing.T) {
	want, err := secrets.ParseMasterKey(testKeyB64)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{testKeyB64, testKeyB64 + "\n", "  " + testKeyB64 + "\r\n"} {
		k, info, err := secrets.LoadMasterKey(secrets.LoadOptions{EnvValue: v, DataDir: t.TempDir()})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if info != (secrets.LoadInfo{Source: secrets.SourceEnv}) {
			t.Errorf("info = %+v", info)
		}
		if !sameKey(t, k, want) {
			t.Error("env key differs from the parsed key")
		}
	}
}

func TestLoadMasterKeyEnvDoesNotTouchDataDir(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := secrets.LoadMasterKey(secrets.LoadOptions{EnvValue: testKeyB64, DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, secrets.DefaultKeyFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("master.key was created although the env gave a key: %v", err)
	}
}

func TestInvalidKeyIsRefusedWithoutEchoingIt(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(testKeyBytes[:min(n, len(testKeyBytes))]) }
	long := base64.StdEncoding.EncodeToString(append(bytes.Clone(testKeyBytes), 0xa5))
	for _, tc := range []struct {
		name, input string
	}{
		{"16 bytes", b64(16)},
		{"31 bytes", b64(31)},
		{"33 bytes", long},
		{"raw 32 bytes, not base64", string(testKeyBytes)},
		{"hex, not base64", strings.Repeat("a53c", 16)},
		{"base64url", strings.NewReplacer("+", "-", "/", "_").Replace(testKeyB64) + "-_"},
		{"unpadded", strings.TrimRight(testKeyB64, "=")},
		{"non-canonical padding bits", testKeyB64[:42] + "d="},
		{"two lines", testKeyB64[:20] + "\n" + testKeyB64[20:]},
		{"all zero", base64.StdEncoding.EncodeToString(make([]byte, 32))},
		{"garbage", "not a key! " + testKeyB64[:30]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := secrets.ParseMasterKey(tc.input); !errors.Is(err, secrets.ErrInvalidMasterKey) {
				t.Fatalf("ParseMasterKey: err = %v, want ErrInvalidMasterKey", err)
			}
			_, _, err := secrets.LoadMasterKey(secrets.LoadOptions{EnvValue: tc.input})
			if !errors.Is(err, secrets.ErrInvalidMasterKey) {
				t.Fatalf("env: err = %v, want ErrInvalidMasterKey", err)
			}
			if !strings.Contains(err.Error(), "AGENTSIGNA_MASTER_KEY") {
				t.Errorf("env error %q does not name its source", err)
			}
			assertNoKeyMaterial(t, err.Error(), tc.input)

			path := writeKeyFile(t, tc.input+"\n", 0o600)
			_, _, err = secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: path})
			if !errors.Is(err, secrets.ErrInvalidMasterKey) {
				t.Fatalf("file: err = %v, want ErrInvalidMasterKey", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("file error %q does not name the file", err)
			}
			assertNoKeyMaterial(t, err.Error(), tc.input)
		})
	}
}

func TestLoadMasterKeyFromFile(t *testing.T) {
	want, err := secrets.ParseMasterKey(testKeyB64)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		path := writeKeyFile(t, testKeyB64+"\n", mode)
		k, info, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: path, DataDir: t.TempDir()})
		if err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		if info != (secrets.LoadInfo{Source: secrets.SourceFile, Path: path}) {
			t.Errorf("info = %+v", info)
		}
		if !sameKey(t, k, want) {
			t.Error("file key differs")
		}
	}
}

func TestLoadMasterKeyRefusesInsecureFile(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o666, 0o610, 0o601, 0o620} {
		path := writeKeyFile(t, testKeyB64+"\n", mode)
		_, _, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: path})
		if !errors.Is(err, secrets.ErrInsecureKeyFile) {
			t.Fatalf("mode %04o: err = %v, want ErrInsecureKeyFile", mode, err)
		}
		msg := err.Error()
		for _, want := range []string{path, "chmod 600"} {
			if !strings.Contains(msg, want) {
				t.Errorf("mode %04o: error %q lacks %q", mode, msg, want)
			}
		}
		assertNoKeyMaterial(t, msg, testKeyB64)
	}
}

func TestLoadMasterKeyFileEdgeCases(t *testing.T) {
	t.Run("owner-only exec bit is fine", func(t *testing.T) {
		path := writeKeyFile(t, testKeyB64, 0o700)
		if _, _, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: path}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, _, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: filepath.Join(t.TempDir(), "nope")})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		_, _, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: dir})
		if !errors.Is(err, secrets.ErrInsecureKeyFile) {
			t.Fatalf("err = %v, want ErrInsecureKeyFile", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		path := writeKeyFile(t, testKeyB64+strings.Repeat(" ", 2000), 0o600)
		_, _, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: path})
		if !errors.Is(err, secrets.ErrInvalidMasterKey) {
			t.Fatalf("err = %v, want ErrInvalidMasterKey", err)
		}
		assertNoKeyMaterial(t, err.Error(), testKeyB64)
	})
	t.Run("symlink to a 0600 file", func(t *testing.T) {
		target := writeKeyFile(t, testKeyB64+"\n", 0o600)
		link := filepath.Join(t.TempDir(), "link.key")
		if err := os.Symlink(target, link); err != nil {
			t.Skip("no symlinks:", err)
		}
		if _, _, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: link}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLoadMasterKeyConflictAndAbsence(t *testing.T) {
	path := writeKeyFile(t, testKeyB64, 0o600)
	_, _, err := secrets.LoadMasterKey(secrets.LoadOptions{EnvValue: testKeyB64, KeyFile: path, DataDir: t.TempDir()})
	if !errors.Is(err, secrets.ErrMasterKeyConflict) {
		t.Fatalf("env and file: err = %v, want ErrMasterKeyConflict", err)
	}
	assertNoKeyMaterial(t, err.Error(), testKeyB64)

	_, _, err = secrets.LoadMasterKey(secrets.LoadOptions{})
	if !errors.Is(err, secrets.ErrNoMasterKey) {
		t.Fatalf("nothing: err = %v, want ErrNoMasterKey", err)
	}
}

func TestDataDirKeyIsCreatedOnceAndReused(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "agentsigna-data") // does not exist yet
	keyPath := filepath.Join(dataDir, secrets.DefaultKeyFileName)

	k1, info, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if want := (secrets.LoadInfo{Source: secrets.SourceDataDir, Path: keyPath, Created: true}); info != want {
		t.Fatalf("first load: info = %+v, want %+v", info, want)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("key file mode = %v, want -rw-------", fi.Mode())
	}
	if di, err := os.Stat(dataDir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("created data dir: %v, %v; want mode 0700", di.Mode(), err)
	}
	first, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 45 || first[44] != '\n' {
		t.Errorf("key file is %d bytes, want base64 of 32 bytes and a newline", len(first))
	}
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("data dir holds %v, want only %s (no temporary file left)", entries, secrets.DefaultKeyFileName)
	}

	k2, info, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if want := (secrets.LoadInfo{Source: secrets.SourceDataDir, Path: keyPath}); info != want {
		t.Fatalf("second load: info = %+v, want %+v", info, want)
	}
	if !sameKey(t, k1, k2) || !sameKey(t, k2, k1) {
		t.Fatal("second load returned another key")
	}
	second, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("key file was rewritten")
	}

	// The same file through --master-key-file is the same key.
	k3, _, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: keyPath})
	if err != nil {
		t.Fatal(err)
	}
	if !sameKey(t, k1, k3) {
		t.Fatal("--master-key-file on the generated file gives another key")
	}
}

func TestDataDirKeyDiffersPerDataDir(t *testing.T) {
	a, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if sameKey(t, a, b) {
		t.Fatal("two data dirs generated the same key")
	}
}

func TestDataDirRefusesInsecureExistingKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, secrets.DefaultKeyFileName)
	if err := os.WriteFile(path, []byte(testKeyB64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: dir})
	if !errors.Is(err, secrets.ErrInsecureKeyFile) {
		t.Fatalf("err = %v, want ErrInsecureKeyFile", err)
	}
	if got, _ := os.ReadFile(path); string(got) != testKeyB64+"\n" {
		t.Fatal("the refused key file was replaced")
	}
}

func TestDataDirConcurrentFirstRunsAgreeOnOneKey(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([]*secrets.MasterKey, n)
	created := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var info secrets.LoadInfo
			keys[i], info, errs[i] = secrets.LoadMasterKey(secrets.LoadOptions{DataDir: dir})
			created[i] = info.Created
		})
	}
	wg.Wait()
	nCreated := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if created[i] {
			nCreated++
		}
		if !sameKey(t, keys[0], keys[i]) {
			t.Fatalf("load %d got another key than load 0", i)
		}
	}
	if nCreated != 1 {
		t.Fatalf("%d loads report creating the key, want exactly 1", nCreated)
	}
}

func TestSourceString(t *testing.T) {
	for s, want := range map[secrets.Source]string{
		secrets.SourceEnv:     "AGENTSIGNA_MASTER_KEY",
		secrets.SourceFile:    "--master-key-file",
		secrets.SourceDataDir: "data dir",
		secrets.Source(0):     "Source(0)",
	} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(s), got, want)
		}
	}
}
