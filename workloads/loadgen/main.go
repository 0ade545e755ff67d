// Command loadgen is goscope's test target: a Go program that runs a fixed,
// repeatable workload on command and reports the runtime's own accounting
// (runtime/metrics) of that workload, so tests can compare goscope's figures
// against ground truth.
//
// Protocol (line based):
//
//	stdout: "ready <pid> <goversion>" once the baseline metrics are taken
//	stdin:  "run"  -> runs one batch, then prints "result <json>"
//	stdin:  "baseline" -> takes the next result's baseline now, prints "baseline"
//	stdin:  "exec PATH ARGS..." -> execve(PATH, [PATH ARGS...]) in place (same pid)
//	stdin:  "quit" or EOF -> exits 0
//
// With -background it ignores stdin and runs the workload forever, pausing
// 100 ms between batches (a demo target for `goscope doctor`).
//
// The baseline is taken after runtime.GC() so that every mcache is flushed
// and allocation counters are exact; every batch ends the same way.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// lastChecksum is batchChecksum of the last batch (see checksum.go).
var lastChecksum uint64

var (
	work       = flag.String("work", "mixed", "workload: gc, alloc, sites, sites-pair, cpu-bound, blocking, goroutines, cgo, cgo-slow, service, stack-growth, mixed, idle")
	scale      = flag.Int("scale", 1, "multiplies the batch size")
	liveMB     = flag.Int("live-mb", 8, "live heap kept across the batch, in MiB")
	autoRun    = flag.Bool("auto", false, "run one batch at start without waiting for stdin")
	background = flag.Bool("background", false, "run the workload forever without reading stdin (demo target)")
	checksum   = flag.Bool("checksum", false, "compute a deterministic checksum in each batch and report it (checks the program runs unharmed)")
	cpuProfile = flag.String("cpuprofile", "", "profile each batch's CPU into this file (runtime/pprof)")
)

func main() {
	flag.Parse()
	live := makeLiveSet(*liveMB)
	before := snapshot()
	fmt.Printf("ready %d %s\n", os.Getpid(), runtime.Version())
	if *background {
		backgroundLoad(*work, *scale)
	}
	commands := bufio.NewScanner(os.Stdin)
	for *autoRun || commands.Scan() {
		cmd := "run"
		if !*autoRun {
			cmd = strings.TrimSpace(commands.Text())
		}
		*autoRun = false
		switch cmd {
		case "run":
			start := time.Now()
			stopProfile := startCPUProfile(*cpuProfile)
			runBatch(*work, *scale)
			stopProfile()
			elapsed := time.Since(start)
			after := snapshot()
			printResult(before, after, elapsed)
			before = after
		case "baseline":
			// Rebase the next batch's deltas here, without a GC (the
			// target is idle since its last one, so its mcaches hold next
			// to nothing): an observer that attached before this line has
			// a window that contains the target's.
			before = readMetrics()
			fmt.Println("baseline")
		case "quit":
			runtime.KeepAlive(live)
			return
		case "":
		default:
			if fields := strings.Fields(cmd); fields[0] == "exec" && len(fields) > 1 {
				err := syscall.Exec(fields[1], fields[1:], os.Environ())
				fmt.Fprintf(os.Stderr, "loadgen: exec %s: %v\n", fields[1], err)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "loadgen: unknown command %q\n", cmd)
		}
	}
	runtime.KeepAlive(live)
}

// cgoCall is one cgo call as the workload timed it: around is Go's
// time.Since across the call, inside is the C function's own clock.
type cgoCall struct{ around, inside time.Duration }

// cgoMedianNs is the median cgo call duration (Go's timing around it) the
// last cgo-slow batch measured itself; cgoCallNs and cgoInsideNs hold each
// call's two timings, in call order.
var (
	cgoMedianNs int64
	cgoMu       sync.Mutex
	cgoCallNs   []int64
	cgoInsideNs []int64
)

// noteCgoCalls records a cgo-slow run's call timings.
func noteCgoCalls(calls []cgoCall) {
	if len(calls) == 0 {
		return
	}
	sorted := make([]time.Duration, len(calls))
	for i, c := range calls {
		sorted[i] = c.around
	}
	sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
	atomic.StoreInt64(&cgoMedianNs, int64(sorted[len(sorted)/2]))
	cgoMu.Lock()
	defer cgoMu.Unlock()
	for _, c := range calls {
		cgoCallNs = append(cgoCallNs, c.around.Nanoseconds())
		cgoInsideNs = append(cgoInsideNs, c.inside.Nanoseconds())
	}
}

// takeCgoCalls returns and forgets the recorded call timings: Go's around
// each call and C's inside it.
func takeCgoCalls() (around, inside []int64) {
	cgoMu.Lock()
	defer cgoMu.Unlock()
	around, inside = cgoCallNs, cgoInsideNs
	cgoCallNs, cgoInsideNs = nil, nil
	return around, inside
}

