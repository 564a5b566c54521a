package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// cpuClock reads the processor time (user and system) some processes have
// used so far. Machines whose speed drifts change every rate the harness
// measures; the time each server spends per request drifts much less, and
// says where a difference in rate comes from.
type cpuClock func() (time.Duration, error)

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// processCPU is the clock of one process (Linux /proc).
func processCPU(pid int) cpuClock {
	return func() (time.Duration, error) {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return 0, err
		}
		_, t, err := parseStat(stat)
		return t, err
	}
}

// processesNamed is the clock of every process whose command name is name,
// summed: PostgreSQL's server and backends ("postgres") when it runs on
// this machine. Processes that start or end between two readings make the
// difference approximate, not wrong by more than their own time.
func processesNamed(name string) cpuClock {
	return func() (time.Duration, error) {
		stats, err := filepath.Glob("/proc/[0-9]*/stat")
		if err != nil {
			return 0, err
		}
		var total time.Duration
		found := false
		for _, path := range stats {
			stat, err := os.ReadFile(path)
			if err != nil {
				continue // gone since the glob
			}
			comm, t, err := parseStat(stat)
			if err != nil || comm != name {
				continue
			}
			total += t
			found = true
		}
		if !found {
			return 0, fmt.Errorf("no process named %q", name)
		}
		return total, nil
	}
}

// parseStat reads the command name and utime+stime of a /proc/PID/stat
// line (proc(5)). The name is between the first '(' and the last ')', and
// may itself hold spaces and parentheses.
func parseStat(stat []byte) (comm string, cpu time.Duration, err error) {
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return "", 0, errors.New("proc stat: no (comm)")
	}
	// After the name: state (field 3), ppid, …, utime (14), stime (15).
	fields := bytes.Fields(stat[end+1:])
	if len(fields) < 13 {
		return "", 0, errors.New("proc stat: too few fields")
	}
	utime, err1 := strconv.ParseUint(string(fields[11]), 10, 64)
	stime, err2 := strconv.ParseUint(string(fields[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return "", 0, fmt.Errorf("proc stat: %w", err)
	}
	return string(stat[open+1 : end]), time.Duration(utime+stime) * clockTick, nil
}

// serverClocks are what a closed loop reads at the start and end of its
// window: the server's own process and, when it keeps its data in a
// database on this machine, the database's processes. Nil clocks are not
// read.
type serverClocks struct {
	server, database cpuClock
}

// cpuWindow reads clocks at from and at to and reports the differences;
// wait blocks until both readings are in, or ctx ends (nothing then). A
// clock that fails at either end reports nothing (0), rather than half a
// window.
type cpuWindow struct {
	done             chan struct{}
	server, database time.Duration
}

func startCPUWindow(ctx context.Context, clocks serverClocks, from, to time.Time) *cpuWindow {
	w := &cpuWindow{done: make(chan struct{})}
	read := func() (s, d time.Duration, okS, okD bool) {
		if clocks.server != nil {
			v, err := clocks.server()
			s, okS = v, err == nil
		}
		if clocks.database != nil {
			v, err := clocks.database()
			d, okD = v, err == nil
		}
		return
	}
	sleepUntil := func(t time.Time) bool {
		timer := time.NewTimer(time.Until(t))
		defer timer.Stop()
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer close(w.done)
		if !sleepUntil(from) {
			return
		}
		s0, d0, okS0, okD0 := read()
		if !sleepUntil(to) {
			return
		}
		s1, d1, okS1, okD1 := read()
		if okS0 && okS1 {
			w.server = s1 - s0
		}
		if okD0 && okD1 {
			w.database = d1 - d0
		}
	}()
	return w
}

func (w *cpuWindow) wait() (server, database time.Duration) {
	<-w.done
	return w.server, w.database
}
