package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// The "cpu-bound" and "blocking" workloads: the two ways a Go program
// runs short of what the scheduler gives it. cpu-bound runs 4 x
// GOMAXPROCS goroutines of pure computation, so every P is busy and
// runnable goroutines wait in the run queues (P-bound). blocking runs 64
// goroutines that each make blocking nanosleep system calls: every one
// holds an OS thread while it sleeps, the runtime hands its P to a new M,
// and the thread count climbs (M-bound). Both are sized by work.

// boundSink keeps the computation from being optimised away.
var boundSink uint64

// cpuBound runs 4 x GOMAXPROCS goroutines of 150M xorshift steps each.
func cpuBound() {
	const steps = 150_000_000
	workers := 4 * runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			x := seed | 1
			for i := 0; i < steps; i++ {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
			}
			atomic.AddUint64(&boundSink, x)
		}(uint64(w))
	}
	wg.Wait()
}

// blockingSyscalls runs 64 goroutines of 300 blocking 3 ms nanosleeps
// each (syscall.Nanosleep enters the kernel without the netpoller).
func blockingSyscalls() {
	const goroutines, calls = 64, 300
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := syscall.Timespec{Nsec: 3_000_000}
			for i := 0; i < calls; i++ {
				_ = syscall.Nanosleep(&ts, nil)
			}
		}()
	}
	wg.Wait()
}
