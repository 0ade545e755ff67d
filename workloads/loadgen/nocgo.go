//go:build !cgo

package main

import "time"

func cgoCalls() {}

func cgoSlowCalls() []time.Duration { return nil }
