package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// summary is what the table keeps of a round.
type summary struct {
	calls     int
	elapsed   time.Duration
	perSecond float64
	p50, p99  time.Duration
	// The CPU time the daemon, and this process (the load client, the
	// simulator, the bare signatures), used during the round, and the
	// daemon's write system calls.
	usage
}

func summarise(r round) summary {
	return summary{calls: r.calls, elapsed: r.elapsed, perSecond: r.throughput(), p50: r.quantile(0.50), p99: r.quantile(0.99)}
}

// results are the figures of one run.
type results struct {
	opts                                   options
	noop, get                              map[string][]summary // by transport
	bare, cold                             []summary
	rssRound                               summary
	peakRSS                                int64
	rssAnon, rssFile                       int64   // at the peak-RSS round's end
	midStacks, midHeap                     float64 // the daemon's stacks and heap in use halfway through it
	peakAtStart, peakBefore                int64   // VmHWM once serving, and before the peak-RSS round
	identicalSigns, identicalPosts         int
	auditBytesPerCall, auditRecordsPerCall float64
	auditRecordsPerWrite                   float64  // group commit's sharing, over the cached rounds
	floor                                  *results // the framework's floor (options.floor), or nil
	machine                                string
	stateDir                               string // removed after the run unless options.keep
}

func newResults(o options) *results {
	return &results{opts: o, noop: map[string][]summary{}, get: map[string][]summary{}}
}

// median of f over the rounds.
func median[T int | float64 | time.Duration](rounds []summary, f func(summary) T) T {
	v := make([]T, len(rounds))
	for i, r := range rounds {
		v[i] = f(r)
	}
	return medianOf(v)
}

