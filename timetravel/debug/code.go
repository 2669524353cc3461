package debug

import (
	"debug/buildinfo"
	"strings"
)

// userCode tells the target's own functions and those of its module
// dependencies from the standard library's, by the modules the binary
// records. The looser name rules of BreakFunction search user code only.
type userCode struct {
	modules []string // module paths: the main module's and its dependencies'
}

// readUserCode reads the module paths from the build information of the
// executable exe; without it (a binary built outside module mode) only
// package main and import paths that start with a domain count as user
// code.
func readUserCode(exe string) userCode {
	info, err := buildinfo.ReadFile(exe)
	if err != nil {
		return userCode{}
	}
	var c userCode
	if info.Main.Path != "" {
		c.modules = append(c.modules, info.Main.Path)
	}
	for _, dep := range info.Deps {
		c.modules = append(c.modules, dep.Path)
		if dep.Replace != nil && dep.Replace.Path != "" && !strings.HasPrefix(dep.Replace.Path, ".") && !strings.HasPrefix(dep.Replace.Path, "/") {
			c.modules = append(c.modules, dep.Replace.Path)
		}
	}
	return c
}

// isUser reports whether the function named fn (as Delve names it) is
// in package main or in one of the modules.
func (c userCode) isUser(fn string) bool {
	pkg := funcPackage(stripTypeArgs(fn))
	if pkg == "main" {
		return true
	}
	if c.modules == nil {
		first, _, _ := strings.Cut(pkg, "/")
		return strings.Contains(first, ".")
	}
	for _, m := range c.modules {
		if pkg == m || strings.HasPrefix(pkg, m) && pkg[len(m)] == '/' {
			return true
		}
	}
	return false
}
