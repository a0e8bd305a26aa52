package tui

import "charm.land/bubbles/v2/key"

// KeyMap holds every key of the interface. Components take the bindings
// they use into their own KeyMap.
type KeyMap struct {
	Up, Down, Left, Right key.Binding
	Enter, Back           key.Binding
	Retry, Disable        key.Binding
	EndBatch              key.Binding
	Batch, Search, Help   key.Binding
	Quit, ForceQuit       key.Binding
	PageUp, PageDown      key.Binding
	Follow, Top           key.Binding
	Export                key.Binding
	PrevSlot, NextSlot    key.Binding
	Yes                   key.Binding
}

// DefaultKeyMap returns the station's keys.
func DefaultKeyMap() *KeyMap {
	b := func(help, desc string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return &KeyMap{
		Up:        b("↑/k", "up", "up", "k"),
		Down:      b("↓/j", "down", "down", "j"),
		Left:      b("←/h", "left", "left", "h"),
		Right:     b("→/l", "right", "right", "l"),
		Enter:     b("enter", "detail", "enter"),
		Back:      b("esc", "back", "esc"),
		Retry:     b("r", "retry", "r"),
		Disable:   b("d", "disable/enable", "d"),
		EndBatch:  b("E", "end the line's batch", "E"),
		Batch:     b("b", "batch", "b"),
		Search:    b("/", "QA search", "/"),
		Help:      b("?", "help", "?"),
		Quit:      b("q", "quit", "q"),
		ForceQuit: b("ctrl+c", "quit", "ctrl+c"),
		PageUp:    b("pgup", "scroll up", "pgup", "ctrl+u"),
		PageDown:  b("pgdn", "scroll down", "pgdown", "ctrl+d"),
		Follow:    b("end/G", "follow", "end", "G"),
		Top:       b("home/g", "top", "home", "g"),
		Export:    b("e", "export bundle", "e"),
		PrevSlot:  b("←/h", "previous slot", "left", "h"),
		NextSlot:  b("→/l", "next slot", "right", "l"),
		Yes:       b("y", "yes", "y", "Y"),
	}
}
