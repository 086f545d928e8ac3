//go:build unix

package audit

import (
	"io/fs"
	"syscall"
)

// linkCount is how many names the file has: 0 once it is deleted, even
// while it is still open.
func linkCount(fi fs.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true
}

// sameFile stats path and says whether it is the file fi describes, and
// its size. It is watch's usual case, once per record: the stat goes into
// a Stat_t on the stack, where os.Stat would allocate a FileInfo (only the
// path's C string is allocated, by the syscall package). ok is
// false when it cannot tell (an error, which watch then looks at itself).
func sameFile(path string, fi fs.FileInfo) (size int64, same, ok bool) {
	ours, isStat := fi.Sys().(*syscall.Stat_t)
	if !isStat {
		return 0, false, false
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, false, false
	}
	return st.Size, st.Dev == ours.Dev && st.Ino == ours.Ino, true
}
