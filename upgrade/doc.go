// Package upgrade validates and performs app version upgrades: an instance's
// state and history are taken over by a new build, first as a test that
// never touches the live instance. Nothing is here yet beyond this
// description (see the upgrade issue).
package upgrade
