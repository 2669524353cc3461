// Package layout knows where an immortal's files live inside its instance
// directory and reads them: the MANIFEST, log segments and checkpoints. The
// coordinator, the recovery code and the read-only tools all find files
// through it, so the names below exist in one place.
//
//	<home>/<instance>/
//	  MANIFEST            which checkpoint and segments are live, which build ran
//	  v<version>/log-<n>  append-only log segments
//	  v<version>/chkpt-<n> checkpoint n: the state before log-n's first record
//	  log-<n>.broken      bytes cut from a torn tail by recovery, kept beside the log
//
// All reads go through a vfs.FS, so the same code runs on disk and on the
// in-memory crash-simulating filesystem of the tests.
package layout