func runBatch(kind string, scale int) {
	if *checksum {
		atomic.StoreUint64(&lastChecksum, batchChecksum())
	}
	for i := 0; i < scale; i++ {
		switch kind {
		case "gc":
			gcPressure()
		case "alloc":
			allocMix()
		case "sites":
			allocSites()
		case "sites-pair":
			allocPair()
		case "cpu-bound":
			cpuBound()
		case "blocking":
			blockingSyscalls()
		case "goroutines":
			spawnGoroutines()
		case "cgo":
			cgoCalls()
		case "mixed":
			allocMix()
			gcPressure()
			spawnGoroutines()
			cgoCalls()
		case "service":
			serviceBatch()
		case "stack-growth":
			stackGrowth()
		case "cgo-slow":
			noteCgoCalls(cgoSlowCalls())
		case "idle":
			time.Sleep(100 * time.Millisecond)
		default:
			fmt.Fprintf(os.Stderr, "loadgen: unknown workload %q\n", kind)
			os.Exit(2)
		}
	}
}

// startCPUProfile profiles the process's CPU into path until the returned
// function is called (no-op without a path).
func startCPUProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
	// 500 Hz asked, not pprof's 100: the tests compare shares of this
	// profile with goscope's, and more samples are less binomial noise.
	// (The per-thread CPU timers fire on the kernel's tick, so a
	// CONFIG_HZ=250 kernel gives 250 Hz: still 2.5 times pprof's.) The rate set first is the one kept (StartCPUProfile's
	// own 100 Hz is refused, with a line on stderr saying so).
	runtime.SetCPUProfileRate(500)
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// snapshot flushes every mcache (runtime.GC) and reads all metrics.
func snapshot() []metrics.Sample {
	runtime.GC()
	return readMetrics()
}

// readMetrics reads all metrics without a GC first.
func readMetrics() []metrics.Sample {
	descs := metrics.All()
	samples := make([]metrics.Sample, len(descs))
	for i := range descs {
		samples[i].Name = descs[i].Name
	}
	metrics.Read(samples)
	return samples
}

type scalar struct {
	Delta float64 `json:"delta"`
	End   float64 `json:"end"`
}

type histogram struct {
	// Bounds has len(Counts)+1 entries, formatted with strconv ("+Inf").
	Bounds []string `json:"bounds"`
	Counts []uint64 `json:"counts"`
}

type result struct {
	GoVersion  string               `json:"go_version"`
	Pid        int                  `json:"pid"`
	ElapsedNs  int64                `json:"elapsed_ns"`
	Spawned    int64                `json:"goroutines_spawned"`
	CgoMedian  int64                `json:"cgo_call_ns_median"`
	CgoCalls   []int64              `json:"cgo_call_ns,omitempty"`
	CgoInside  []int64              `json:"cgo_call_inside_ns,omitempty"`
	Checksum   uint64               `json:"checksum"`
	SiteBytes  map[string]int64     `json:"site_bytes"`
	Scalars    map[string]scalar    `json:"scalars"`
	Histograms map[string]histogram `json:"histograms"`
}

func printResult(before, after []metrics.Sample, elapsed time.Duration) {
	r := result{
		GoVersion:  runtime.Version(),
		Pid:        os.Getpid(),
		ElapsedNs:  elapsed.Nanoseconds(),
		Spawned:    atomic.SwapInt64(&spawned, 0),
		CgoMedian:  atomic.SwapInt64(&cgoMedianNs, 0),
		Checksum:   atomic.SwapUint64(&lastChecksum, 0),
		SiteBytes:  takeSiteBytes(),
		Scalars:    map[string]scalar{},
		Histograms: map[string]histogram{},
	}
	r.CgoCalls, r.CgoInside = takeCgoCalls()
	for i := range after {
		name := after[i].Name
		b, a := before[i].Value, after[i].Value
		switch a.Kind() {
		case metrics.KindUint64:
			r.Scalars[name] = scalar{Delta: float64(a.Uint64()) - float64(b.Uint64()), End: float64(a.Uint64())}
		case metrics.KindFloat64:
			r.Scalars[name] = scalar{Delta: a.Float64() - b.Float64(), End: a.Float64()}
		case metrics.KindFloat64Histogram:
			ha, hb := a.Float64Histogram(), b.Float64Histogram()
			h := histogram{Counts: make([]uint64, len(ha.Counts))}
			for j := range ha.Counts {
				h.Counts[j] = ha.Counts[j] - hb.Counts[j]
			}
			for _, bound := range ha.Buckets {
				h.Bounds = append(h.Bounds, strconv.FormatFloat(bound, 'g', -1, 64))
			}
			r.Histograms[name] = h
		}
	}
	out, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("result %s\n", out)
}
