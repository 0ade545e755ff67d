package main

import (
	"hash/fnv"
	"sort"
	"strconv"
)

// batchChecksum is a deterministic computation over allocated maps, slices,
// strings and sorting: the same value on every Go version and build. A
// target whose code was corrupted (an instruction cut by a misplaced
// breakpoint) crashes or reports another value.
func batchChecksum() uint64 {
	m := make(map[string][]int, 4096)
	for i := 0; i < 20000; i++ {
		k := strconv.Itoa(i * 7919 % 4093)
		m[k] = append(m[k], i)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := fnv.New64a()
	for _, k := range keys {
		h.Write([]byte(k))
		for _, v := range m[k] {
			h.Write([]byte(strconv.Itoa(v)))
		}
	}
	return h.Sum64()
}
