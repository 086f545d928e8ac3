//go:build !unix

package audit

import "io/fs"

// linkCount is not known here: a file gone from its path is said to be
// "deleted or moved away".
func linkCount(fs.FileInfo) (uint64, bool) { return 0, false }

// sameFile cannot tell without os.Stat here: watch uses that.
func sameFile(string, fs.FileInfo) (int64, bool, bool) { return 0, false, false }