func medianOf[T int | float64 | time.Duration](v []T) T {
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// pairedRatio is the median over rounds of f(a[i]) / f(b[i]), each a
// round and the round of the other kind run just before it: a machine
// whose speed drifts (a neighbour's load on a shared host) moves both
// rounds of a pair alike, where the ratio of two medians would mix
// rounds run minutes apart.
func pairedRatio[T float64 | time.Duration](a, b []summary, f func(summary) T) float64 {
	ratios := make([]float64, min(len(a), len(b)))
	for i := range ratios {
		ratios[i] = float64(f(a[i])) / float64(f(b[i]))
	}
	return medianOf(ratios)
}

func perSecond(s summary) float64 { return s.perSecond }
func p50(s summary) time.Duration { return s.p50 }
func p99(s summary) time.Duration { return s.p99 }

// Row labels: the test looks for each.
const (
	rowThroughput = "cached/no-op throughput, %s"
	rowP99        = "cached/no-op p99, %s"
	rowCPU        = "cached/no-op daemon CPU per call, %s"
	rowCold       = "cold keys/bare HSM signatures"
	rowColdCeil   = "cold keys' ceiling: a daemon spending only its signature"
	rowSigns      = "identical cold callers: HSM signatures"
	rowPosts      = "identical cold callers: token POSTs"
	rowRSS        = "peak RSS (VmHWM)"
	rowAuditBytes = "audit bytes per cached call"
	rowAuditRecs  = "audit records per cached call"
	rowAuditGroup = "audit records per write, cached rounds (group commit)"
	rowFloor      = "floor/no-op throughput, %s"
	rowFloorP99   = "floor/no-op p99, %s"
	rowFloorShare = "cached/floor throughput, %s"
	rowFloorRSS   = "floor peak RSS (VmHWM)"
)

func (r *results) print(out io.Writer) {
	o := r.opts
	w := bufio.NewWriter(out)
	defer w.Flush()
	fmt.Fprintf(w, "Portvakt end-to-end benchmark (make bench-e2e)\n")
	fmt.Fprintf(w, "machine: %s\n", r.machine)
	fmt.Fprintf(w, "rounds: %d of each kind, interleaved, %s each; a ratio is the median of the ratios of rounds run side by side, other figures medians over rounds\n", o.rounds, o.round)
	fmt.Fprintf(w, "the daemon, the simulator and this load client share the machine's cores; the simulator signs tokens with ES256, not Maskinporten's RS256, to spend little of them\n\n")
	row := func(label, value, target string) { fmt.Fprintf(w, "%-58s %12s   %s\n", label, value, target) }
	ratio := func(v float64) string { return fmt.Sprintf("%.2f×", v) }
	for _, t := range []string{"unix", "mtls"} {
		row(fmt.Sprintf(rowThroughput, t)+fmt.Sprintf(" (%d callers)", o.callers),
			ratio(pairedRatio(r.get[t], r.noop[t], perSecond)), "(target ≥ 0.90)")
		row(fmt.Sprintf(rowP99, t),
			ratio(pairedRatio(r.get[t], r.noop[t], p99)), "(target ≤ 1.30)")
	}
	for _, t := range []string{"unix", "mtls"} {
		row(fmt.Sprintf(rowCPU, t),
			ratio(pairedRatio(r.get[t], r.noop[t], daemonCPUPerCall)),
			"(no target; steadier than throughput on a busy machine)")
	}
	row(fmt.Sprintf("%s (%d keys, %d callers)", rowCold, o.coldKeys, o.coldCallers),
		ratio(pairedRatio(r.cold, r.bare, perSecond)), "(target ≥ 0.80)")
	row(rowColdCeil, ratio(coldCeiling(r.bare, r.cold)), "(from CPU per call: what the simulator and load client leave)")
	row(fmt.Sprintf("%s (N = %d)", rowSigns, o.identical), fmt.Sprint(r.identicalSigns), "(target = 1)")
	row(fmt.Sprintf("%s (N = %d)", rowPosts, o.identical), fmt.Sprint(r.identicalPosts), "(target = 1)")
	row(fmt.Sprintf("%s, %d callers on %d mTLS conns", rowRSS, o.rssCallers, o.rssConns),
		fmt.Sprintf("%.1f MiB", float64(r.peakRSS)/(1<<20)), "(target ≤ 48 MiB)")
	row(rowAuditBytes, fmt.Sprintf("%.1f", r.auditBytesPerCall), "")
	row(rowAuditRecs, fmt.Sprintf("%.2f", r.auditRecordsPerCall), "")
	row(rowAuditGroup, fmt.Sprintf("%.2f", r.auditRecordsPerWrite), "")
	if f := r.floor; f != nil {
		fmt.Fprintf(w, "\nthe framework's floor: the same rounds on a build (-tags benchfloor) whose GetToken answers with its first reply, decoded,\n")
		fmt.Fprintf(w, "through the same interceptors and encoded, but with no identity, policy, cache or audit: no GetToken does better here\n")
		for _, t := range []string{"unix", "mtls"} {
			floorRatio := pairedRatio(f.get[t], f.noop[t], perSecond)
			row(fmt.Sprintf(rowFloor, t), ratio(floorRatio), "(the most a cached GetToken can reach)")
			row(fmt.Sprintf(rowFloorP99, t), ratio(pairedRatio(f.get[t], f.noop[t], p99)), "(the least)")
			// Each side a ratio of rounds run side by side, so that the
			// two daemons' runs, minutes apart, are compared through the
			// no-op each was paired with.
			row(fmt.Sprintf(rowFloorShare, t), ratio(pairedRatio(r.get[t], r.noop[t], perSecond)/floorRatio), "(the daemon's work on a cached call)")
		}
		row(fmt.Sprintf("%s, %d callers on %d mTLS conns", rowFloorRSS, o.rssCallers, o.rssConns),
			fmt.Sprintf("%.1f MiB", float64(f.peakRSS)/(1<<20)), "(the least)")
	}

	fmt.Fprintf(w, "\nfor context (medians; CPU per call: the daemon's, and this process's: load client, simulator, bare signatures):\n")
	abs := func(label string, rounds []summary, unit string) {
		fmt.Fprintf(w, "  %-40s %7.0f %-8s  p50 %9s  p99 %9s  CPU/call daemon %8s, harness %8s  daemon writes/call %5.2f\n", label, median(rounds, perSecond), unit,
			short(median(rounds, p50)), short(median(rounds, p99)),
			short(median(rounds, daemonCPUPerCall)), short(median(rounds, clientCPUPerCall)), median(rounds, writesPerCall))
	}
	for _, t := range []string{"unix", "mtls"} {
		abs("no-op (Health/Check), "+t, r.noop[t], "calls/s")
		abs("GetToken cached, "+t, r.get[t], "calls/s")
	}
	abs(fmt.Sprintf("GetToken cold, unix (%d keys)", o.coldKeys), r.cold, "tokens/s")
	abs(fmt.Sprintf("bare signer.Sign, RSA-%d (%d)", o.rsaBits, o.coldKeys), r.bare, "signs/s")
	abs(fmt.Sprintf("GetToken cached, mtls, %d callers", o.rssCallers), []summary{r.rssRound}, "calls/s")
	fmt.Fprintf(w, "  peak RSS once serving %.1f MiB, after the cached rounds %.1f MiB\n", float64(r.peakAtStart)/(1<<20), float64(r.peakBefore)/(1<<20))
	fmt.Fprintf(w, "  RSS at that round's end: anonymous %.1f MiB (heap, stacks, the HSM library), files %.1f MiB (the binary and libraries)\n",
		float64(r.rssAnon)/(1<<20), float64(r.rssFile)/(1<<20))
	fmt.Fprintf(w, "  halfway through it, with every caller in flight: goroutine stacks %.1f MiB, heap in use %.1f MiB\n",
		r.midStacks/(1<<20), r.midHeap/(1<<20))
	if f := r.floor; f != nil {
		for _, t := range []string{"unix", "mtls"} {
			abs("floor: no-op, "+t, f.noop[t], "calls/s")
			abs("floor: GetToken's first reply, "+t, f.get[t], "calls/s")
		}
		fmt.Fprintf(w, "  floor: RSS at the peak-RSS round's end: anonymous %.1f MiB, files %.1f MiB; halfway: stacks %.1f MiB, heap in use %.1f MiB\n",
			float64(f.rssAnon)/(1<<20), float64(f.rssFile)/(1<<20), f.midStacks/(1<<20), f.midHeap/(1<<20))
	}
}

// describeMachine is GOMAXPROCS, the CPU count and model.
func describeMachine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs, GOMAXPROCS %d, %s", model, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
}

