package bench

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// percentileMs returns the p-th percentile of ds in milliseconds, by the
// nearest-rank method; with fewer than 100 samples p99 is the maximum.
func percentileMs(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	rank = min(max(rank, 0), len(s)-1)
	return float64(s[rank].Microseconds()) / 1000
}

// rssMiB returns this process's resident set size in MiB after a garbage
// collection that returns freed memory to the OS. It reads VmRSS from
// /proc/self/status, so it needs Linux.
func rssMiB(tb testing.TB) float64 {
	tb.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Fatalf("read rss: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "VmRSS:" && fields[2] == "kB" {
			kb, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				tb.Fatalf("parse VmRSS %q: %v", sc.Text(), err)
			}
			return kb / 1024
		}
	}
	tb.Fatalf("no VmRSS line in /proc/self/status")
	return 0
}
