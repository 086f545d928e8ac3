package daemon_test

import (
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/logbuffer"
	"github.com/portvakt/portvakt/internal/mptest"
)

// otherGroup is a group the socket may be given that is not the test's
// own: a supplementary group, or any group when running as root.
func otherGroup(t *testing.T) *user.Group {
	t.Helper()
	gids, _ := os.Getgroups()
	if os.Geteuid() == 0 {
		gids = append(gids, 1, 2, 3, 4)
	}
	for _, gid := range gids {
		if gid == os.Getegid() {
			continue
		}
		if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
			return g
		}
	}
	t.Skip("no group other than the primary one to give the socket")
	return nil
}

// TestSocketGroup: listen.unix.group, by name or gid, is the socket's
// group from its creation on, so that callers are chosen by membership.
func TestSocketGroup(t *testing.T) {
	g := otherGroup(t)
	for _, group := range []string{g.Name, g.Gid} {
		t.Run(group, func(t *testing.T) {
			w := mptest.New(t, mptest.Options{NoSigner: true})
			e := startDaemon(t, w, func(cfg string) string {
				return strings.Replace(cfg, "unix: {path: portvakt.sock}", "unix: {path: portvakt.sock, group: \""+group+"\"}", 1)
			})
			info, err := os.Stat(e.daemon.Addresses()["unix"])
			if err != nil {
				t.Fatal(err)
			}
			if gid := info.Sys().(*syscall.Stat_t).Gid; strconv.Itoa(int(gid)) != g.Gid || info.Mode().Perm() != 0o660 {
				t.Fatalf("socket gid %d mode %s, want gid %s mode 0660", gid, info.Mode().Perm(), g.Gid)
			}
		})
	}
}

// TestSocketGroupUnknown: a group that does not exist stops the start,
// naming the setting.
func TestSocketGroupUnknown(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := prepare(t, w)
	e.edit(t, func(cfg string) string {
		return strings.Replace(cfg, "unix: {path: portvakt.sock}", "unix: {path: portvakt.sock, group: no-such-group-pv}", 1)
	})
	cfg, err := config.Load(e.cfgFile)
	if err == nil {
		err = resolveDevelopmentHSMs(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{Logger: slog.New(slog.NewJSONHandler(&logbuffer.Buffer{}, nil))})
	if err == nil {
		d.Close()
		t.Fatal("the daemon started")
	}
	if !strings.Contains(err.Error(), "listen.unix.group") || !strings.Contains(err.Error(), "no-such-group-pv") {
		t.Fatalf("start error = %q, want it to name listen.unix.group", err)
	}
}