// writesPerCall is a round's daemon write system calls per call.
func writesPerCall(s summary) float64 { return float64(s.daemonWrites) / float64(max(s.calls, 1)) }

// daemonCPUPerCall and clientCPUPerCall are a round's CPU time per call.
func daemonCPUPerCall(s summary) time.Duration { return s.daemonCPU / time.Duration(max(s.calls, 1)) }
func clientCPUPerCall(s summary) time.Duration { return s.clientCPU / time.Duration(max(s.calls, 1)) }

// short rounds a duration to three or four significant digits.
func short(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Millisecond)
	}
	if d >= time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(100 * time.Nanosecond)
}

// coldCeiling is the most the cold rounds could reach against the bare
// ones with a daemon that spent nothing but its signature: on cores kept
// busy, a bare round's rate is the cores over a signature's CPU, and a
// cold round's is the cores over the daemon's CPU per token and this
// process's (the simulator answering the POST, the load client), which
// the bare rounds do not pay. The median over pairs of rounds, as
// pairedRatio.
func coldCeiling(bare, cold []summary) float64 {
	ratios := make([]float64, min(len(bare), len(cold)))
	for i := range ratios {
		sign := float64(clientCPUPerCall(bare[i]))
		ratios[i] = sign / (sign + float64(clientCPUPerCall(cold[i])))
	}
	return medianOf(ratios)
}
