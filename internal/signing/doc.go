// Package signing owns every signing key AgentSigna holds: it creates them,
// seals their private halves with the master key before they reach the
// store, and hands out signers. Today: each log's checkpoint key (a C2SP
// signed-note Ed25519 key); receipt and token keys follow.
//
// It must never return, log or store a private key in the clear, and never
// open a sealed key under another tenant's, table's or row's binding.
package signing
