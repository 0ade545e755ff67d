// Command minimal is the smallest Go program goscope's runtime table is
// checked against: no cgo, no runtime/metrics, so the linker keeps only
// the runtime functions every Go program has.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
)

var sink []byte

func main() {
	fmt.Printf("ready %d %s\n", os.Getpid(), runtime.Version())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "quit" {
			return
		}
		for i := 0; i < 100000; i++ {
			sink = make([]byte, 64)
		}
	}
}
