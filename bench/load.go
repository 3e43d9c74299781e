package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// newClient returns an HTTP client keeping up to conns connections to one
// host alive, so that a closed loop of conns workers uses exactly conns
// connections. Its user closes them (CloseIdleConnections) when its phase
// ends: the server keeps a goroutine and buffers per open connection, and
// connections left to the 90 s idle timeout would end in the middle of a
// later phase's memory measurement (B3's 1,000 did, in B5's).
func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// latencyStats summarises a phase.
type latencyStats struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	MinSecRate float64 `json:"min_1s_rate"` // slowest one-second window: how stable the phase was
	MaxSecRate float64 `json:"max_1s_rate"`
	FirstError string  `json:"first_error,omitempty"`
	// CPU is the CPU time per request of each part of the system during
	// the measured window, in microseconds (cpu.go).
	CPU map[string]float64 `json:"cpu_us_per_op,omitempty"`
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func summarize(lat []time.Duration, errs int, firstErr string, elapsed time.Duration, perSec []int) latencyStats {
	slices.Sort(lat)
	s := latencyStats{
		Requests: len(lat), Errors: errs, Seconds: elapsed.Seconds(),
		PerSecond: float64(len(lat)) / elapsed.Seconds(),
		P50ms:     ms(percentile(lat, 0.50)), P99ms: ms(percentile(lat, 0.99)),
		FirstError: firstErr,
	}
	if len(lat) > 0 {
		s.MaxMs = ms(lat[len(lat)-1])
	}
	if len(perSec) > 0 {
		s.MinSecRate, s.MaxSecRate = float64(slices.Min(perSec)), float64(slices.Max(perSec))
	}
	return s
}

// closedLoop runs conc workers calling do back to back: warm-up first
// (results discarded), then the measured window. Only calls that start and
// end inside the window count.
func closedLoop(ctx context.Context, conc int, warm, dur time.Duration, do func(ctx context.Context, worker int) error) latencyStats {
	start := time.Now()
	mStart := start.Add(warm)
	mEnd := mStart.Add(dur)
	secs := int(dur/time.Second) + 1
	var (
		mu       sync.Mutex
		all      []time.Duration
		errs     int
		firstErr string
		perSec   = make([]int, secs)
		wg       sync.WaitGroup
	)
	var cpu0, cpu1 cpuSample
	cpuDone := make(chan struct{})
	go func() {
		defer close(cpuDone)
		time.Sleep(time.Until(mStart))
		cpu0 = sampleCPU()
		time.Sleep(time.Until(mEnd))
		cpu1 = sampleCPU()
	}()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			bucket := make([]int, secs)
			nerr := 0
			var ferr string
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(mEnd) {
					break
				}
				err := do(ctx, w)
				t1 := time.Now()
				if t0.Before(mStart) || t1.After(mEnd) {
					continue
				}
				if err != nil {
					nerr++
					if ferr == "" {
						ferr = err.Error()
					}
					continue
				}
				lat = append(lat, t1.Sub(t0))
				bucket[int(t1.Sub(mStart)/time.Second)]++
			}
			mu.Lock()
			all = append(all, lat...)
			errs += nerr
			if firstErr == "" {
				firstErr = ferr
			}
			for i, n := range bucket {
				perSec[i] += n
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	// The last bucket is a partial second; drop it from the stability range.
	full := perSec[:int(dur/time.Second)]
	st := summarize(all, errs, firstErr, dur, full)
	<-cpuDone
	st.CPU = cpuPerOp(cpu0, cpu1, st.Requests)
	return st
}

// gqlCall posts a GraphQL body and fails on a non-200 answer or a
// response with errors.
func gqlCall(ctx context.Context, c *http.Client, url, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", res.StatusCode, b)
	}
	if bytes.Contains(b, []byte(`"errors"`)) {
		return fmt.Errorf("GraphQL errors: %.300s", b)
	}
	return nil
}

// gqlData posts a GraphQL body and returns the raw answer.
func gqlData(ctx context.Context, c *http.Client, url, token string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"errors"`)) {
		return b, fmt.Errorf("HTTP %d: %.300s", res.StatusCode, b)
	}
	return b, nil
}
