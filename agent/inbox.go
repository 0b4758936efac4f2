package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/keyward/keyward/agent/audit"
)

// importInbox imports what provisioners delivered to the host
// (Config.Import: the fleet inbox), before the store is read at start and
// at each reload, and logs and audits each bundle: imported as a version,
// or refused and why. The caller holds storeMu or runs before serving.
func (s *Server) importInbox(ctx context.Context) {
	if s.cfg.Import == nil {
		return
	}
	results, err := s.cfg.Import(ctx)
	if err != nil {
		s.log.Error("importing the fleet inbox failed; the bundles stay for the next reload", "err", err)
		s.systemEvent(slog.LevelError, "import", audit.Error, "", 0, "the inbox was not imported: "+err.Error())
		return
	}
	for _, r := range results {
		file := filepath.Base(r.File)
		if r.Imported == nil {
			s.log.Warn("bundle refused", "file", r.File, "err", r.Err)
			s.systemEvent(slog.LevelWarn, "import", audit.Deny, "", 0, fmt.Sprintf("bundle %s refused: %v", file, r.Err))
			continue
		}
		im := r.Imported
		s.log.Info("bundle imported", "file", r.File, "secret", im.Name, "version", im.Version, "provisioner", im.Provisioner)
		reason := fmt.Sprintf("bundle %s from provisioner %s (counter %d) stored as the current version", file, im.Provisioner, im.Counter)
		if r.Err != nil {
			reason += "; " + r.Err.Error()
		}
		s.systemEvent(slog.LevelInfo, "import", audit.Allow, im.Name, im.Version, reason)
	}
}
