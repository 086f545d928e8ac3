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

// cpuMeter reads the daemon's and this process's CPU time around a round.
type cpuMeter struct {
	pid            int
	daemon, client time.Duration
}

func (m *cpuMeter) start() error {
	var err error
	if m.daemon, err = processCPU(m.pid); err == nil {
		m.client, err = selfCPU()
	}
	return err
}

// stop returns the CPU time each used since start.
func (m *cpuMeter) stop() (daemon, client time.Duration, err error) {
	d, err := processCPU(m.pid)
	if err != nil {
		return 0, 0, err
	}
	c, err := selfCPU()
	if err != nil {
		return 0, 0, err
	}
	return d - m.daemon, c - m.client, nil
}
