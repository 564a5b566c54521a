// Package strictjson decodes untrusted JSON request bodies strictly.
//
// It owns the one definition of "acceptable JSON" for every handler of both
// planes: a single top-level object, valid UTF-8 with no lone surrogate
// escapes, bounded size and nesting depth, no duplicate object keys (compared
// exactly and case-insensitively, because encoding/json matches struct fields
// case-insensitively), no unknown struct fields and nothing after the value.
//
// It must never echo client data in an error: messages name the JSON path of
// the problem (keys truncated and escaped) and the byte offset, never a value.
// It has no dependency on HTTP so that it can be fuzzed on its own.
package strictjson
