// Package seed reads the seed of an Ubuntu Core disk image without
// mounting it and without root, and checks it against a production line:
// the image identity gate.
//
// Read opens a raw (or prepared) image read-only through
// github.com/diskfs/go-diskfs: the partition table (GPT or MBR), then for
// Ubuntu Core 20 and later the ubuntu-seed vfat partition
// (systems/<label>/model, systems/<label>/assertions/model-etc, snaps/),
// for Ubuntu Core 16 and 18 the writable ext4 partition
// (system-data/var/lib/snapd/seed/: assertions/ and seed.yaml). The gadget
// snap (a squashfs inside the seed) is opened the same way for its
// meta/hooks/ and meta/gadget.yaml.
//
// Check compares what Read found with the line's signed model and trusted
// brand keys and gives a Verdict: the image passes, or it is refused with
// a reason and each difference.
package seed

import (
	"github.com/flashstation/flashstation/serialvault"
)

// Kinds of seed.
const (
	KindUC20 = "uc20" // ubuntu-seed vfat, systems/<label>/ (Ubuntu Core 20 and later)
	KindUC16 = "uc16" // writable ext4, system-data/var/lib/snapd/seed/ (Ubuntu Core 16 and 18)
)

// Image is what Read found in a disk image.
type Image struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	// Table is the partition table: "gpt", "mbr", or "" when the image has
	// none.
	Table      string      `json:"table"`
	Partitions []Partition `json:"partitions"`
	// Seed is nil when no partition holds a seed; SeedErr then says why
	// (what was looked for and what was found instead).
	Seed    *Seed  `json:"seed,omitempty"`
	SeedErr string `json:"seed_error,omitempty"`
	// Failed says why the reader gave up on the image as a whole (its
	// child process ran out of memory or time): nothing else is known.
	Failed string `json:"reader_failed,omitempty"`
	// TableProblem says why the partition table is not one every board
	// reads the same way (a GPT beside a plain or hybrid MBR, a damaged
	// primary GPT, partitions that overlap or run past the image).
	TableProblem string `json:"table_problem,omitempty"`
	// Ambiguous lists what the image holds more than one of where a board
	// takes one (recovery systems, seed partitions, gadget snaps, models):
	// the gate cannot know which one boots.
	Ambiguous []string `json:"ambiguous,omitempty"`
}

// Partition is one entry of the image's partition table.
type Partition struct {
	Index int    `json:"index"` // 1-based, as the table numbers it
	Name  string `json:"name"`  // GPT partition name; MBR: "" (the file system label goes in Label)
	Label string `json:"label,omitempty"`
	// Type is the GPT type GUID (upper case) or the MBR type as two hex
	// digits ("0C").
	Type       string `json:"type"`
	Start      int64  `json:"start"` // bytes from the start of the image
	Size       int64  `json:"size"`  // bytes
	FileSystem string `json:"filesystem,omitempty"`
}

// Seed is the seed found on the image.
type Seed struct {
	Kind string `json:"kind"` // KindUC20 or KindUC16
	// Partition is the index of the partition holding it.
	Partition int `json:"partition"`
	// Label is the recovery system's label (UC20+: systems/<label>); ""
	// for UC16/18.
	Label string `json:"label,omitempty"`
	// Systems lists every recovery system label found (UC20+); Label is
	// the newest (the greatest, as snapd orders labels).
	Systems []string `json:"systems,omitempty"`
	// ModelFile is the model's path inside the seed partition.
	ModelFile string `json:"model_file"`
	// ModelBytes is the model assertion as stored.
	ModelBytes []byte `json:"-"`
	// Model is the decoded model; nil when ModelErr says why it is not.
	Model    *serialvault.Model `json:"-"`
	ModelErr string             `json:"model_error,omitempty"`
	// Assertions are the other assertions the seed carries
	// (systems/<label>/assertions/* on UC20+, seed/assertions/* on
	// UC16/18): account, account-key and others.
	Assertions []*serialvault.Assertion `json:"-"`
	// Snaps are the snap files the seed holds, by file name.
	Snaps []string `json:"snaps"`
	// Gadget is the gadget snap, when the seed holds one that opens.
	Gadget *Gadget `json:"gadget,omitempty"`
	// GadgetErr says why Gadget is nil.
	GadgetErr string `json:"gadget_error,omitempty"`

	ambiguous []string // what the seed holds more than one of (to Image.Ambiguous)
}

// Gadget is what the station needs from the gadget snap.
type Gadget struct {
	File  string   `json:"file"`  // its file name in the seed
	Name  string   `json:"name"`  // meta/snap.yaml name
	Hooks []string `json:"hooks"` // meta/hooks/ entries, sorted
	// Volumes are meta/gadget.yaml's volumes, by name.
	Volumes map[string]Volume `json:"volumes"`
	// YAMLErr says why meta/gadget.yaml could not be read.
	YAMLErr string `json:"gadget_yaml_error,omitempty"`
}

// Volume is one volume of gadget.yaml.
type Volume struct {
	Schema     string      `json:"schema"` // gpt (default) or mbr
	Bootloader string      `json:"bootloader,omitempty"`
	Structure  []Structure `json:"structure"`
}

// Structure is one structure of a gadget.yaml volume.
type Structure struct {
	Name       string `json:"name,omitempty"`
	Role       string `json:"role,omitempty"`
	Type       string `json:"type"`
	Filesystem string `json:"filesystem,omitempty"`
	Label      string `json:"filesystem-label,omitempty"`
	// Offset is -1 when gadget.yaml gives none; Size is in bytes.
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
}
