package api_test

import (
	"linli/edge/api"
	"testing"
)

func TestNormalizeUnit(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"1-402", "1-402"},
		{"1单元402", "1-402"},
		{"1单元402室", "1-402"},
		{"1 单元 402 室", "1-402"},
		{"1 402", "1-402"},
		{"1/402", "1-402"},
		{"1#402", "1-402"},
		{"1_402", "1-402"},
		{"01-402", "1-402"},
		{"１－４０２", "1-402"},      // full-width, as a Chinese input method types
		{"１单元４０２", "1-402"},     // full-width digits around 单元
		{"1—402", "1-402"},      // a dash that looks like "-"
		{"1\u3000402", "1-402"}, // ideographic space
		{"  1-402  ", "1-402"},
		{"402", "402"},
		{"402室", "402"},
		{"1单元", "1"},
		{"03单元", "3"},
		{"A-3", "A-3"},         // a building that numbers its own way: left as written
		{"东单元", "东单元"},         // not a form we know: for the validation to judge
		{"1-402-5", "1-402-5"}, // not unit-room: unchanged
	}
	for _, tt := range tests {
		if got := api.NormalizeUnit(tt.in); got != tt.want {
			t.Errorf("NormalizeUnit(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
