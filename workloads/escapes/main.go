// escapes allocates at one hot site per escape-analysis reason class
// (returned pointer, interface conversion, closure captured by a
// goroutine, variadic ...any to fmt, append past capacity, too large for
// the stack, map value). It first measures each function's bytes per call
// itself (runtime.MemStats), prints "ready", then calls each function so
// that each allocates about the same bytes per round, and answers "count"
// on stdin with every function's bytes so far: the ground truth goscope
// explain's per-site shares are held against.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync/atomic"
)

type point struct{ a, b, c, d int }

// Typed sinks: storing a result in an interface would box it (one more
// allocation, outside the site under test).
var (
	sinkP  *point
	sinkA  any
	sinkS  string
	sinkI  []int
	sinkN  int
	done   = make(chan int, 1)
	values = make(map[int]*point, 2048)
)

//go:noinline
func retPtr(i int) *point {
	return &point{i, i, i, i}
}

//go:noinline
func toIface(i int) any {
	return point{i, i, i, i}
}

//go:noinline
func goClosure(i int) {
	v := i
	go func() { done <- v }()
	<-done
}

//go:noinline
func sprint(i int) string {
	return fmt.Sprint(i + 100000)
}

//go:noinline
func grow(n int) []int {
	var s []int
	for i := 0; i < n; i++ {
		s = append(s, i)
	}
	return s
}

//go:noinline
func big() int {
	b := make([]byte, 128<<10)
	return len(b)
}

//go:noinline
func mapValue(i int) {
	p := point{i, i, i, i}
	values[i%1024] = &p
}

var sites = []struct {
	name string
	call func(i int)
}{
	{"main.retPtr", func(i int) { sinkP = retPtr(i) }},
	{"main.toIface", func(i int) { sinkA = toIface(i) }},
	{"main.goClosure", goClosure},
	{"main.sprint", func(i int) { sinkS = sprint(i) }},
	{"main.grow", func(i int) { sinkI = grow(64) }},
	{"main.big", func(i int) { sinkN = big() }},
	{"main.mapValue", mapValue},
}

// bytesPerCall measures a function's heap bytes per call.
func bytesPerCall(call func(int)) uint64 {
	const n = 2000
	for i := 0; i < 100; i++ {
		call(i)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		call(i)
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / n
}

func main() {
	// Sample finely, and keep the heap profile linked in.
	runtime.MemProfileRate = 4096
	_ = pprof.Lookup("heap")
	// The heap profile publishes at GC cycles: many small cycles keep a
	// window's shares fine-grained even when the machine starves us.
	debug.SetGCPercent(10)
	per := make([]uint64, len(sites))
	reps := make([]int, len(sites))
	const roundBytes = 256 << 10
	for i, s := range sites {
		per[i] = bytesPerCall(s.call)
		if per[i] == 0 {
			panic(s.name + " allocates nothing")
		}
		reps[i] = int((roundBytes + per[i] - 1) / per[i])
	}
	calls := make([]atomic.Int64, len(sites))
	go func() {
		for i := 0; ; i++ {
			for k, s := range sites {
				for r := 0; r < reps[k]; r++ {
					s.call(i + r)
				}
				calls[k].Add(int64(reps[k]))
			}
		}
	}()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "count":
			// "NAME BYTES" per site, then "end".
			for k, s := range sites {
				fmt.Printf("%s %d\n", s.name, uint64(calls[k].Load())*per[k])
			}
			fmt.Println("end")
		case "quit":
			os.Exit(0)
		}
	}
}
