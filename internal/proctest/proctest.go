// Package proctest reads, for tests, what Linux's /proc says of
// processes: which the service or a test started, and what they hold.
package proctest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Children lists the processes whose parent is pid. It fails where there
// is no /proc to read.
func Children(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid …; comm may hold spaces and
		// parentheses, so the fields are read after the last ")".
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out, nil
}

// WaitUntil polls cond every 20 ms until it holds, and fails the test if
// it does not within d: processes start, exit and restart on their own
// time.
func WaitUntil(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
