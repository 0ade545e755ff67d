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
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
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
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: memprof TEXT_PROFILE PROTO_PROFILE")
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
