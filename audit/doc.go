// Package audit keeps Portvakt's audit log: one record for every policy
// decision, every signature by the HSM key and every outcome of a token
// request, so that a security team can show who used the key, when, and
// for what.
//
// # The file
//
// The log is a file of JSON lines, appended to and never rewritten. Each
// line is one Record, and each record carries the SHA-256 of the line
// before it, so the records form a hash chain:
//
//	{"seq":1,"time":"2026-11-24T15:04:05.123456789Z","kind":"start",...,"prev":"","hash":"9f86d0…"}
//	{"seq":2,"time":"2026-11-24T15:04:06.5Z","kind":"decision",...,"prev":"9f86d0…","hash":"3a7bd3…"}
//
// A line is made so that it can be checked byte for byte, never by
// marshalling the record again (which would tie verification to one
// version of encoding/json): let B be json.Marshal of the record, which
// ends in '}'. The record's hash is the lowercase hex SHA-256 of B, and the
// line is B without its final '}', then `,"hash":"`, the hash, `"}` and a
// newline. To check a line, replace its `,"hash":"<64 hex>"}` ending by
// '}', hash that, and compare. "prev" is the previous record's hash ("" for
// record 1) and "seq" counts records from 1, across rotated files.
//
// # What the chain proves, and what it cannot
//
// Verify finds a record that was edited, deleted, reordered or inserted,
// a rotated file that is absent, and a file cut in the middle of a line.
// An edit that is "fixed up" by hashing the edited line again is still
// found, at the next record, whose prev no longer matches.
//
// Records removed from the end of the newest file cannot be found from the
// files alone: what is left is a valid, shorter chain. Nor can a log that
// was rewritten as a whole, with a new chain, by someone able to write the
// file. Both are found by comparing with an anchor kept elsewhere: record
// VerifyResult.LastSeq and LastHash (or Writer.Stats) somewhere the daemon
// cannot write, such as a ticket, a metrics system or a write-once
// bucket, and later verify with VerifyOptions.ExpectHash and ExpectMinSeq
// (`portvakt audit verify --expect-last-hash --expect-min-seq`).
//
// # Rotation
//
// Writer rotates the file by size or age: the full file is renamed to
// <base>.<first seq>-<last seq>.<UTC time of rotation>.log beside it, such
// as audit.000000000001-000000004211.20261124T150405Z.log, and the chain
// continues in a new file under the original name. Sequence numbers are
// padded to 12 digits so that the names sort in the order of the records.
// A directory given to Verify or Query stands for the log in it: its
// active file and its rotated files.
package audit
