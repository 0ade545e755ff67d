//go:build cgo

package main

/*
#include <time.h>
static int cadd(int a, int b) { return a + b; }
// cwait sleeps ns and returns how long it took by its own CLOCK_MONOTONIC
// (the clock the kernel's probes read), from inside the C call.
static long cwait(long ns) {
	struct timespec t = {0, ns}, before, after;
	clock_gettime(CLOCK_MONOTONIC, &before);
	nanosleep(&t, 0);
	clock_gettime(CLOCK_MONOTONIC, &after);
	return (after.tv_sec - before.tv_sec) * 1000000000L + (after.tv_nsec - before.tv_nsec);
}
*/
import "C"

import "time"

var cgoSum int

// cgoSlowCalls makes 1000 cgo calls that each sleep 200 µs in C, timing
// each from Go around the call and from C inside it; returns them in call
// order (ground truth for cgo latency: a probe's view of a call lies
// between the two).
func cgoSlowCalls() []cgoCall {
	calls := make([]cgoCall, 0, 1000)
	for i := 0; i < 1000; i++ {
		start := time.Now()
		inside := C.cwait(200000)
		calls = append(calls, cgoCall{around: time.Since(start), inside: time.Duration(inside)})
	}
	return calls
}

func cgoCalls() {
	for i := 0; i < 20000; i++ {
		cgoSum += int(C.cadd(C.int(i), 1))
	}
}
