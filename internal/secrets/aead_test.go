package secrets_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/secrets"
)

func newKey(t testing.TB) *secrets.MasterKey {
	t.Helper()
	k, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var bind = secrets.Binding{
	Tenant:  "0b7e6a52-8d0f-4c57-9a0e-6f3e2b1d9c11",
	Table:   "signing_keys",
	Row:     "key_01",
	Purpose: "private_key",
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := newKey(t)
	for _, tc := range []struct {
		name      string
		plaintext []byte
	}{
		{"empty", []byte{}},
		{"nil", nil},
		{"short", []byte("JBSWY3DPEHPK3PXP")},
		{"binary", []byte{0, 1, 2, 0xff, 0}},
		{"64KiB", bytes.Repeat([]byte{0x5a}, 64<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, err := k.Seal(tc.plaintext, bind)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(ct), len(tc.plaintext)+secrets.Overhead; got != want {
				t.Errorf("len(ciphertext) = %d, want %d", got, want)
			}
			if ct[0] != 0x01 {
				t.Errorf("version byte = %#x, want 0x01", ct[0])
			}
			if len(tc.plaintext) >= 8 && bytes.Contains(ct, tc.plaintext[:8]) {
				t.Error("ciphertext contains the plaintext")
			}
			got, err := k.Open(ct, bind)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.plaintext) || got == nil {
				t.Errorf("Open = %q (nil=%v), want %q", got, got == nil, tc.plaintext)
			}
		})
	}
}

func TestSealDoesNotAliasPlaintext(t *testing.T) {
	k := newKey(t)
	pt := []byte("secret")
	ct, err := k.Seal(pt, bind)
	if err != nil {
		t.Fatal(err)
	}
	if string(pt) != "secret" {
		t.Fatalf("Seal modified its input: %q", pt)
	}
	got, _ := k.Open(ct, bind)
	got[0] = 'X'
	if again, err := k.Open(ct, bind); err != nil || string(again) != "secret" {
		t.Fatalf("Open aliased the ciphertext: %q, %v", again, err)
	}
}

func TestOpenRejectsCiphertextMovedElsewhere(t *testing.T) {
	k := newKey(t)
	ct, err := k.Seal([]byte("DE89 3704 0044 0532 0130 00"), bind)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		to   func(b *secrets.Binding)
	}{
		{"other tenant", func(b *secrets.Binding) { b.Tenant = "5f1c2d3e-0000-4000-8000-000000000000" }},
		{"platform plane", func(b *secrets.Binding) { b.Tenant = "" }},
		{"other table", func(b *secrets.Binding) { b.Table = "agents" }},
		{"other row", func(b *secrets.Binding) { b.Row = "key_02" }},
		{"other purpose", func(b *secrets.Binding) { b.Purpose = "totp_secret" }},
		{"case of tenant", func(b *secrets.Binding) { b.Tenant = strings.ToUpper(b.Tenant) }},
		{"trailing space in row", func(b *secrets.Binding) { b.Row += " " }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := bind
			tc.to(&other)
			if _, err := k.Open(ct, other); !errors.Is(err, secrets.ErrDecrypt) {
				t.Fatalf("Open under %+v: err = %v, want ErrDecrypt", other, err)
			}
		})
	}
	if _, err := newKey(t).Open(ct, bind); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("Open with another master key: err = %v, want ErrDecrypt", err)
	}
}

// Bindings that a naive separator-joined encoding would make equal must not
// open each other's ciphertexts.
func TestBindingEncodingIsUnambiguous(t *testing.T) {
	k := newKey(t)
	for _, tc := range []struct {
		name string
		a, b secrets.Binding
	}{
		{
			"separator injected across tenant and row",
			secrets.Binding{Tenant: "a|b", Table: "t", Row: "c", Purpose: "p"},
			secrets.Binding{Tenant: "a", Table: "t", Row: "b|c", Purpose: "p"},
		},
		{
			"separator injected across tenant and table",
			secrets.Binding{Tenant: "a|b", Table: "c", Row: "r", Purpose: "p"},
			secrets.Binding{Tenant: "a", Table: "b|c", Row: "r", Purpose: "p"},
		},
		{
			"separator injected across table and row",
			secrets.Binding{Tenant: "t", Table: "x|y", Row: "z", Purpose: "p"},
			secrets.Binding{Tenant: "t", Table: "x", Row: "y|z", Purpose: "p"},
		},
		{
			"plain concatenation across tenant and table",
			secrets.Binding{Tenant: "ab", Table: "c", Row: "r", Purpose: "p"},
			secrets.Binding{Tenant: "a", Table: "bc", Row: "r", Purpose: "p"},
		},
		{
			"NUL separator injected across row and purpose",
			secrets.Binding{Tenant: "t", Table: "x", Row: "r\x00p", Purpose: "q"},
			secrets.Binding{Tenant: "t", Table: "x", Row: "r", Purpose: "p\x00q"},
		},
		{
			"forged length prefix inside a field",
			secrets.Binding{Tenant: "", Table: "x\x00\x00\x00\x01y", Row: "r", Purpose: "p"},
			secrets.Binding{Tenant: "x", Table: "y", Row: "r", Purpose: "p"},
		},
		{
			"empty tenant against fields shifted left",
			secrets.Binding{Tenant: "", Table: "t", Row: "r", Purpose: "p"},
			secrets.Binding{Tenant: "t", Table: "r", Row: "p", Purpose: "p"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, dir := range [][2]secrets.Binding{{tc.a, tc.b}, {tc.b, tc.a}} {
				ct, err := k.Seal([]byte("v"), dir[0])
				if err != nil {
					t.Fatal(err)
				}
				if _, err := k.Open(ct, dir[1]); !errors.Is(err, secrets.ErrDecrypt) {
					t.Fatalf("sealed under %q, opened under %q: err = %v, want ErrDecrypt", dir[0], dir[1], err)
				}
			}
		})
	}
}

