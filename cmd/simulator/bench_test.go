package main

import (
	"reflect"
	"testing"
)

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("10000, 100k,1M")
	if err != nil || !reflect.DeepEqual(got, []int{10_000, 100_000, 1_000_000}) {
		t.Fatalf("parseSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "ten", "-5", "0k"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) accepted it", bad)
		}
	}
}
