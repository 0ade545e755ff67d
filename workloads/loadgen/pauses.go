package main

// Pause ring on request: with LOADGEN_PAUSES=1 in the environment, SIGUSR1
// makes the program print its own record of recent GC pauses on stderr,
// as one line "pauses <json>": memstats.NumGC and, for each of the last
// min(NumGC, 256) cycles, runtime.MemStats.PauseNs (both STW pauses of
// the cycle, ns) and PauseEnd (the wall clock, unix ns, at the end of
// mark termination). Ground truth for `goscope trace`'s STW slices;
// gctrace rounds to two digits, too coarse.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

type pauseRecord struct {
	Cycle    uint32 `json:"cycle"`
	PauseNs  uint64 `json:"pause_ns"`
	PauseEnd uint64 `json:"pause_end_unix_ns"`
}

type pauseRing struct {
	NumGC  uint32        `json:"num_gc"`
	Cycles []pauseRecord `json:"cycles"`
}

func init() {
	if os.Getenv("LOADGEN_PAUSES") != "1" {
		return
	}
	requests := make(chan os.Signal, 1)
	signal.Notify(requests, syscall.SIGUSR1)
	go func() {
		for range requests {
			printPauses()
		}
	}()
}

func printPauses() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	ring := pauseRing{NumGC: m.NumGC}
	n := m.NumGC
	if n > uint32(len(m.PauseNs)) {
		n = uint32(len(m.PauseNs))
	}
	for cycle := m.NumGC - n + 1; cycle <= m.NumGC; cycle++ {
		// Cycle c is stored at (c+255)%256, as the runtime's docs say.
		i := (cycle + 255) % uint32(len(m.PauseNs))
		ring.Cycles = append(ring.Cycles, pauseRecord{cycle, m.PauseNs[i], m.PauseEnd[i]})
	}
	text, err := json.Marshal(ring)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		return
	}
	fmt.Fprintf(os.Stderr, "pauses %s\n", text)
}
