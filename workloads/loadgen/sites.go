package main

import "sync"

// The "sites" workload: three functions allocate objects whose sizes are
// exact size classes (so requested bytes equal the runtime's elemsize
// accounting) in fixed proportions, interleaved in time, into typed sinks
// (no interface conversions that would allocate too). siteBytes is the
// ground truth of bytes allocated per function, reported with each batch.

// node48 is 48 bytes with pointers (size class 48).
type node48 struct {
	next *node48
	pad  [5]int64
}

var (
	nodeSink  *node48
	bytesSink []byte
	siteMu    sync.Mutex
	siteBytes = map[string]int64{}
)

//go:noinline
func allocNodes(n int) {
	for i := 0; i < n; i++ {
		nodeSink = &node48{}
	}
}

//go:noinline
func allocBuffers(n int) {
	for i := 0; i < n; i++ {
		bytesSink = make([]byte, 1024)
	}
}

//go:noinline
func allocLarge(n int) {
	for i := 0; i < n; i++ {
		bytesSink = make([]byte, 64<<10)
	}
}

// allocSites runs 400 rounds of: 1000 nodes (48 KB), 50 buffers (51 KB),
// 1 large object (64 KB).
func allocSites() {
	const rounds, nodes, buffers, large = 400, 1000, 50, 1
	for r := 0; r < rounds; r++ {
		allocNodes(nodes)
		allocBuffers(buffers)
		allocLarge(large)
	}
	siteMu.Lock()
	siteBytes["main.allocNodes"] += rounds * nodes * 48
	siteBytes["main.allocBuffers"] += rounds * buffers * 1024
	siteBytes["main.allocLarge"] += rounds * large * (64 << 10)
	siteMu.Unlock()
}

// takeSiteBytes returns and resets the per-function truth.
func takeSiteBytes() map[string]int64 {
	siteMu.Lock()
	defer siteMu.Unlock()
	out := siteBytes
	siteBytes = map[string]int64{}
	return out
}
