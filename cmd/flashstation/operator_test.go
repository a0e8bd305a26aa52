package main

import "testing"

// TestOperatorWords: a headless run without --operator says so in its
// output, with the $USER it records instead.
func TestOperatorWords(t *testing.T) {
	for _, tt := range []struct {
		name     string
		notGiven bool
		want     string
	}{
		{"ana", false, `operator "ana"`},
		{"bob", true, `operator not given: $USER "bob" recorded`},
		{"", true, "operator not given"},
		{"", false, "operator not given"},
	} {
		if got := operatorWords(tt.name, tt.notGiven); got != tt.want {
			t.Errorf("operatorWords(%q, %v) = %q, want %q", tt.name, tt.notGiven, got, tt.want)
		}
	}
}
