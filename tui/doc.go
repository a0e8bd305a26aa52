// Package tui is the bench terminal interface built on Bubble Tea v2: slot
// cards at a glance (colour and words, readable from two metres), a slot's
// detail (live console, stage timeline, flash figures, failure, serial
// assertion), the batch view for supervisors and QA lookup by serial.
//
// It consumes a station (the lines.Pipeline) through the small Station
// interface and the ledger through Records: hardware events arrive on the
// pipeline's event channel, read by a re-arming command and applied per
// slot id. The interface never does station work itself: retry and disable
// are requests to the pipeline.
//
// Layout: Model is the root (resize, quitting, the one pending y/n
// question - quit while boards are in work, end a batch, retry a PASS,
// disable a PASS or a board in work -, view switching, events); without
// an operator, OperatorPrompt asks who is at the bench before the bench
// shows. Bench, Detail, BatchView, QA and HelpView are components, each
// with New, a KeyMap and an Update returning its own type, sharing one
// Common (size, styles, keys, logger, clock). Every colour is in styles.go.
package tui
