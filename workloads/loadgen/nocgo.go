//go:build !cgo

package main

func cgoCalls() {}
