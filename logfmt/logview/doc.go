// Package logview turns log records into what people and scripts read: a
// decoded view of each record and its messages, printed as aligned text or
// marshalled as JSON. `ambr log` prints it; the TUI shows the same fields.
//
// JSON (one object per record, the schema `ambr log --json` documents):
//
//	{"seq":12,"time":"2026-11-21T10:15:00.123Z","segment":1,"offset":4096,"size":83,
//	 "out_count":11,"out_digest":"9f0c…",
//	 "messages":[{"type":"RPC","from":"client","from_seq":6,"kind":"call",
//	              "method":3,"size":21,"args":"{\"n\":1}"}]}
//
// args holds the argument bytes as text when they are printable UTF-8, else
// args_hex holds them as hex.
package logview
