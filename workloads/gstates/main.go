// gstates starts goroutines in known states and holds them: blocked on a
// channel receive, in a select, sleeping, waiting for a sync.Mutex,
// spinning on a CPU, and (cgo builds) blocked in a C call. Once every one
// is in its state it writes its own runtime/pprof goroutine profile
// (debug=1 text and the proto) to -dir, prints "ready", and holds them
// until stdin says "quit": the quiescent point at which goscope's dump is
// compared with the runtime's own profile.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	hold    = make(chan struct{})
	never   = make(chan int)
	never2  = make(chan string)
	locked  sync.Mutex
	spinSum uint64
)

//go:noinline
func blockRecv(ready *sync.WaitGroup) {
	ready.Done()
	<-hold
}

//go:noinline
func blockSelect(ready *sync.WaitGroup) {
	ready.Done()
	select {
	case <-never:
	case <-never2:
	}
}

//go:noinline
func sleeper(ready *sync.WaitGroup) {
	ready.Done()
	time.Sleep(24 * time.Hour)
}

//go:noinline
func lockWaiter(ready *sync.WaitGroup) {
	ready.Done()
	locked.Lock()
	locked.Unlock()
}

//go:noinline
func spin(ready *sync.WaitGroup) {
	ready.Done()
	for i := uint64(0); ; i++ {
		spinSum += i
	}
}

//go:noinline
func labeledRecv(ready *sync.WaitGroup, worker string) {
	pprof.Do(context.Background(), pprof.Labels("worker", worker), func(context.Context) {
		ready.Done()
		<-hold
	})
}

var leaked atomic.Int64

//go:noinline
func leakyHandler() {
	leaked.Add(1)
	<-make(chan int) // nobody ever sends: leaked
}

//go:noinline
func churnHandler() {
	<-time.After(50 * time.Millisecond)
}

// every starts fn as a goroutine perSecond times a second, forever.
func every(perSecond int, fn func()) {
	if perSecond <= 0 {
		return
	}
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		for range tick.C {
			go fn()
		}
	}()
}

// Nanoseconds all phased goroutines spent spinning, sleeping and
// waiting on a channel: the wall-clock profile's ground truth.
var spinNs, sleepNs, chanNs atomic.Int64

// phased loops: 20 ms on the CPU, 30 ms asleep, 50 ms waiting on a
// channel receive, timing each phase itself.
//
//go:noinline
func phased() {
	for {
		start := time.Now()
		for time.Since(start) < 20*time.Millisecond {
			spinSum++
		}
		t1 := time.Now()
		spinNs.Add(int64(t1.Sub(start)))
		time.Sleep(30 * time.Millisecond)
		t2 := time.Now()
		sleepNs.Add(int64(t2.Sub(t1)))
		<-time.After(50 * time.Millisecond)
		chanNs.Add(int64(time.Since(t2)))
	}
}

func startPhased(n int) {
	for i := 0; i < n; i++ {
		go phased()
	}
}

func startRecv(n int, ready *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		go blockRecv(ready)
	}
}

func startSelect(n int, ready *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		go blockSelect(ready)
	}
}

func startSleep(n int, ready *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		go sleeper(ready)
	}
}

func startLock(n int, ready *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		go lockWaiter(ready)
	}
}

func startSpin(n int, ready *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		go spin(ready)
	}
}

func startLabeled(n int, ready *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		go labeledRecv(ready, fmt.Sprintf("w%d", i%2))
	}
}

// parked reports whether all n goroutines with a frame in fn share one
// stack in the debug=1 profile: goroutines still on their way to blocking
// have other stacks (groups of one stack may differ only by labels).
func parked(profile string, fn string, n int) bool {
	total, stacks := 0, map[string]bool{}
	if i := strings.Index(profile, "\n"); i >= 0 {
		profile = profile[i+1:] // "goroutine profile: total N"
	}
	for _, group := range strings.Split(profile, "\n\n") {
		lines := strings.Split(strings.TrimSpace(group), "\n")
		var count int
		if _, err := fmt.Sscanf(lines[0], "%d @", &count); err != nil {
			continue
		}
		if !strings.Contains(group, "\tmain."+fn+"+") {
			continue
		}
		total += count
		stacks[lines[0][strings.Index(lines[0], "@"):]] = true
	}
	return total == n && len(stacks) <= 1
}

func main() {
	recv := flag.Int("recv", 0, "goroutines blocked on a channel receive")
	sel := flag.Int("select", 0, "goroutines blocked in a select")
	sleep := flag.Int("sleep", 0, "sleeping goroutines")
	lock := flag.Int("lock", 0, "goroutines waiting for a sync.Mutex")
	spins := flag.Int("spin", 0, "goroutines spinning on a CPU")
	cgo := flag.Int("cgo", 0, "goroutines blocked in a C call (cgo builds)")
	labeled := flag.Int("labeled", 0, "goroutines blocked on receive with pprof labels")
	dir := flag.String("dir", "", "where to write goroutine.txt and goroutine.pb.gz")
	leak := flag.Int("leak", 0, "goroutines leaked per second (blocked forever on receive)")
	churn := flag.Int("churn", 0, "goroutines per second that wait 50 ms and exit")
	phases := flag.Int("phased", 0, "goroutines cycling 20 ms CPU, 30 ms sleep, 50 ms channel wait")
	flag.Parse()

	locked.Lock()
	var ready sync.WaitGroup
	ready.Add(*recv + *sel + *sleep + *lock + *spins + *cgo + *labeled)
	startRecv(*recv, &ready)
	startSelect(*sel, &ready)
	startSleep(*sleep, &ready)
	startLock(*lock, &ready)
	startSpin(*spins, &ready)
	startCgo(*cgo, &ready)
	startLabeled(*labeled, &ready)
	ready.Wait()

	// Wait until every goroutine is parked in its state, by the runtime's
	// own profile (Done runs just before the goroutine blocks).
	want := map[string]int{"blockRecv": *recv, "blockSelect": *sel, "sleeper": *sleep, "lockWaiter": *lock, "labeledRecv": *labeled}
	if cgoAvailable {
		want["cgoBlock"] = *cgo
	}
	var text bytes.Buffer
	for {
		text.Reset()
		pprof.Lookup("goroutine").WriteTo(&text, 1)
		settled := true
		for fn, n := range want {
			if !parked(text.String(), fn, n) {
				settled = false
			}
		}
		if settled {
			break
		}
		runtime.Gosched()
	}
	if *dir != "" {
		if err := os.WriteFile(filepath.Join(*dir, "goroutine.txt"), text.Bytes(), 0o644); err != nil {
			panic(err)
		}
		f, err := os.Create(filepath.Join(*dir, "goroutine.pb.gz"))
		if err != nil {
			panic(err)
		}
		pprof.Lookup("goroutine").WriteTo(f, 0)
		f.Close()
	}
	startPhased(*phases)
	every(*leak, leakyHandler)
	every(*churn, churnHandler)
	fmt.Printf("ready %d\n", runtime.NumGoroutine())
	start := time.Now()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "quit":
			os.Exit(0)
		case "phases":
			// Nanoseconds in each phase so far, all phased goroutines.
			fmt.Printf("phases %d %d %d\n", spinNs.Load(), sleepNs.Load(), chanNs.Load())
		case "count":
			// Leaked goroutines so far and the seconds since ready.
			fmt.Printf("leaked %d %.6f\n", leaked.Load(), time.Since(start).Seconds())
		}
	}
}
