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
// record 1) and "seq" counts records from 1, across rotated files. (The
// Writer encodes a record by hand, without reflection, into exactly the
// bytes json.Marshal makes of it: logs written before and after verify
// alike.)
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
//
// # Records of many calls
//
// A record may stand for more than one call: the daemon counts calls
// refused again and again (the same denial, a caller over its rate limit)
// and writes their number in Record.Count, once a second, rather than a
// record each. A record without a count is of one call. The field was
// added to the format; records written before it are read and verified
// as they always were.
//
// # Gaps
//
// The Writer watches its file: before each record it checks that the
// file at the path is the one it has open and as long as it wrote it. A
// file deleted, replaced, truncated or appended to by someone else, and a
// write or fsync that fails, break the Writer: it takes no record (so the
// daemon issues no token), and the next record it writes is a KindGap
// record, the first of a new file. The gap record names the records that
// may be lost (FromSeq to ToSeq) and why (Cause, Reason), and what became
// of the file before (File: its rotated name, or where a file that was
// not the Writer's was kept; Size: the bytes the Writer had written):
//
//	{"seq":412,...,"kind":"gap","reason":"fsync after record 411 failed: input/output error","from_seq":398,"to_seq":411,"cause":"fsync","file":"audit.000000000001-000000000411.20261124T150405Z.log","prev":"5d41ab…","hash":"7c2e01…"}
//
// Seq numbers go on across a gap, and the gap record's prev is the hash of
// record ToSeq as the Writer made it: the chain is the one the Writer
// wrote, of which the files may hold less. Verify checks what can be
// checked: every record before FromSeq is there (those were on disk, or
// in the Writer's own hands), what is left of the range follows them and
// may end in damage the gap accounts for, nothing after ToSeq comes before
// the gap record, and the gap record follows record ToSeq by hash when
// that record is there. It reports each gap in VerifyResult.Gaps with what
// is lost, and any other break in the chain as a Problem, as before.
//
// After a failed fsync the kernel may have dropped the pages not yet on
// disk: the records since the last good fsync may be gone although they
// still read back, and a later fsync of that file proves nothing. So the
// Writer never writes to that file again; the gap names every record
// since the last good fsync. After a disk failure the Writer opens the new
// file by itself once the disk takes its synced gap record; after someone
// else's doing it writes the gap record at once and takes no record until
// it is opened again (a restart of the daemon), for whoever could delete
// or rewrite its file may have done more.
//
// A gap record is the Writer's word: someone able to write the files can
// forge one, as they can the whole chain. Checkpoints sealed with the
// audit key tell the Writer's records from anyone else's.
package audit
