package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is Linux's USER_HZ, the unit of /proc/PID/stat's times: 100
// on every architecture Go supports there.
const clockTick = 10 * time.Millisecond

// processCPU is the user and system CPU time the process pid has used.
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// selfCPU is the CPU time this process (load client and simulator) has used.
func selfCPU() (time.Duration, error) {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0, err
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano()), nil
}

// processWrites is how many write system calls (write, writev, sendmsg
// ...) the process pid has made: /proc/PID/io's syscw. Over a round, the
// daemon's per call tells how many records each audit write carried
// (group commit) beside its socket writes.
func processWrites(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no syscw line", pid)
}

// usage is what a round cost beside its calls: the CPU time the daemon
// and this process used, and the daemon's write system calls.
type usage struct {
	daemonCPU, clientCPU time.Duration
	daemonWrites         int64
}

// cpuMeter reads the daemon's and this process's usage around a round.
type cpuMeter struct {
	pid   int
	begin usage
}

func (m *cpuMeter) read() (usage, error) {
	var u usage
	var err error
	if u.daemonCPU, err = processCPU(m.pid); err != nil {
		return u, err
	}
	if u.daemonWrites, err = processWrites(m.pid); err != nil {
		return u, err
	}
	u.clientCPU, err = selfCPU()
	return u, err
}

func (m *cpuMeter) start() error {
	var err error
	m.begin, err = m.read()
	return err
}

// stop returns what was used since start.
func (m *cpuMeter) stop() (usage, error) {
	u, err := m.read()
	if err != nil {
		return usage{}, err
	}
	return usage{
		daemonCPU:    u.daemonCPU - m.begin.daemonCPU,
		clientCPU:    u.clientCPU - m.begin.clientCPU,
		daemonWrites: u.daemonWrites - m.begin.daemonWrites,
	}, nil
}
