// Package bundles owns organizations' OPA bundles from the bytes uploaded to
// the prepared query that answers decisions (DESIGN §3 "Tenant bundle"):
//
//   - intake ([Read]): a tar.gz read from memory under [Limits], with every
//     path, entry type and file kind checked before anything is parsed; the
//     .manifest (revision, roots under "tenant"); the OPA signature
//     (.signatures.json) verified against the organization's registered
//     [VerificationKey]s; Rego parsed as v1 and data.json files placed, both
//     only under the bundle's roots;
//   - compilation ([Compile]) with [Capabilities] that leave out every
//     builtin reaching outside the process, into a [Policy] holding one
//     prepared query for (organization, revision), and the same for the
//     embedded base policy ([CompileBase]);
//   - evaluation ([Policy.Evaluate]) into a [Verdict], and the [Engine] that
//     swaps each organization's active Policy atomically;
//   - the revision order rules for upload and activation ([CheckUpload],
//     [CheckActivation]).
//
// It must never write a bundle's files to disk, fetch anything over the
// network, let a bundle's content decide where it is evaluated (an
// organization's modules and data never share a compiler or a store with the
// base policy or with another organization), or combine verdicts: the
// combination of base and tenant verdicts is internal/decision's, in Go. It
// keeps no state outside the values it returns, but for one process-wide
// change made when it is loaded: the OPA builtins one call of which could
// outgrow what a policy builds in its evaluation time check their operands
// first (bounded.go, boundedregex.go), for every evaluation in the process.
package bundles
