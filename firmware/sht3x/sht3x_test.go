package sht3x_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"

	"linli/firmware/sht3x"
)

// The answer bytes use the datasheet's check value: 0xBEEF has CRC 0x92.
const (
	wantTemp = -45 + 175*48879.0/65535
	wantHum  = 100 * 48879.0 / 65535
)

func TestSense(t *testing.T) {
	measure := i2ctest.IO{Addr: 0x44, W: []byte{0x24, 0x00}}
	tests := []struct {
		name   string
		addr   uint16
		ops    []i2ctest.IO
		want   sht3x.Reading
		err    error
		errHas string
	}{
		{
			name: "good",
			ops:  []i2ctest.IO{measure, {Addr: 0x44, R: []byte{0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x92}}},
			want: sht3x.Reading{Temperature: wantTemp, Humidity: wantHum},
		},
		{
			name: "alternate address",
			addr: sht3x.AltAddr,
			ops: []i2ctest.IO{{Addr: 0x45, W: []byte{0x24, 0x00}},
				{Addr: 0x45, R: []byte{0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x92}}},
			want: sht3x.Reading{Temperature: wantTemp, Humidity: wantHum},
		},
		{
			name: "bad CRC",
			ops:  []i2ctest.IO{measure, {Addr: 0x44, R: []byte{0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x93}}},
			err:  sht3x.ErrCRC, errHas: "humidity",
		},
		{
			// The sensor is strapped to 0x45 but configured at 0x44: nothing answers.
			name: "missing device",
			ops:  []i2ctest.IO{{Addr: 0x45, W: []byte{0x24, 0x00}}},
			err:  sht3x.ErrNoDevice, errHas: "no device at 0x44",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			var slept []time.Duration
			d, err := sht3x.New(bus, sht3x.Config{Addr: tt.addr, Sleep: func(_ context.Context, d time.Duration) error {
				slept = append(slept, d)
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Sense(context.Background())
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("Sense error = %v, want %v", err, tt.err)
			}
			if err != nil && !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("Sense error %q does not say %q", err, tt.errHas)
			}
			if math.Abs(got.Temperature-tt.want.Temperature) > 1e-9 || math.Abs(got.Humidity-tt.want.Humidity) > 1e-9 {
				t.Errorf("Sense = %+v, want %+v", got, tt.want)
			}
			if tt.err == nil {
				if len(slept) != 1 || slept[0] < 15*time.Millisecond {
					t.Errorf("slept %v, want one wait of at least 15ms before reading", slept)
				}
				if err := bus.Close(); err != nil {
					t.Errorf("not every expected I/O happened: %v", err)
				}
			}
		})
	}
}

func TestSenseCancelled(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x44, W: []byte{0x24, 0x00}}}, DontPanic: true}
	d, err := sht3x.New(bus, sht3x.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Sense(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sense = %v, want context.Canceled", err)
	}
}

func TestReset(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x44, W: []byte{0x30, 0xA2}}}, DontPanic: true}
	d, err := sht3x.New(bus, sht3x.Config{Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

// TestRecord checks the exchange as a Record of a real Sense sees it, against a bus that
// answers with Playback: the command, then a 6-byte read, nothing else.
func TestRecord(t *testing.T) {
	rec := &i2ctest.Record{Bus: &i2ctest.Playback{Ops: []i2ctest.IO{
		{Addr: 0x44, W: []byte{0x24, 0x00}},
		{Addr: 0x44, R: []byte{0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x92}},
	}, DontPanic: true}}
	d, err := sht3x.New(rec, sht3x.Config{Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Sense(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ops) != 2 || len(rec.Ops[0].W) != 2 || len(rec.Ops[1].R) != 6 || rec.Ops[1].W != nil {
		t.Errorf("recorded %+v, want a 2-byte write then a 6-byte read", rec.Ops)
	}
}

func TestNewInvalid(t *testing.T) {
	for _, addr := range []uint16{0x40, 0x46, 0x144} {
		if _, err := sht3x.New(&i2ctest.Playback{}, sht3x.Config{Addr: addr}); !errors.Is(err, sht3x.ErrConfig) {
			t.Errorf("New(addr %#x) = %v, want ErrConfig", addr, err)
		}
	}
	if _, err := sht3x.New(nil, sht3x.Config{}); !errors.Is(err, sht3x.ErrConfig) {
		t.Errorf("New(nil bus) = %v, want ErrConfig", err)
	}
}
