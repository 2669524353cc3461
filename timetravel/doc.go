// Package timetravel replays an immortal's checkpoint and log read-only, up
// to any point in its history, standing in for its coordinator. This first
// part holds the grammar of points in time (P) shared by every command that
// takes one:
//
//	1234 or seq:1234        a record sequence number
//	2026-11-21T10:15:00Z    RFC 3339: the last record logged at or before it
//	checkpoint:3+10         ten records after checkpoint 3's first record
//	end                     the last complete record
package timetravel
