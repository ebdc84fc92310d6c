package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// This file reads what Linux tells about a process under /proc: the
// server's memory and CPU time and its limit on open files, and raises the
// bench's own limit.

// procField reads a "Name:   123 kB" line of a /proc status-like file.
func procField(path, name string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// memory is a process's resident set: now and at its peak, in bytes; -1
// when unknown.
type memory struct {
	rss, hwm int64
}

func readMemory(pid int) memory {
	m := memory{rss: -1, hwm: -1}
	if pid <= 0 {
		return m
	}
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	if kb, ok := procField(path, "VmRSS"); ok {
		m.rss = kb << 10
	}
	if kb, ok := procField(path, "VmHWM"); ok {
		m.hwm = kb << 10
	}
	return m
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, what
// `getconf CLK_TCK` prints. The kernel fixes it at 100 in its ABI on every
// architecture Go supports on Linux, and without cgo there is no sysconf to
// ask.
const userHZ = 100

// cpuTime returns the user+system CPU time a process has used so far, from
// /proc/<pid>/stat ("self" for this process); ok is false if unknown.
func cpuTime(pid string) (time.Duration, bool) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	ticks, ok := parseStatCPU(string(data))
	if !ok {
		return 0, false
	}
	return time.Duration(ticks) * time.Second / userHZ, true
}

// parseStatCPU returns utime+stime (fields 14 and 15), in clock ticks, from
// the contents of a /proc/<pid>/stat file. The command name, field 2, is in
// parentheses and may itself hold spaces and parentheses; it is the only
// field that can, so the fields resume after the last ')'.
func parseStatCPU(stat string) (ticks int64, ok bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || ut < 0 || st < 0 {
		return 0, false
	}
	return ut + st, true
}

// fileHeadroom is the number of open files allowed for beyond one per
// connection: the server's database pool, listeners and logs; the bench's
// own files.
const fileHeadroom = 128

// raiseFileLimit sets the soft limit on open files to the hard limit and
// returns it. It calls setrlimit even when the soft limit already is the
// hard one: Go raises its own soft limit at start-up but restores the
// original one in the processes it starts unless the program set the limit
// itself, and a spawned server needs a file per connection just as the
// bench does.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("open-file limit: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raise open-file limit to %d: %w", lim.Max, err)
	}
	return lim.Cur, nil
}

// ensureFiles raises the open-file limit (see raiseFileLimit) and fails
// when even the hard limit is too low for conns connections. Call it before
// spawning the server, which inherits the limit.
func ensureFiles(conns int) error {
	limit, err := raiseFileLimit()
	if err != nil {
		return err
	}
	if need := uint64(conns) + fileHeadroom; limit < need {
		return fmt.Errorf("%d connections need about %d open files, but the hard limit is %d; raise it (ulimit -Hn, or LimitNOFILE in a systemd unit)", conns, need, limit)
	}
	return nil
}

// serverFileLimit returns the soft limit on open files of process pid, from
// /proc/<pid>/limits; ok is false if unknown.
func serverFileLimit(pid int) (limit uint64, ok bool) {
	if pid <= 0 {
		return 0, false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0, false
	}
	return parseFileLimit(string(data))
}

// parseFileLimit returns the soft limit of the "Max open files" line of a
// /proc/<pid>/limits file; "unlimited" is the largest uint64.
func parseFileLimit(limits string) (uint64, bool) {
	sc := bufio.NewScanner(strings.NewReader(limits))
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), "Max open files")
		if !found {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false
		}
		if f[0] == "unlimited" {
			return math.MaxUint64, true
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}
