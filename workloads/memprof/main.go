// Command memprof is the target of goscope's memory-profile test: it
// allocates from two known functions (allocSmall, allocLarge), runs two
// GCs so that the runtime publishes those allocations in its heap profile,
// stops the GC, and writes runtime/pprof's own heap profile twice, as
// debug=1 text to the first argument and as the gzipped proto to the
// second. Then it prints "ready PID VERSION" and waits for "quit" or the
// end of stdin; nothing it does from then on can change the published
// profile (no GC runs). With MEMPROF_CHURN=1 it instead turns the GC back
// on and keeps allocating from ever new stacks and sizes, so that buckets
// are added and cycles published while goscope walks the list.
//
// "memprof serve WORK" speaks loadgen's protocol instead (stdout "ready PID
// VERSION"; stdin "baseline" -> "baseline", "run" -> one batch then
// "result JSON", "quit"): WORK "sites" allocates from two functions at 3:1
// bytes and reports its own byte counts per function (site_bytes); WORK
// "growth" only grows maps and appends to slices, "growth-slow" does it
// between stretches of CPU work (cheap enough for allocation probes under
// the default overhead budget). Every batch ends with two
// GCs, so that the runtime has published its allocations in the heap
// profile before the result line. MEMPROF_RATE, when set, is assigned to
// runtime.MemProfileRate first thing (0 turns the heap profile off). With
// MEMPROF_WRITE_DIR the target writes its own heap profile (debug=1 text)
// to DIR/start.txt at "baseline" and to DIR/end.txt after a batch's GCs:
// the profiles at the two ends of an observer's window.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"time"
)

var (
	keptSmall [][]byte
	keptLarge [][]byte
	sink      []byte
)

// churn allocates at the end of a recursion depth frames deep: each depth
// and size is its own bucket.
//
//go:noinline
func churn(depth, size int) []byte {
	if depth == 0 {
		return make([]byte, size)
	}
	return churn(depth-1, size)
}

// allocSmall allocates n 512-byte objects and keeps every other one.
//
//go:noinline
func allocSmall(n int) {
	for i := 0; i < n; i++ {
		b := make([]byte, 512)
		if i%2 == 0 {
			keptSmall = append(keptSmall, b)
		}
	}
}

// allocLarge allocates n 40 KiB objects and keeps every fourth one.
//
//go:noinline
func allocLarge(n int) {
	for i := 0; i < n; i++ {
		b := make([]byte, 40<<10)
		if i%4 == 0 {
			keptLarge = append(keptLarge, b)
		}
	}
}

func writeProfile(path string, debugLevel int) {
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, debugLevel); err != nil {
		panic(err)
	}
	if err := f.Close(); err != nil {
		panic(err)
	}
}

func main() {
	if rate := os.Getenv("MEMPROF_RATE"); rate != "" {
		r, err := strconv.Atoi(rate)
		if err != nil {
			fmt.Fprintf(os.Stderr, "memprof: MEMPROF_RATE %q: %v\n", rate, err)
			os.Exit(2)
		}
		runtime.MemProfileRate = r
	}
	if len(os.Args) == 3 && os.Args[1] == "serve" {
		serve(os.Args[2])
		return
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: memprof TEXT_PROFILE PROTO_PROFILE | memprof serve sites|growth")
		os.Exit(2)
	}
	allocSmall(40000)
	allocLarge(1000)
	// The first GC ends the cycle the allocations were counted in, the
	// second publishes it (frees are counted at sweep).
	runtime.GC()
	runtime.GC()
	debug.SetGCPercent(-1)
	writeProfile(os.Args[1], 1)
	writeProfile(os.Args[2], 0)
	if os.Getenv("MEMPROF_CHURN") == "1" {
		debug.SetGCPercent(100)
		go func() {
			for i := 0; ; i++ {
				sink = churn(i%30, 1024+(i%200)*64)
			}
		}()
	}
	fmt.Printf("ready %d %s\n", os.Getpid(), runtime.Version())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "quit" {
			return
		}
	}
	runtime.KeepAlive(keptSmall)
	runtime.KeepAlive(keptLarge)
}

// The "sites" batch: sitesSmall and sitesLarge allocate 3:1 bytes,
// interleaved in time; the last objects of each stay live in rings (8 MiB
// of small, 20 MiB of large objects).
const (
	siteRounds    = 1600
	smallPerRound = 240
	smallSize     = 512
	largeSize     = 40 << 10
	smallRingSize = 16384
	largeRingSize = 512
)

