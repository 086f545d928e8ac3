package softhsm

import "fmt"

// Resolve is the development convenience of an HSM's configuration, for
// the command line that loads it (never the daemon, which takes a module
// path as given): a dir (softhsm_dir) points SoftHSM2 at that directory,
// and an empty module is the installed SoftHSM2's. It returns the module.
func Resolve(dir, module string) (string, error) {
	if dir != "" {
		if err := Dir(dir).Activate(); err != nil {
			return "", fmt.Errorf("softhsm_dir: %w", err)
		}
	}
	if module != "" {
		return module, nil
	}
	module, err := FindModule()
	if err != nil {
		return "", fmt.Errorf("module is not set and %w", err)
	}
	return module, nil
}
