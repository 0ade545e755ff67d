// Command spawner is the target of goscope's goroutine-table tests: two
// `go` statements (startShort, startLong) create goroutines at 4:1, the
// first's living microseconds, the second's 100 ms, so that creation sites
// read from the runtime's goroutine table can be checked against known
// shares; and it can hold goroutines of both sites at a quiescent point it
// announces, so that live goroutines by creation site can be checked
// exactly.
//
// Protocol (line based):
//
//	stdout: "ready <pid> <goversion>" at start
//	stdin:  "churn SECONDS [RATE]" -> creates RATE goroutines/s (default
//	        10000: 4 short for each long) for SECONDS, waits for all of
//	        them to end, prints "churned short=N long=M"
//	stdin:  "hold SHORT LONG" -> starts SHORT goroutines at startShort and
//	        LONG at startLong that block on a channel, prints
//	        "holding short=SHORT long=LONG" (nothing else runs until
//	        "release")
//	stdin:  "release" -> unblocks them, waits for them, prints "released"
//	stdin:  "quit" or EOF -> exits 0
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// longLife is how long a startLong goroutine lives during a churn.
const longLife = 100 * time.Millisecond

var (
	wg        sync.WaitGroup
	shortRuns atomic.Int64
)

// startShort's goroutine ends at once (microseconds), unless hold is set.
//
//go:noinline
func startShort(hold <-chan struct{}) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if hold != nil {
			<-hold
		}
		shortRuns.Add(1)
	}()
}

// startLong's goroutine lives longLife, or until hold is closed.
//
//go:noinline
func startLong(hold <-chan struct{}) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if hold != nil {
			<-hold
			return
		}
		time.Sleep(longLife)
	}()
}

// churn creates rate goroutines per second for d, four at startShort for
// each one at startLong, evenly interleaved; returns the counts.
func churn(d time.Duration, rate float64) (short, long int) {
	start := time.Now()
	created := 0
	for {
		elapsed := time.Since(start)
		if elapsed >= d {
			break
		}
		want := int(elapsed.Seconds() * rate)
		for ; created < want; created++ {
			if created%5 == 4 {
				startLong(nil)
				long++
			} else {
				startShort(nil)
				short++
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	wg.Wait()
	return short, long
}

func main() {
	fmt.Printf("ready %d %s\n", os.Getpid(), runtime.Version())
	var hold chan struct{}
	commands := bufio.NewScanner(os.Stdin)
	for commands.Scan() {
		fields := strings.Fields(commands.Text())
		if len(fields) == 0 {
			continue
		}
		number := func(i int, fallback float64) float64 {
			if i >= len(fields) {
				return fallback
			}
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				fmt.Fprintf(os.Stderr, "spawner: %q: %v\n", fields[i], err)
				os.Exit(2)
			}
			return v
		}
		switch fields[0] {
		case "churn":
			d := time.Duration(number(1, 5) * float64(time.Second))
			short, long := churn(d, number(2, 10000))
			fmt.Printf("churned short=%d long=%d\n", short, long)
		case "hold":
			hold = make(chan struct{})
			short, long := int(number(1, 0)), int(number(2, 0))
			for i := 0; i < short; i++ {
				startShort(hold)
			}
			for i := 0; i < long; i++ {
				startLong(hold)
			}
			fmt.Printf("holding short=%d long=%d\n", short, long)
		case "release":
			if hold != nil {
				close(hold)
				hold = nil
			}
			wg.Wait()
			fmt.Println("released")
		case "quit":
			return
		default:
			fmt.Fprintf(os.Stderr, "spawner: unknown command %q\n", fields[0])
		}
	}
}