func TestOpenRejectsEveryBitFlip(t *testing.T) {
	k := newKey(t)
	ct, err := k.Seal([]byte("totp secret"), bind)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(ct) * 8 {
		mut := bytes.Clone(ct)
		mut[i/8] ^= 1 << (i % 8)
		if _, err := k.Open(mut, bind); !errors.Is(err, secrets.ErrDecrypt) {
			t.Fatalf("bit %d flipped: err = %v, want ErrDecrypt", i, err)
		}
	}
}

func TestOpenRejectsMalformedInput(t *testing.T) {
	k := newKey(t)
	ct, err := k.Seal([]byte("x"), bind)
	if err != nil {
		t.Fatal(err)
	}
	withVersion := func(v byte) []byte { c := bytes.Clone(ct); c[0] = v; return c }
	cases := map[string][]byte{
		"nil":             nil,
		"empty":           {},
		"version only":    {0x01},
		"one short":       make([]byte, secrets.Overhead-1),
		"zeros":           make([]byte, secrets.Overhead+8),
		"version 0":       withVersion(0x00),
		"version 2":       withVersion(0x02),
		"version 0xff":    withVersion(0xff),
		"appended byte":   append(bytes.Clone(ct), 0),
		"duplicated body": append(bytes.Clone(ct), ct[1:]...),
	}
	for n := range len(ct) {
		cases[fmt.Sprintf("truncated to %d bytes", n)] = ct[:n]
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := k.Open(in, bind)
			if !errors.Is(err, secrets.ErrDecrypt) || got != nil {
				t.Fatalf("Open = %q, %v; want nil, ErrDecrypt", got, err)
			}
			if err.Error() != secrets.ErrDecrypt.Error() {
				t.Errorf("error %q says more than ErrDecrypt", err)
			}
		})
	}
}

func TestSealIsRandomized(t *testing.T) {
	k := newKey(t)
	a, err := k.Seal([]byte("same"), bind)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal([]byte("same"), bind)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are equal")
	}
	if bytes.Equal(a[1:13], b[1:13]) {
		t.Fatal("two seals reuse a nonce")
	}
}

func TestBindingValidation(t *testing.T) {
	k := newKey(t)
	ct, err := k.Seal([]byte("x"), secrets.Binding{Table: "platform_admins", Row: "1", Purpose: "totp_secret"})
	if err != nil {
		t.Fatalf("empty Tenant (platform plane) must be allowed: %v", err)
	}
	if _, err := k.Open(ct, secrets.Binding{Table: "platform_admins", Row: "1", Purpose: "totp_secret"}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []secrets.Binding{
		{Tenant: "t", Row: "r", Purpose: "p"},
		{Tenant: "t", Table: "x", Purpose: "p"},
		{Tenant: "t", Table: "x", Row: "r"},
		{},
	} {
		if _, err := k.Seal([]byte("x"), b); !errors.Is(err, secrets.ErrInvalidBinding) {
			t.Errorf("Seal(%+v): err = %v, want ErrInvalidBinding", b, err)
		}
		if _, err := k.Open(ct, b); !errors.Is(err, secrets.ErrInvalidBinding) {
			t.Errorf("Open(%+v): err = %v, want ErrInvalidBinding", b, err)
		}
	}
}

func TestUninitialisedKeyFailsWithoutPanic(t *testing.T) {
	var zero secrets.MasterKey
	if _, err := zero.Seal([]byte("x"), bind); err == nil {
		t.Fatal("Seal with a zero MasterKey succeeded")
	}
	var nilKey *secrets.MasterKey
	if _, err := nilKey.Open(make([]byte, 64), bind); err == nil {
		t.Fatal("Open with a nil MasterKey succeeded")
	}
}

func TestConcurrentUse(t *testing.T) {
	k := newKey(t)
	purposes := []string{"private_key", "totp_secret", "bank_details"}
	done := make(chan error)
	for i := range 8 {
		go func() {
			b := bind
			b.Purpose = purposes[i%len(purposes)]
			for range 50 {
				ct, err := k.Seal([]byte("v"), b)
				if err == nil {
					_, err = k.Open(ct, b)
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzOpen(f *testing.F) {
	k, err := secrets.GenerateMasterKey()
	if err != nil {
		f.Fatal(err)
	}
	valid, err := k.Seal([]byte("seed"), bind)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, bind.Tenant, bind.Row)
	f.Add([]byte{}, "", "")
	f.Add([]byte{0x01}, "t", "r")
	f.Add(make([]byte, secrets.Overhead), "t", "r")
	f.Fuzz(func(t *testing.T, ct []byte, tenant, row string) {
		b := secrets.Binding{Tenant: tenant, Table: bind.Table, Row: row, Purpose: bind.Purpose}
		pt, err := k.Open(ct, b)
		if err == nil {
			// Only the seed itself, under its own binding, may open.
			if b != bind || !bytes.Equal(ct, valid) || string(pt) != "seed" {
				t.Fatalf("forged ciphertext opened: %x under %+v", ct, b)
			}
			return
		}
		if !errors.Is(err, secrets.ErrDecrypt) && !errors.Is(err, secrets.ErrInvalidBinding) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
