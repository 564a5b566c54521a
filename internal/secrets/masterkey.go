package secrets

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// KeySize is the length of a master key in bytes.
const KeySize = 32

// Redacted is what a MasterKey prints as, in every format.
const Redacted = "[redacted]"

// Errors returned (wrapped) by this package. Their messages, and those of the
// errors wrapping them, never contain key material or the text it was decoded from.
var (
	// ErrNoMasterKey: no key was configured and there is no data dir to
	// create one in.
	ErrNoMasterKey = errors.New("no master key configured")
	// ErrMasterKeyConflict: both AGENTSIGNA_MASTER_KEY and --master-key-file were given.
	ErrMasterKeyConflict = errors.New("both AGENTSIGNA_MASTER_KEY and --master-key-file are set; give only one")
	// ErrInvalidMasterKey: the key is not standard base64 of exactly KeySize bytes.
	ErrInvalidMasterKey = errors.New("invalid master key")
	// ErrInsecureKeyFile: the key file can be read by its group or by others,
	// or is not a regular file.
	ErrInsecureKeyFile = errors.New("insecure master key file")
)

// MasterKey is the 32-byte master key. Its zero value is not usable; get one
// from [LoadMasterKey], [ParseMasterKey] or [GenerateMasterKey].
//
// A MasterKey never reveals its bytes: String, GoString, Format (every verb
// and flag), MarshalJSON, MarshalText and LogValue all give [Redacted], on the
// pointer and on the value. The bytes sit behind a pointer so that even a
// reflective printer that cannot call those methods (a MasterKey in an
// unexported struct field printed with %+v) shows an address, not the key.
// A MasterKey is safe for concurrent use.
type MasterKey struct {
	k *keyState
}

type keyState struct {
	secret [KeySize]byte

	mu    sync.Mutex
	aeads map[string]cipher.AEAD // per purpose, see aeadFor
}

// ParseMasterKey decodes a master key from standard base64 (with padding) of
// exactly KeySize bytes. Surrounding whitespace, such as the trailing newline
// of a file or of a secret mounted from a file, is ignored. The error never
// contains the input.
func ParseMasterKey(encoded string) (*MasterKey, error) {
	encoded = strings.TrimSpace(encoded)
	// Strict: no non-canonical padding bits, so one key has one spelling.
	// StdEncoding skips embedded \r and \n; a key is one line, refuse them.
	if strings.ContainsAny(encoded, "\r\n") {
		return nil, fmt.Errorf("%w: must be one line of standard base64", ErrInvalidMasterKey)
	}
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(encoded)))
	defer clear(buf)
	n, err := base64.StdEncoding.Strict().Decode(buf, []byte(encoded))
	if err != nil {
		// The decoder's error quotes an offset; ours quotes nothing.
		return nil, fmt.Errorf("%w: not standard base64 (RFC 4648 §4, with padding)", ErrInvalidMasterKey)
	}
	if n != KeySize {
		return nil, fmt.Errorf("%w: decodes to %d bytes, want %d", ErrInvalidMasterKey, n, KeySize)
	}
	return newMasterKey(buf[:n])
}

// GenerateMasterKey returns a new random master key. The key cannot be read
// back out: it is meant for tests of packages that encrypt, and for
// LoadMasterKey, which writes it to disk itself.
func GenerateMasterKey() (*MasterKey, error) {
	var b [KeySize]byte
	defer clear(b[:])
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return nil, fmt.Errorf("generating master key: %w", err)
	}
	return newMasterKey(b[:])
}

// newMasterKey copies b; the caller clears its own copy.
func newMasterKey(b []byte) (*MasterKey, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidMasterKey, len(b), KeySize)
	}
	// An all-zero key is a placeholder someone forgot to replace, not a key.
	if subtle.ConstantTimeCompare(b, make([]byte, KeySize)) == 1 {
		return nil, fmt.Errorf("%w: all bytes are zero", ErrInvalidMasterKey)
	}
	k := &MasterKey{k: &keyState{}}
	copy(k.k.secret[:], b)
	return k, nil
}

// String returns [Redacted].
func (MasterKey) String() string { return Redacted }

// GoString returns [Redacted], for %#v.
func (MasterKey) GoString() string { return Redacted }

// Format prints [Redacted] for every verb and flag (%v %+v %#v %s %q %x %X %d…).
func (MasterKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// MarshalJSON returns the JSON string "[redacted]".
func (MasterKey) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText returns [Redacted], for encoders that use encoding.TextMarshaler.
func (MasterKey) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue implements slog.LogValuer: a key logged by mistake shows [Redacted].
func (MasterKey) LogValue() slog.Value { return slog.StringValue(Redacted) }

var (
	_ fmt.Stringer   = MasterKey{}
	_ fmt.GoStringer = MasterKey{}
	_ fmt.Formatter  = MasterKey{}
	_ slog.LogValuer = MasterKey{}
)

// encode returns the key file form: base64 and a newline. Unexported: only
// LoadMasterKey writes a key, and only to a 0600 file. The caller clears it.
func (m *MasterKey) encode() []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(KeySize)+1)
	base64.StdEncoding.Encode(out, m.k.secret[:])
	out[len(out)-1] = '\n'
	return out
}
