package gpiosim_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"periph.io/x/conn/v3/gpio"

	"linli/firmware/gpiosim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDriveWithoutConsumer(t *testing.T) {
	p := gpiosim.New("p", gpio.Low)
	if err := p.Drive(context.Background(), gpio.High); err != nil {
		t.Fatal(err)
	}
	if got := p.Read(); got != gpio.High {
		t.Errorf("Read = %v, want High", got)
	}
}

func TestInKeepsDrivenLevel(t *testing.T) {
	p := gpiosim.New("p", gpio.Low)
	if err := p.In(gpio.PullUp, gpio.NoEdge); err != nil {
		t.Fatal(err)
	}
	if got := p.Read(); got != gpio.Low {
		t.Errorf("Read after In(PullUp) = %v, want the driven Low", got)
	}
}

// TestEdges checks which level changes reach a consumer for each edge mode, and that
// Drive returns only after the consumer has finished with the edge.
func TestEdges(t *testing.T) {
	levels := []gpio.Level{gpio.High, gpio.Low, gpio.Low, gpio.High, gpio.Low} // from High
	tests := []struct {
		edge gpio.Edge
		want []int64 // edges the consumer has processed after each Drive
	}{
		{gpio.NoEdge, []int64{0, 0, 0, 0, 0}},
		{gpio.FallingEdge, []int64{0, 1, 1, 1, 2}},
		{gpio.RisingEdge, []int64{0, 0, 0, 1, 1}},
		{gpio.BothEdges, []int64{0, 1, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.edge.String(), func(t *testing.T) {
			p := gpiosim.New("p", gpio.High)
			if err := p.In(gpio.PullUp, tt.edge); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var (
				processed atomic.Int64
				wg        sync.WaitGroup
			)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if p.WaitForEdge(10 * time.Millisecond) {
						processed.Add(1)
					}
				}
			}()
			defer func() { cancel(); wg.Wait() }()
			for i, l := range levels {
				if err := p.Drive(ctx, l); err != nil {
					t.Fatal(err)
				}
				// Without the hand-off Drive could return before the consumer counted.
				if got := processed.Load(); got != tt.want[i] {
					t.Fatalf("after Drive #%d (%v): processed %d edges, want %d", i, l, got, tt.want[i])
				}
				if got := p.Read(); got != l {
					t.Fatalf("after Drive #%d: Read = %v, want %v", i, got, l)
				}
			}
		})
	}
}

func TestDriveCancelled(t *testing.T) {
	p := gpiosim.New("p", gpio.High)
	if err := p.In(gpio.PullUp, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Drive(ctx, gpio.Low); err != context.Canceled {
		t.Errorf("Drive with no consumer and a cancelled ctx = %v, want context.Canceled", err)
	}
}
