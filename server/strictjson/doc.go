// Package strictjson decodes untrusted JSON request bodies strictly.
//
// It owns the one definition of "acceptable JSON" for every handler of both
// planes: a single top-level object, valid UTF-8 with no lone surrogate
// escapes, bounded size and nesting depth, no duplicate object keys (compared
// exactly and up to case), no unknown struct fields and nothing after the
// value. A member of an object that decodes into a struct must be named as
// one of its fields byte for byte: encoding/json would also fill the field
// "type" from "Type", "TYPE" or "ty\u017fe", a name a reader of the body that
// compares names exactly does not take for it. Keys repeated up to case are
// refused everywhere, params included, on purpose: the action travels on in
// receipts to readers that may fold names as encoding/json does, and "po"
// and "PO" would be one member to them. A token pre-pass checks the rules
// json/v2 does not (depth, keys repeated up to case); encoding/json/v2,
// which matches names exactly, decodes.
//
// It must never echo client data in an error: messages name the JSON path of
// the problem (keys truncated and escaped) and the byte offset, never a value.
// It has no dependency on HTTP so that it can be fuzzed on its own.
package strictjson
