package main

import (
	"runtime"
	"sync"
)

// The "sites-pair" workload: two functions allocate objects of the same
// size class (node48) at 3:1 bytes, interleaved in time, on GOMAXPROCS
// goroutines, so that the allocator's CPU splits 3:1 between them too. The
// runtime's heap profile stays off (loadgen's linker disables it): the
// shares are what the CPU sampler or the span-refill probes attribute.
// Ground truth in siteBytes, as for "sites".

var pairSinks [64]*node48

//go:noinline
func pairMajor(slot, n int) {
	for i := 0; i < n; i++ {
		pairSinks[slot] = &node48{}
	}
}

//go:noinline
func pairMinor(slot, n int) {
	for i := 0; i < n; i++ {
		pairSinks[slot] = &node48{}
	}
}

// allocPair runs 400 rounds of 3,000 major and 1,000 minor allocations
// on each of GOMAXPROCS goroutines (76.8 MB per goroutine).
func allocPair() {
	const rounds, minor = 400, 1000
	workers := runtime.GOMAXPROCS(0)
	if workers > len(pairSinks)/8 {
		workers = len(pairSinks) / 8
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(slot int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				pairMajor(slot, 3*minor)
				pairMinor(slot, minor)
			}
		}(w * 8)
	}
	wg.Wait()
	siteMu.Lock()
	siteBytes["main.pairMajor"] += int64(workers * rounds * 3 * minor * 48)
	siteBytes["main.pairMinor"] += int64(workers * rounds * minor * 48)
	siteMu.Unlock()
}
