//go:build cgo

package main

/*
#include <unistd.h>
static void cblock(void) { for (;;) sleep(3600); }
*/
import "C"

import "sync"

const cgoAvailable = true

//go:noinline
func cgoBlock(ready *sync.WaitGroup) {
	ready.Done()
	C.cblock()
}

func startCgo(n int, ready *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		go cgoBlock(ready)
	}
}