var (
	smallRing [smallRingSize][]byte
	largeRing [largeRingSize][]byte
	smallNext int
	largeNext int
)

// sitesSmall allocates n 512-byte objects (an exact size class), keeping
// the last ones in smallRing.
//
//go:noinline
func sitesSmall(n int) {
	for i := 0; i < n; i++ {
		smallRing[smallNext%smallRingSize] = make([]byte, smallSize)
		smallNext++
	}
}

// sitesLarge allocates one 40 KiB object (page-rounded exactly), keeping
// the last ones in largeRing.
//
//go:noinline
func sitesLarge() {
	largeRing[largeNext%largeRingSize] = make([]byte, largeSize)
	largeNext++
}

func runSites() map[string]int64 {
	for r := 0; r < siteRounds; r++ {
		sitesSmall(smallPerRound)
		sitesLarge()
	}
	return map[string]int64{
		"main.sitesSmall": siteRounds * smallPerRound * smallSize,
		"main.sitesLarge": siteRounds * largeSize,
	}
}

var (
	mapSink   map[int]int
	sliceSink []int64
)

// growMap only grows a map: every byte it allocates is the runtime's map
// growth (internal/runtime/maps from Go 1.24, runtime.hashGrow before).
//
//go:noinline
func growMap(n int) {
	m := map[int]int{}
	for i := 0; i < n; i++ {
		m[i] = i
	}
	mapSink = m
}

// appendSlice only appends to a slice: every byte is runtime.growslice's.
//
//go:noinline
func appendSlice(n int) {
	var s []int64
	for i := 0; i < n; i++ {
		s = append(s, int64(i))
	}
	sliceSink = s
}

func runGrowth() map[string]int64 {
	for r := 0; r < 150; r++ {
		growMap(20000)
		appendSlice(100000)
	}
	return map[string]int64{}
}

var spinSink uint64

// spin keeps the CPU busy for d without allocating.
func spin(d time.Duration) {
	x := spinSink | 1
	for start := time.Now(); time.Since(start) < d; {
		for i := 0; i < 1000; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
	}
	spinSink = x
}

// runGrowthSlow grows small maps and slices between stretches of CPU work
// for about 5 s: few allocations per CPU second (about a hundred span
// refills a second), so that allocation probes fit a 1% budget.
func runGrowthSlow() map[string]int64 {
	for r := 0; r < 420; r++ {
		growMap(100)
		appendSlice(300)
		spin(12 * time.Millisecond)
	}
	return map[string]int64{}
}

type result struct {
	GoVersion  string              `json:"go_version"`
	Pid        int                 `json:"pid"`
	ElapsedNs  int64               `json:"elapsed_ns"`
	Spawned    int64               `json:"goroutines_spawned"`
	SiteBytes  map[string]int64    `json:"site_bytes"`
	Scalars    map[string]struct{} `json:"scalars"`
	Histograms map[string]struct{} `json:"histograms"`
}

// serve runs batches of work on command (loadgen's protocol).
func serve(work string) {
	var batch func() map[string]int64
	switch work {
	case "sites":
		batch = runSites
	case "growth":
		batch = runGrowth
	case "growth-slow":
		batch = runGrowthSlow
	default:
		fmt.Fprintf(os.Stderr, "memprof: unknown work %q\n", work)
		os.Exit(2)
	}
	// Everything allocated so far published before anyone attaches.
	runtime.GC()
	runtime.GC()
	fmt.Printf("ready %d %s\n", os.Getpid(), runtime.Version())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "baseline":
			if dir := os.Getenv("MEMPROF_WRITE_DIR"); dir != "" {
				writeProfile(dir+"/start.txt", 1)
			}
			fmt.Println("baseline")
		case "run":
			start := time.Now()
			bytes := batch()
			elapsed := time.Since(start)
			// The first GC ends the cycle the batch was counted in, the
			// second publishes it.
			runtime.GC()
			runtime.GC()
			if dir := os.Getenv("MEMPROF_WRITE_DIR"); dir != "" {
				writeProfile(dir+"/end.txt", 1)
			}
			out, err := json.Marshal(result{
				GoVersion:  runtime.Version(),
				Pid:        os.Getpid(),
				ElapsedNs:  elapsed.Nanoseconds(),
				SiteBytes:  bytes,
				Scalars:    map[string]struct{}{},
				Histograms: map[string]struct{}{},
			})
			if err != nil {
				panic(err)
			}
			fmt.Printf("result %s\n", out)
		case "quit":
			return
		}
	}
}
