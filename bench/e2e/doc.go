// Command e2e is Portvakt's end-to-end benchmark harness (`make
// bench-e2e`): the daemon as a process, built without the race detector,
// on a fresh state directory (a SoftHSM2 token holding a 3072-bit eSeal
// key certified by a devca CA, a policy, mTLS certificates), in front of
// the Maskinporten simulator (mpsim) served over real HTTP from this
// process, and a Go gRPC load client of its own. It measures what issue
// 14 measured from outside with ghz, side by side in one run, and prints
// a table of ratios, each with its target beside it; `go run ./bench/e2e
// -h` lists the flags that make a quicker run. It asserts nothing
// about time: the figures are for reading.
//
// The figures:
//
//   - cached/no-op throughput and p99, on the Unix socket and on mutual
//     TLS: C callers (default 16) on one connection call GetToken for a
//     token already cached, or grpc.health.v1.Health/Check, the daemon's
//     own no-op RPC on the same server and transport, each as fast as it
//     is answered for a round (default 3 s). Rounds alternate (no-op,
//     GetToken, no-op, GetToken ...; default 5 of each); a ratio is the
//     median of the ratios of each GetToken round to the no-op round just
//     before it, so that a drift of the machine's speed (a neighbour's
//     load) moves both sides of each ratio alike. Every call's latency is
//     kept; p50 and p99 are read from the sorted latencies of a round.
//   - cold keys/HSM: K distinct keys (default 1000: delegated tokens for
//     K consumer organisations, valid organisation numbers the simulator
//     has delegations from and the policy allows, and a resource of the
//     round so that every round's keys are new) fetched by 50 callers,
//     each needing a signature and a POST to the simulator: tokens/s,
//     against K bare signer.Sign calls on the same key of the same token
//     by 50 goroutines in this process, in alternating rounds. A cold
//     round that did not make exactly K token requests for its keys (the
//     simulator counts them by resource) is invalid. Beside it, the
//     ceiling a daemon that spent nothing but its signature would reach:
//     a signature's CPU (the bare rounds') over that plus this process's
//     CPU per cold token (the simulator, the load client), which the bare
//     rounds do not pay and which shares the same cores.
//   - identical cold callers: N callers (default 200) released at once
//     ask for one key not yet cached; the daemon's
//     portvakt_hsm_sign_seconds_count and the simulator's token requests
//     for that key must each grow by exactly 1.
//   - peak RSS: the daemon's VmHWM (/proc/PID/status) after a round of
//     1000 callers on 100 mTLS connections calling GetToken (cached). The
//     high-water mark covers the daemon's life up to then: start, the
//     cached rounds and this one. For context, the runtime's goroutine
//     stacks and heap in use halfway through the round (the daemon's
//     go_memstats_stack_inuse_bytes and go_memstats_heap_inuse_bytes).
//   - audit bytes and records per cached call: the growth of the audit
//     files (bytes, lines) over each cached GetToken round divided by its
//     calls, over all of them; and audit records per write, the records
//     over the growth of portvakt_audit_writes_total in those rounds: how
//     many records group commit put in one write(2).
//   - CPU per call, for context and as a ratio: the daemon's user and
//     system time over a round (/proc/PID/stat, in 10 ms ticks) divided
//     by its calls, and this process's (getrusage: the load client, the
//     simulator, the bare signatures). On a machine others share it
//     varies less than throughput does. Beside it, the daemon's write
//     system calls per call (/proc/PID/io's syscw: socket and audit
//     writes).
//   - the framework's floor (on unless -floor=false): after the rounds
//     above, the cached and peak-RSS rounds again, on the same world,
//     against a build with -tags benchfloor (daemon/benchfloor.go; no
//     shipped build has it) whose GetToken answers every call after its
//     first with that first reply: decoded, through the same
//     interceptors and encoded, but with no identity, policy, cache or
//     audit. Its floor/no-op ratios are the most a cached GetToken can
//     reach on this machine, and its peak RSS the least; cached/floor is
//     the share of that floor the daemon keeps while doing its work.
//
// The simulator runs in this process, over real HTTP on loopback, so
// that its counts (Stats) are read exactly; its tokens live an hour, so
// that no cached token is renewed during a run. It signs its tokens with
// ES256 rather than Maskinporten's RS256: its RSA-2048 signature of each
// token took 1.5 ms of the cores the daemon's HSM signatures need, a
// cost a real deployment does not pay on its own host.
//
// With -profile DIR the harness builds the daemon with -tags pprof
// (cmd/portvakt/pprof.go: net/http/pprof on a loopback port, in no
// shipped build) and saves, for every round, the daemon's CPU profile
// (<round>-N.pprof) and this process's (harness-<round>-N.pprof), and the
// daemon's heap halfway through the peak-RSS round (heap-rss.pprof). The load client's
// connections are plain grpc-go ClientConns (one HTTP/2 connection each,
// no retries), as ghz's were.
//
// The load client runs on the same cores as the daemon and the simulator
// (as ghz did): it keeps its work small (one request message shared by
// every caller, latencies appended to preallocated slices) but is not
// free, and the ratios include its share. Any failed call makes its round
// invalid: the harness prints the error and exits non-zero.
package main
