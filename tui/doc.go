// Package tui is the bench terminal interface built on Bubble Tea: slot cards
// at a glance, slot detail, the batch view and QA lookup.
//
// The interface lands with the bench TUI issue; this package currently holds
// only its documentation so that the layout is fixed. It consumes the event
// stream of package lines and never does work itself.
package tui
