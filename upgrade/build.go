package upgrade

import (
	"os"

	"github.com/ambr-dev/ambr/logfmt"
)

// BuildFor picks the build `ambr run` starts for an instance it was given
// build for: build itself, unless the instance was upgraded past it — build
// ran the instance only as an older version than the MANIFEST's, and the
// MANIFEST's build is kept — so that the command that started an instance
// before its live upgrade recovers it after one (a SIGKILL of its run, a
// reboot) instead of being refused the newer state. ok says the MANIFEST's
// build was picked.
func BuildFor(m *logfmt.Manifest, build logfmt.AppBuild) (logfmt.AppBuild, bool) {
	if m == nil || m.Version == 0 || build.SHA256 == "" || build.SHA256 == m.App.SHA256 || m.App.Path == "" {
		return build, false
	}
	ranOlder := false
	for _, b := range m.Builds {
		if b.App.SHA256 != build.SHA256 {
			continue
		}
		if b.Version >= m.Version {
			return build, false // it ran the current version too
		}
		ranOlder = true
	}
	if !ranOlder {
		return build, false
	}
	if _, err := os.Stat(m.App.Path); err != nil {
		return build, false
	}
	next := m.App
	next.Args = build.Args
	return next, true
}
