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
// used so far. When other work on the machine takes cores from the
// servers, every rate the harness measures moves; the time each server
// spends per request moves much less (not so when the cores' own speed
// changes), and says where a difference in rate comes from. Linux /proc
// only, in ticks of 10 ms: a window of seconds measures to a few per cent.
type cpuClock func() (cpuReading, error)

// haveProc says whether this system has /proc to read processor times
// from. Without it the demo's times are not shown ("-"), as OPA's; a
// --server-pid or --database-process asked for still fails the run.
func haveProc() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// cpuReading is the processor time of each process a clock reads, by pid.
type cpuReading struct{ byPID map[int]time.Duration }

// since is the time used between an earlier reading and this one, by the
// processes of this one: those that ended in between do not count, those
// that started count whole.
func (r cpuReading) since(earlier cpuReading) time.Duration {
	var total time.Duration
	for pid, t := range r.byPID {
		if t0, ok := earlier.byPID[pid]; ok && t0 <= t {
			t -= t0
		}
		total += t
	}
	return total
}

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// processCPU is the clock of one process and its children: the service
// and the policy workers it starts (one per organization policy loaded),
// which evaluate every decision's organization policy.
func processCPU(pid int) cpuClock {
	return func() (cpuReading, error) {
		r := cpuReading{byPID: map[int]time.Duration{}}
		err := eachProcess(func(p int, st procStat) {
			if p == pid || st.ppid == pid {
				r.byPID[p] = st.cpu
			}
		})
		if err != nil {
			return cpuReading{}, err
		}
		if _, ok := r.byPID[pid]; !ok {
			return cpuReading{}, fmt.Errorf("no process %d", pid)
		}
		return r, nil
	}
}

// eachProcess calls fn with every process of /proc that can be read.
func eachProcess(fn func(pid int, st procStat)) error {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return err
	}
	for _, path := range stats {
		stat, err := os.ReadFile(path)
		if err != nil {
			continue // gone since the glob
		}
		st, err := parseStat(stat)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil {
			continue
		}
		fn(pid, st)
	}
	return nil
}

// processesNamed is the clock of every process on this machine whose
// command name is name (the kernel keeps 15 bytes of it): PostgreSQL's
// server, backends and workers ("postgres"), whoever they work for. A
// reading is the time of each such process, by pid; cpuWindow counts a
// process that ends within the window for none of its time, and one that
// starts within it for all of it.
func processesNamed(name string) cpuClock {
	return func() (cpuReading, error) {
		r := cpuReading{byPID: map[int]time.Duration{}}
		err := eachProcess(func(pid int, st procStat) {
			if st.comm == name {
				r.byPID[pid] = st.cpu
			}
		})
		if err != nil {
			return cpuReading{}, err
		}
		if len(r.byPID) == 0 {
			return cpuReading{}, fmt.Errorf("no process named %q", name)
		}
		return r, nil
	}
}

// procStat is what the clocks read of a /proc/PID/stat line.
type procStat struct {
	comm string
	ppid int
	cpu  time.Duration // utime + stime
}

// parseStat reads the command name, parent and utime+stime of a
// /proc/PID/stat line (proc(5)). The name is between the first '(' and the
// last ')', and may itself hold spaces and parentheses.
func parseStat(stat []byte) (procStat, error) {
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("proc stat: no (comm)")
	}
	// After the name: state (field 3), ppid (4), …, utime (14), stime (15).
	fields := bytes.Fields(stat[end+1:])
	if len(fields) < 13 {
		return procStat{}, errors.New("proc stat: too few fields")
	}
	ppid, err0 := strconv.Atoi(string(fields[1]))
	utime, err1 := strconv.ParseUint(string(fields[11]), 10, 64)
	stime, err2 := strconv.ParseUint(string(fields[12]), 10, 64)
	if err := errors.Join(err0, err1, err2); err != nil {
		return procStat{}, fmt.Errorf("proc stat: %w", err)
	}
	return procStat{comm: string(stat[open+1 : end]), ppid: ppid, cpu: time.Duration(utime+stime) * clockTick}, nil
}

// serverClocks are what a closed loop reads at the start and end of its
// window: the server's own process and, when it keeps its data in a
// database on this machine, the database's processes. Nil clocks are not
// read.
type serverClocks struct {
	server, database cpuClock
}

// cpuWindow reads clocks at from and at to and reports the time used in
// between; wait blocks until both readings are in, or ctx ends. A clock
// not read at both ends (it failed, or the run was cancelled) measures
// nothing, 0, rather than part of a window.
type cpuWindow struct {
	done             chan struct{}
	server, database time.Duration
}

func startCPUWindow(ctx context.Context, clocks serverClocks, from, to time.Time) *cpuWindow {
	w := &cpuWindow{done: make(chan struct{})}
	read := func(c cpuClock) (cpuReading, bool) {
		if c == nil {
			return cpuReading{}, false
		}
		r, err := c()
		return r, err == nil
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
		s0, okS0 := read(clocks.server)
		d0, okD0 := read(clocks.database)
		if !sleepUntil(to) {
			return
		}
		s1, okS1 := read(clocks.server)
		d1, okD1 := read(clocks.database)
		if okS0 && okS1 {
			w.server = s1.since(s0)
		}
		if okD0 && okD1 {
			w.database = d1.since(d0)
		}
	}()
	return w
}

func (w *cpuWindow) wait() *cpuWindow {
	<-w.done
	return w
}

// check reads each clock once: a process id or name that reads nothing
// fails the run before it starts, not as a column of dashes after it.
func (c serverClocks) check() error {
	for _, clock := range []cpuClock{c.server, c.database} {
		if clock == nil {
			continue
		}
		if _, err := clock(); err != nil {
			return fmt.Errorf("processor time: %w", err)
		}
	}
	return nil
}
