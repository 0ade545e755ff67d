//go:build !cgo

package main

func cgoCalls() {}

func cgoSlowCalls() []cgoCall { return nil }
