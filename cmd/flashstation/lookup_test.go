package main

import "testing"

func TestIDList(t *testing.T) {
	for _, tc := range []struct {
		ids  []int64
		want string
	}{
		{nil, ""},
		{[]int64{4}, "4"},
		{[]int64{1, 2}, "1, 2"},
		{[]int64{1, 2, 3, 7}, "1-3, 7"},
		{[]int64{1, 3, 4, 5, 6, 9, 10}, "1, 3-6, 9, 10"},
	} {
		if got := idList(tc.ids); got != tc.want {
			t.Errorf("idList(%v) = %q, want %q", tc.ids, got, tc.want)
		}
	}
}
