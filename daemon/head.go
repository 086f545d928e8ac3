package daemon

import (
	"errors"
	"fmt"
	"os"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/hsm"
)

// checkAuditHead reads the log's head from the seal's HSM and checks that
// the log still reaches it. It returns the problem when the log does not
// (records cut, the log deleted, replaced or rewritten), and an error when
// the check itself could not be made.
func (d *Daemon) checkAuditHead() (gap *audit.Problem, err error) {
	h := d.cfg.HSMNamed(d.cfg.Audit.Seal.HSM)
	if d.sealHSM, err = resolveHSM(h); err != nil {
		return nil, fmt.Errorf("audit.seal: %w", err)
	}
	label := audit.HeadLabelOf(d.cfg.Audit.Instance)
	var values [][]byte
	err = d.awaitHSM(h.Name, func() (err error) {
		values, err = hsm.ReadObjects(d.sealHSM, label)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit.seal: reading the audit head from HSM %s: %w", h.Name, err)
	}
	if len(values) == 0 && d.legacyLog() {
		// A log written before instance ids: its head is under the old
		// label, until this instance's first checkpoint.
		if values, err = hsm.ReadObjects(d.sealHSM, audit.HeadLabel); err != nil {
			return nil, fmt.Errorf("audit.seal: reading the audit head from HSM %s: %w", h.Name, err)
		}
	}
	head, ok, err := audit.LatestHead(values)
	if err != nil {
		return nil, fmt.Errorf("audit.seal: HSM %s: %w", h.Name, err)
	}
	if !ok {
		d.log.Info("the HSM holds no audit head yet: the first checkpoint will put it there", "hsm", h.Name)
		return nil, nil
	}
	// This instance's files only: other replicas may share the directory.
	files, err := audit.LogFiles(d.cfg.Audit.File)
	if errors.Is(err, audit.ErrNoLog) {
		files, err = []string{d.cfg.Audit.File}, nil // none: CheckHead says the log is gone
	}
	if err == nil {
		err = audit.CheckHead(head, nil, files...)
	}
	if errors.As(err, &gap) {
		return gap, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit.file: checking the log against the HSM's head: %w", err)
	}
	return nil, nil
}

// keepHead writes a checkpoint to the HSM as the log's head.
func (d *Daemon) keepHead(r audit.Record) error {
	head, err := audit.HeadOf(r)
	if err != nil {
		return err
	}
	return hsm.WriteObject(d.sealHSM, audit.HeadLabelOf(d.cfg.Audit.Instance), head.Marshal())
}

// legacyLog reports whether the log has records but none naming an
// instance: one written before instance ids, whose head is under the old
// label. A missing log is not one: it is a new replica's.
func (d *Daemon) legacyLog() bool {
	files, err := audit.LogFiles(d.cfg.Audit.File)
	if err != nil {
		return false
	}
	st, err := os.Stat(files[len(files)-1])
	if err != nil || st.Size() == 0 && len(files) == 1 {
		return false
	}
	id, err := audit.InstanceOf(files)
	return err == nil && id == ""
}

// refuseGap is the start error for a log behind the HSM's head.
func refuseGap(gap *audit.Problem) error {
	return fmt.Errorf("audit.file: %w; find out what happened (`portvakt audit verify` with the audit key and the HSM), "+
		"and to start anyway on this log, accepting the loss, run `portvakt serve --accept-audit-gap`: the gap is then the first thing the new chain records", gap)
}
