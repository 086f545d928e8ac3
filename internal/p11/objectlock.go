package p11

import "sync"

// objectLocks are LockObjects' locks, by module path.
var objectLocks sync.Map // string → *sync.Mutex

// LockObjects takes the process's lock on the token objects of the module
// at path, and returns its release. Portvakt takes it around each call
// that creates, destroys or searches token objects (keys, certificates,
// its data objects), never around a signature.
//
// SoftHSM2 2.6 now and then refuses an object being created
// (CKR_GENERAL_ERROR; its log: "Could not initialize the attribute") while
// another thread of the process changes or reads the token store: seen
// when a rotation stored its state while other daemons in the same test
// process made and listed keys. These calls are rare (a rotation's step,
// a checkpoint's head, an operator's listing or a key made), so one at a
// time costs nothing a caller waits for. Other processes on the same
// token (replicas, the CLI) are not covered: the product retries each of
// these calls.
func LockObjects(path string) (unlock func()) {
	v, _ := objectLocks.LoadOrStore(path, new(sync.Mutex))
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}
