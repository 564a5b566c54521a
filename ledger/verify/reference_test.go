package verify

import (
	"crypto/sha256"
)

// A naive RFC 6962 §2.1 implementation, written from the RFC's recursive
// definitions and nothing else, to check the library-based code against.
// It works on leaf hashes: D[n] below is the list of leaf hashes.

// refLargestPow2Below is k, the largest power of two smaller than n (n > 1).
func refLargestPow2Below(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

func refNode(l, r []byte) []byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}

// refMTH is MTH(D[n]).
func refMTH(d [][]byte) []byte {
	switch len(d) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		return d[0]
	}
	k := refLargestPow2Below(len(d))
	return refNode(refMTH(d[:k]), refMTH(d[k:]))
}

// refPath is PATH(m, D[n]), the inclusion proof of leaf m (§2.1.1).
func refPath(m int, d [][]byte) [][]byte {
	if len(d) <= 1 {
		return [][]byte{}
	}
	k := refLargestPow2Below(len(d))
	if m < k {
		return append(refPath(m, d[:k]), refMTH(d[k:]))
	}
	return append(refPath(m-k, d[k:]), refMTH(d[:k]))
}

// refProof is PROOF(m, D[n]), the consistency proof from size m (§2.1.2).
func refProof(m int, d [][]byte) [][]byte {
	return refSubproof(m, d, true)
}

func refSubproof(m int, d [][]byte, b bool) [][]byte {
	n := len(d)
	if m == n {
		if b {
			return [][]byte{}
		}
		return [][]byte{refMTH(d)}
	}
	k := refLargestPow2Below(n)
	if m <= k {
		return append(refSubproof(m, d[:k], b), refMTH(d[k:]))
	}
	return append(refSubproof(m-k, d[k:], false), refMTH(d[:k]))
}
