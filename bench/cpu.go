package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTicks = 100

// cpuSample is the CPU time used so far, in clock ticks, by each part of
// the system under load: the servers, PostgreSQL, Redis, this load
// generator, and the whole machine (busy, from /proc/stat), so that a
// phase can tell where its CPU went.
type cpuSample map[string]int64

// serverComm is the command name of the built server (its file name).
const serverComm = "billing-server"

func sampleCPU() cpuSample {
	s := cpuSample{}
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(d + "/comm")
		if err != nil {
			continue
		}
		var part string
		name := strings.TrimSpace(string(comm))
		switch {
		case filepath.Base(d) == self:
			part = "bench"
		case name == serverComm:
			part = "server"
		case name == "postgres" || strings.HasPrefix(name, "postgres:"):
			part = "postgres"
		case strings.HasPrefix(name, "redis-server"):
			part = "redis"
		case name == "stripe-mock":
			part = "stripe-mock"
		default:
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command (which may hold spaces) start after
		// the last ')'; utime and stime are fields 14 and 15.
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		s[part] += u + st
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		var busy int64
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if i != 3 && i != 4 { // not idle, not iowait
				busy += n
			}
			if i == 5 || i == 6 { // irq, softirq: loopback networking, charged to no process
				s["irq"] += n
			}
		}
		s["machine"] = busy
	}
	return s
}

// cpuPerOp returns, for each part, the CPU microseconds it used per
// operation between two samples; "other" is the rest of the machine's
// busy time (other users of this shared machine, the kernel's threads);
// "irq" is interrupt and softirq time (loopback networking), which no
// process is charged with.
func cpuPerOp(a, b cpuSample, ops int) map[string]float64 {
	out := map[string]float64{}
	if ops == 0 || a == nil || b == nil {
		return out
	}
	var parts int64
	for k, v := range b {
		d := v - a[k]
		out[k] = float64(d) * 1e6 / clockTicks / float64(ops)
		if k != "machine" {
			parts += d
		}
	}
	// "other" is what no part above accounts for: other processes on
	// this shared machine, and the kernel's own threads.
	out["other"] = float64(b["machine"]-a["machine"]-parts) * 1e6 / clockTicks / float64(ops)
	return out
}

// cpuText formats cpuPerOp's figures.
func cpuText(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range []string{"server", "postgres", "redis", "bench", "irq", "other", "machine"} {
		if v, ok := m[k]; ok && (v >= 0.5 || k == "machine") {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
		}
	}
	return "CPU µs/op: " + strings.Join(parts, ", ")
}
