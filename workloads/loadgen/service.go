package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
)

// The "service" workload: what a small JSON service does per request, in
// fixed counts. Each transaction runs in its own goroutine (at most
// serviceConcurrency at a time, as a server's connection handlers would):
// it formats keys with fmt.Sprintf, encodes a request with encoding/json,
// decodes it back into a struct and into a generic map, aggregates into
// per-transaction maps and a shared table behind a mutex, and formats a
// response line. Every serviceLookupEvery-th transaction looks an account
// up with os/user, which in a cgo build is a handful of cgo calls
// (getpwuid_r and its buffer's malloc/free), as a service's occasional
// getaddrinfo or C library call would be; without cgo it is pure Go.

const (
	serviceTransactions = 4000
	serviceConcurrency  = 64
	serviceLookupEvery  = 100
)

type serviceItem struct {
	SKU      string  `json:"sku"`
	Quantity int     `json:"quantity"`
	Price    float64 `json:"price"`
}

type serviceRequest struct {
	ID       int               `json:"id"`
	Customer string            `json:"customer"`
	Items    []serviceItem     `json:"items"`
	Tags     map[string]string `json:"tags"`
}

var (
	serviceMu      sync.Mutex
	serviceTotals  = map[string]float64{}
	serviceLookups int64
	serviceSink    string
)

// serviceLookupUID is an account other than the process's own: os/user
// answers a lookup of the current user from a cache, with no cgo call.
func serviceLookupUID() string {
	if os.Getuid() == 0 {
		return "1"
	}
	return "0"
}

// serviceBatch runs serviceTransactions transactions, one goroutine each.
func serviceBatch() {
	var wg sync.WaitGroup
	slots := make(chan struct{}, serviceConcurrency)
	for i := 0; i < serviceTransactions; i++ {
		slots <- struct{}{}
		wg.Add(1)
		atomic.AddInt64(&spawned, 1)
		go func(id int) {
			defer func() {
				<-slots
				wg.Done()
			}()
			serviceTransaction(id)
		}(i)
	}
	wg.Wait()
	serviceMu.Lock()
	// Keep the shared table bounded across batches.
	if len(serviceTotals) > 4096 {
		serviceTotals = map[string]float64{}
	}
	serviceMu.Unlock()
}

func serviceTransaction(id int) {
	req := serviceRequest{
		ID:       id,
		Customer: fmt.Sprintf("customer-%04d", id%997),
		Tags: map[string]string{
			"region":  fmt.Sprintf("region-%d", id%7),
			"channel": "web",
			"trace":   strconv.FormatInt(int64(id)*2654435761, 16),
		},
	}
	for j := 0; j < 3+id%5; j++ {
		req.Items = append(req.Items, serviceItem{
			SKU:      fmt.Sprintf("sku-%d-%d", id%113, j),
			Quantity: 1 + j,
			Price:    float64(id%50) + 0.25*float64(j),
		})
	}
	body, err := json.Marshal(&req)
	if err != nil {
		panic(err)
	}
	var decoded serviceRequest
	if err := json.Unmarshal(body, &decoded); err != nil {
		panic(err)
	}
	var generic map[string]interface{}
	if err := json.Unmarshal(body, &generic); err != nil {
		panic(err)
	}
	bySKU := make(map[string]float64, len(decoded.Items))
	total := 0.0
	for _, it := range decoded.Items {
		v := float64(it.Quantity) * it.Price
		bySKU[it.SKU] += v
		total += v
	}
	if id%serviceLookupEvery == 0 {
		if u, err := user.LookupId(serviceLookupUID()); err == nil && u.Username != "" {
			atomic.AddInt64(&serviceLookups, 1)
		}
	}
	resp, err := json.Marshal(map[string]interface{}{
		"id":     decoded.ID,
		"total":  total,
		"skus":   len(bySKU),
		"fields": len(generic),
	})
	if err != nil {
		panic(err)
	}
	line := fmt.Sprintf("200 OK %s %s", decoded.Customer, resp)
	serviceMu.Lock()
	serviceTotals[decoded.Customer] += total
	serviceSink = line
	serviceMu.Unlock()
}
