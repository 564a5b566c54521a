package bundles

import (
	"errors"
	"fmt"
)

// Limits bound what one bundle may cost to read. Every field must be
// positive; DefaultLimits is what the server and the CLI use.
type Limits struct {
	// MaxCompressedBytes bounds the uploaded tar.gz.
	MaxCompressedBytes int64
	// MaxDecompressedBytes bounds everything gunzip produces, tar headers
	// and padding included: a decompression bomb stops here.
	MaxDecompressedBytes int64
	// MaxEntries bounds the number of tar entries, directories included.
	MaxEntries int
	// MaxPathLength bounds an entry's path, in bytes.
	MaxPathLength int
}

// DefaultLimits returns the limits of DESIGN §3 "Uploads are bounded": a
// policy repository of a few thousand rules and its data fits with room to
// spare, while a bomb or a data dump does not.
func DefaultLimits() Limits {
	return Limits{
		MaxCompressedBytes:   4 << 20,
		MaxDecompressedBytes: 16 << 20,
		MaxEntries:           1024,
		MaxPathLength:        256,
	}
}

func (l Limits) validate() error {
	if l.MaxCompressedBytes <= 0 || l.MaxDecompressedBytes <= 0 || l.MaxEntries <= 0 || l.MaxPathLength <= 0 {
		return fmt.Errorf("bundles: every limit must be positive: %+v", l)
	}
	return nil
}

// ReadOptions configure Read.
type ReadOptions struct {
	// Limits; the zero value means DefaultLimits().
	Limits Limits
	// Keys are the organization's registered verification keys. When there
	// is at least one, only bundles signed by one of them are accepted; when
	// there is none, only unsigned bundles are (a signature nobody can check
	// is refused rather than ignored, as OPA does).
	Keys []VerificationKey
}

func (o ReadOptions) withDefaults() (ReadOptions, error) {
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits()
	}
	if err := o.Limits.validate(); err != nil {
		return o, err
	}
	seen := map[string]bool{}
	for _, k := range o.Keys {
		if k.id == "" {
			return o, errors.New("bundles: a VerificationKey must come from ParseVerificationKey")
		}
		if seen[k.id] {
			return o, fmt.Errorf("%w: key id %q given twice", ErrVerificationKey, k.id)
		}
		seen[k.id] = true
	}
	return o, nil
}
