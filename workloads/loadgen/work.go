package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// spawned counts the goroutines this program's `go` statements created:
// ground truth for goroutine creation on Go versions without
// /sched/goroutines-created.
var spawned int64

type node struct {
	next  *node
	value [4]int64
}

type blob struct {
	data [48]byte
}

var sink interface{}

func makeLiveSet(mb int) [][]byte {
	live := make([][]byte, 0, mb*16)
	for i := 0; i < mb*16; i++ {
		live = append(live, make([]byte, 64<<10))
	}
	return live
}

// allocMix allocates tiny, small, medium and large objects in fixed counts.
func allocMix() {
	for i := 0; i < 200000; i++ {
		b := new(byte) // tiny
		*b = byte(i)
		sink = b
		sink = &node{}           // 40 B, pointers
		sink = &blob{}           // 48 B, no pointers
		sink = make([]byte, 200) // small noscan
	}
	for i := 0; i < 2000; i++ {
		sink = make([]byte, 40<<10) // large-ish (size class 40960)
	}
	for i := 0; i < 200; i++ {
		sink = make([]byte, 256<<10) // large objects (> 32 KiB)
	}
}

// gcPressure allocates garbage while a list keeps a live heap, so the GC runs
// many cycles and goroutines mark-assist.
func gcPressure() {
	var head *node
	for i := 0; i < 3000000; i++ {
		n := &node{next: head}
		if i%64 == 0 {
			head = n
		}
		if i%100000 == 0 {
			head = nil
		}
	}
	sink = head
}

func spawnGoroutines() {
	var wg sync.WaitGroup
	for i := 0; i < 20000; i++ {
		wg.Add(1)
		atomic.AddInt64(&spawned, 1)
		go func() {
			defer wg.Done()
			runtime.Gosched()
		}()
	}
	wg.Wait()
}

func backgroundLoad(kind string, scale int) {
	for {
		runBatch(kind, scale)
		time.Sleep(100 * time.Millisecond)
	}
}
