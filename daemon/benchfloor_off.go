//go:build !benchfloor

package daemon

import "google.golang.org/grpc"

// floorInterceptors is empty in every build but bench/e2e's framework
// floor (benchfloor.go).
func floorInterceptors() []grpc.UnaryServerInterceptor { return nil }
