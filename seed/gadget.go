package seed

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/flashstation/flashstation/internal/yamlbound"
)

// gadgetYAML is the part of meta/gadget.yaml the gate compares with the
// image's partitions.
type gadgetYAML struct {
	Volumes map[string]struct {
		Schema     string `yaml:"schema"`
		Bootloader string `yaml:"bootloader"`
		Structure  []struct {
			Name       string `yaml:"name"`
			Role       string `yaml:"role"`
			Type       string `yaml:"type"`
			Filesystem string `yaml:"filesystem"`
			Label      string `yaml:"filesystem-label"`
			Offset     string `yaml:"offset"`
			Size       string `yaml:"size"`
		} `yaml:"structure"`
	} `yaml:"volumes"`
}

// Bounds of a gadget.yaml.
const (
	maxVolumes    = 16
	maxStructures = 128
)

// parseGadgetYAML reads the volumes of a meta/gadget.yaml.
func parseGadgetYAML(data []byte) (map[string]Volume, error) {
	var g gadgetYAML
	if err := yamlbound.Decode("meta/gadget.yaml", data, &g, yamlbound.Limits{What: "meta/gadget.yaml", MaxBytes: maxMetaFile}); err != nil {
		return nil, err
	}
	if len(g.Volumes) == 0 {
		return nil, errors.New("meta/gadget.yaml has no volumes")
	}
	if len(g.Volumes) > maxVolumes {
		return nil, fmt.Errorf("meta/gadget.yaml has %d volumes, more than %d", len(g.Volumes), maxVolumes)
	}
	out := make(map[string]Volume, len(g.Volumes))
	for name, v := range g.Volumes {
		if len(v.Structure) > maxStructures {
			return nil, fmt.Errorf("volume %s has %d structures, more than %d", name, len(v.Structure), maxStructures)
		}
		vol := Volume{Schema: v.Schema, Bootloader: v.Bootloader, Structure: []Structure{}}
		for i, st := range v.Structure {
			s := Structure{Name: st.Name, Role: st.Role, Type: st.Type, Filesystem: st.Filesystem, Label: st.Label, Offset: -1}
			if st.Offset != "" {
				off, err := parseQuantity(st.Offset)
				if err != nil {
					return nil, fmt.Errorf("volume %s structure %d: offset: %w", name, i, err)
				}
				s.Offset = off
			}
			if st.Size != "" {
				size, err := parseQuantity(st.Size)
				if err != nil {
					return nil, fmt.Errorf("volume %s structure %d: size: %w", name, i, err)
				}
				s.Size = size
			}
			// Before roles, Ubuntu Core 16/18 gadgets named the boot
			// partition by its label.
			if s.Role == "" && s.Label == "system-boot" {
				s.Role = roleBoot
			}
			vol.Structure = append(vol.Structure, s)
		}
		out[name] = vol
	}
	return out, nil
}

// parseQuantity reads a gadget.yaml size or offset: bytes, or a number
// with a K, M or G suffix (powers of 1024).
func parseQuantity(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size in bytes (or with K, M or G)", s)
	}
	return n * mult, nil
}
