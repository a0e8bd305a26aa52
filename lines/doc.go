// Package lines holds the station's configuration and, as the pipeline
// lands, the per-slot job pipeline: batches, slots and their state machine.
//
// A station file (YAML) names the station, its data directory, the
// production lines it serves (model, brand keys, image, Serial Vault,
// recording proxy, capture method, boot profile and trigger) and its slots
// (USB port paths, flashing method, console, hub power port). Load reports
// every problem at once, each with file:line:column and the field path.
package lines
