package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// options are the harness's flags.
type options struct {
	round       time.Duration // length of a timed round
	rounds      int           // rounds of each kind
	callers     int           // concurrent callers of the cached rounds
	coldKeys    int           // distinct cold keys per cold round
	coldCallers int
	identical   int // identical cold callers
	rssCallers  int
	rssConns    int
	rsaBits     int
	portvakt    string   // a built portvakt; empty: build one
	keep        bool     // keep the state directory
	profile     string   // a directory for profiles; empty: none
	daemonEnv   []string // added to the daemon's environment
	floor       bool     // measure the framework's floor too
}

func defaultOptions() options {
	return options{
		round: 3 * time.Second, rounds: 5, callers: 16,
		coldKeys: 1000, coldCallers: 50, identical: 200,
		rssCallers: 1000, rssConns: 100, rsaBits: 3072, floor: true,
	}
}

func main() {
	o := defaultOptions()
	flag.DurationVar(&o.round, "round", o.round, "length of each timed round")
	flag.IntVar(&o.rounds, "rounds", o.rounds, "rounds of each kind, interleaved; figures are their medians")
	flag.IntVar(&o.callers, "callers", o.callers, "concurrent callers of the cached and no-op rounds (one connection)")
	flag.IntVar(&o.coldKeys, "cold-keys", o.coldKeys, "distinct cold keys (consumer organisations) per cold round, and bare signatures per HSM round")
	flag.IntVar(&o.coldCallers, "cold-callers", o.coldCallers, "concurrent callers of the cold and HSM rounds")
	flag.IntVar(&o.identical, "identical", o.identical, "identical cold callers released at once")
	flag.IntVar(&o.rssCallers, "rss-callers", o.rssCallers, "concurrent callers of the peak-RSS round")
	flag.IntVar(&o.rssConns, "rss-conns", o.rssConns, "mTLS connections of the peak-RSS round")
	flag.IntVar(&o.rsaBits, "rsa-bits", o.rsaBits, "size of the eSeal's RSA key in the HSM")
	flag.StringVar(&o.portvakt, "portvakt", "", "the portvakt binary to run (default: go build one, without -race)")
	flag.StringVar(&o.profile, "profile", "", "save profiles into this directory: the daemon's CPU in each timed round and its heap after the peak-RSS round (from a build with -tags pprof, which replaces -portvakt), and this process's CPU")
	flag.Func("daemon-env", "`NAME=VALUE` added to the daemon's environment (GOGC, GOMEMLIMIT, GODEBUG...), for experiments; repeat for more", func(v string) error {
		if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
			return fmt.Errorf("%q: give NAME=VALUE", v)
		}
		o.daemonEnv = append(o.daemonEnv, v)
		return nil
	})
	flag.BoolVar(&o.floor, "floor", o.floor, "measure the framework's floor as well: the cached and peak-RSS rounds again on a build (-tags benchfloor) whose GetToken answers with its first reply")
	flag.BoolVar(&o.keep, "keep", false, "keep the state directory (configuration, audit, the daemon's log) and print where it is")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

// run measures everything and prints the table to out, progress to
// progress.
func run(ctx context.Context, o options, out, progress io.Writer) (*results, error) {
	dir, err := os.MkdirTemp("", "pvb") // short: a Unix socket path has about 100 bytes
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintln(progress, "state directory (kept):", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	prof, err := newProfiler(o.profile)
	if err != nil {
		return nil, fmt.Errorf("-profile %s: %w", o.profile, err)
	}
	defer prof.stop(progress)
	binary := o.portvakt
	if prof.on() {
		fmt.Fprintln(progress, "building portvakt with -tags pprof (without -race), for -profile")
		if binary, err = prof.build(dir); err != nil {
			return nil, err
		}
	} else if binary == "" {
		fmt.Fprintln(progress, "building portvakt (without -race)")
		if binary, err = buildPortvakt(dir); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(progress, "provisioning a SoftHSM2 token (RSA-%d), %d delegations, mTLS certificates\n", o.rsaBits, o.coldKeys)
	w, err := newWorld(dir, o.coldKeys, o.rsaBits)
	if err != nil {
		return nil, err
	}
	defer w.close()
	res, err := onDaemon(ctx, o, w, progress, prof, binary, append(prof.env(), o.daemonEnv...), func(b *bench) []func(context.Context) error {
		return []func(context.Context) error{b.cached, b.peakRSS, b.cold, b.identicalCallers}
	})
	if err != nil {
		return nil, err
	}
	res.stateDir = dir
	if o.floor {
		if res.floor, err = floor(ctx, o, w, progress); err != nil {
			return nil, err
		}
	}
	res.machine = describeMachine()
	res.print(out)
	return res, nil
}

// onDaemon starts binary on w with env added to its environment, reads
// its peak RSS once serving, and runs on it the phases that phases gives
// for its bench, in order. The daemon is stopped when they are done (its
// audit log complete, for whoever reads it after).
func onDaemon(ctx context.Context, o options, w *world, progress io.Writer, prof *profiler, binary string, env []string, phases func(*bench) []func(context.Context) error) (*results, error) {
	d, err := startDaemon(ctx, binary, w, env...)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	b := &bench{o: o, w: w, d: d, progress: progress, res: newResults(o), prof: prof}
	if b.res.peakAtStart, err = d.peakRSS(); err != nil {
		return nil, err
	}
	for _, phase := range phases(b) {
		if err := phase(ctx); err != nil {
			return nil, err
		}
	}
	return b.res, nil
}

// floor measures what no GetToken can beat on this machine: the cached
// and peak-RSS rounds again, against the no-op as before, on the same
// world served by a build with -tags benchfloor (daemon/benchfloor.go),
// whose GetToken answers every call after its first with that first
// reply. What the daemon does for a cached token (identity, policy,
// cache, audit) is then not done; gRPC, the interceptors and messages
// of GetToken's size are as before.
func floor(ctx context.Context, o options, w *world, progress io.Writer) (*results, error) {
	fmt.Fprintln(progress, "the framework's floor: building portvakt with -tags benchfloor")
	binary, err := buildPortvakt(w.dir, "benchfloor")
	if err != nil {
		return nil, err
	}
	res, err := onDaemon(ctx, o, w, progress, &profiler{}, binary, o.daemonEnv, func(b *bench) []func(context.Context) error {
		return []func(context.Context) error{b.cached, b.peakRSS}
	})
	if err != nil {
		return nil, fmt.Errorf("the framework's floor: %w", err)
	}
	return res, nil
}
