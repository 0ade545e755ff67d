//go:build cgo

package main

/*
#include <time.h>
static int cadd(int a, int b) { return a + b; }
static void cwait(long ns) { struct timespec t = {0, ns}; nanosleep(&t, 0); }
*/
import "C"

import "time"

var cgoSum int

// cgoSlowCalls makes 1000 cgo calls that each sleep 200 µs in C, timing
// each from Go; returns the call durations in call order (ground truth
// for cgo latency).
func cgoSlowCalls() []time.Duration {
	durations := make([]time.Duration, 0, 1000)
	for i := 0; i < 1000; i++ {
		start := time.Now()
		C.cwait(200000)
		durations = append(durations, time.Since(start))
	}
	return durations
}

func cgoCalls() {
	for i := 0; i < 20000; i++ {
		cgoSum += int(C.cadd(C.int(i), 1))
	}
}
