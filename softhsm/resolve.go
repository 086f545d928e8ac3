package softhsm

import (
	"fmt"

	"github.com/portvakt/portvakt/config"
)

// Resolve fills in the development conveniences of cfg's HSMs, where the
// command line loads a configuration (never in the daemon, which takes a
// module path as given): an HSM with softhsm_dir points SoftHSM2 at that
// directory, and an HSM without a module gets the installed SoftHSM2's.
func Resolve(cfg *config.Config) error {
	for i := range cfg.HSMs {
		h := &cfg.HSMs[i]
		if h.SoftHSMDir != "" {
			if err := Dir(h.SoftHSMDir).Activate(); err != nil {
				return fmt.Errorf("HSM %s: softhsm_dir: %w", h.Name, err)
			}
		}
		if h.Module == "" {
			module, err := FindModule()
			if err != nil {
				return fmt.Errorf("HSM %s: module is not set and %w", h.Name, err)
			}
			h.Module = module
		}
	}
	return nil
}
