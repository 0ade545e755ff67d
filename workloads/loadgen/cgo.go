//go:build cgo

package main

/*
static int cadd(int a, int b) { return a + b; }
*/
import "C"

var cgoSum int

func cgoCalls() {
	for i := 0; i < 20000; i++ {
		cgoSum += int(C.cadd(C.int(i), 1))
	}
}
