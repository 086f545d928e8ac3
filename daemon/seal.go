package daemon

import (
	"context"
	"fmt"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/signer"
)

// openAuditKey opens the audit key on its HSM; nil without audit.seal.
func (d *Daemon) openAuditKey() (*signer.Signer, error) {
	a := d.cfg.Audit.Seal
	if a == nil {
		return nil, nil
	}
	tok, err := d.token(d.cfg.HSMNamed(a.HSM))
	if err != nil {
		return nil, fmt.Errorf("audit.seal: %w", err)
	}
	key, err := tok.Key(signer.KeyConfig{KeyLabel: a.KeyLabel, KeyID: config.HexID(a.KeyID), NoCertificate: true})
	if err != nil {
		return nil, fmt.Errorf("audit.seal: the audit key (make one with `portvakt hsm keygen --label %s`): %w", a.KeyLabel, err)
	}
	return key, nil
}

// openSeal prepares the checkpoints that seal the log with the audit key
// from record from (this run's start record) on. Without audit.seal it
// says, once, that the log is not sealed.
func (d *Daemon) openSeal(key *signer.Signer, from uint64) (err error) {
	a := d.cfg.Audit.Seal
	if a == nil {
		d.log.Warn(unsealedWarning)
		return nil
	}
	d.seal, err = audit.NewCheckpointer(d.audit, audit.CheckpointOptions{
		Key: key, EveryRecords: a.EveryRecords, Every: a.Every, Logger: d.log, Instance: d.cfg.Audit.Instance,
		From: from, OnCheckpoint: d.keepHead,
	})
	if err != nil {
		return fmt.Errorf("audit.seal: %w", err)
	}
	fingerprint, _ := audit.KeyFingerprint(key.Public())
	d.log.Info("the audit log is sealed by checkpoints", "hsm", d.cfg.HSMNamed(a.HSM).Name, "key", a.KeyLabel, "key_sha256", fingerprint,
		"instance", d.seal.Instance(), "every_records", a.EveryRecords, "every", a.Every.String())
	return nil
}

// unsealedWarning is said at every start (and check) without audit.seal.
const unsealedWarning = "the audit log is not sealed: anyone who can write its file can rewrite it unseen; configure audit.seal with an audit key in the HSM"

// startSealing seals as records come, until stopSealing.
func (d *Daemon) startSealing(ctx context.Context) {
	if d.seal == nil {
		return
	}
	ctx, d.sealStop = context.WithCancel(ctx)
	d.sealDone = make(chan struct{})
	go func() {
		defer close(d.sealDone)
		d.seal.Run(ctx)
	}()
}

// stopSealing stops the sealing and seals what is left: at a clean
// shutdown the log ends in a checkpoint.
func (d *Daemon) stopSealing() {
	if d.seal == nil {
		return
	}
	if d.sealStop != nil {
		d.sealStop()
		<-d.sealDone
	}
	if err := d.seal.Checkpoint(); err != nil {
		d.log.Error("the last audit checkpoint failed: the records since the one before stay unsealed", "error", err.Error())
	}
}
