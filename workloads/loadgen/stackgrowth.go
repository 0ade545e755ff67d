package main

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// The "stack-growth" workload: a service that starts one goroutine per
// request and whose request handler recurses deeply, so that most of its
// CPU goes to growing goroutine stacks (runtime.newstack, copystack,
// adjustframe and the pcvalue lookups behind them) rather than to the
// handler's own work. Every goroutine starts at the runtime's starting
// stack size and doubles its stack on the way down (a goroutine's grown
// stack is freed when it exits, so the next one starts small again). The
// handler allocates nothing on the heap, so no GC runs in the batch and
// the runtime's adaptive starting stack size (Go 1.19+, computed at GC)
// stays where it is. Ground truth: stackGrowthRequests goroutines per
// batch (counted in spawned), each reaching stackGrowthDepth frames of
// stackGrowthFrame bytes or more (about 1 MiB of stack).

const (
	stackGrowthRequests    = 2000
	stackGrowthConcurrency = 8
	stackGrowthDepth       = 8000
)

var stackGrowthSink uint64

// stackGrowthFrame recurses depth frames deep; each frame keeps a small
// array live across the call so that it has a real frame (about 128 B).
//
//go:noinline
func stackGrowthFrame(depth int, acc uint64) uint64 {
	var pad [8]uint64
	pad[depth&7] = acc
	if depth == 0 {
		return pad[0] + pad[7]
	}
	return stackGrowthFrame(depth-1, acc*31+uint64(depth)) + pad[(depth+3)&7]
}

// stackGrowth runs stackGrowthRequests requests, each in its own
// goroutine, at most stackGrowthConcurrency at a time.
func stackGrowth() {
	var wg sync.WaitGroup
	slots := make(chan struct{}, stackGrowthConcurrency)
	var sum uint64
	for i := 0; i < stackGrowthRequests; i++ {
		slots <- struct{}{}
		wg.Add(1)
		atomic.AddInt64(&spawned, 1)
		go func(seed uint64) {
			defer wg.Done()
			atomic.AddUint64(&sum, stackGrowthFrame(stackGrowthDepth, seed))
			<-slots
		}(uint64(i))
	}
	wg.Wait()
	atomic.AddUint64(&stackGrowthSink, sum)
	runtime.KeepAlive(slots)
}
