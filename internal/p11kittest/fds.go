package p11kittest

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// OpenFDs lists the open file descriptors of this process with what each
// refers to ("socket:[1234]", a path…), from /proc/self/fd. A reconnecting
// client that forgets to close its old connection shows up here as one
// more socket per blip, long before it runs out of descriptors. The
// descriptor OpenFDs reads the directory with is left out.
//
// Counts are only comparable within one process and after a warm-up: the
// Go runtime and the PKCS#11 modules open descriptors of their own the first
// time they need them (the poller, /dev/urandom, a module's configuration).
func OpenFDs() (map[int]string, error) {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, fmt.Errorf("listing open file descriptors: %w", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing open file descriptors: %w", err)
	}
	own := int(dir.Fd())
	fds := make(map[int]string, len(names))
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == own {
			continue
		}
		// A descriptor closed since the listing has no link any more;
		// it is not open, so leave it out.
		if target, err := os.Readlink("/proc/self/fd/" + name); err == nil {
			fds[fd] = target
		}
	}
	return fds, nil
}

// DescribeFDs formats the descriptors in after that are not in before, or
// now refer to something else (a descriptor number is reused as soon as it
// is closed), for a leak's failure message.
func DescribeFDs(before, after map[int]string) string {
	var extra []int
	for fd, target := range after {
		if before[fd] != target {
			extra = append(extra, fd)
		}
	}
	if len(extra) == 0 {
		return "no new or changed descriptors"
	}
	sort.Ints(extra)
	parts := make([]string, len(extra))
	for i, fd := range extra {
		parts[i] = fmt.Sprintf("%d -> %s", fd, after[fd])
	}
	return "new or changed descriptors: " + strings.Join(parts, ", ")
}
