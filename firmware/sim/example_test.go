package sim_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"linli/firmware/board"
	"linli/firmware/door"
	"linli/firmware/sim"
	"linli/firmware/wiegand"
)

// Example wires drivers to the simulator the way a gateway does: by name through
// board.Hardware, on the hardware's clock. With board.OpenHost instead of sim.New the
// same code runs on a real board.
func Example() {
	sc := must(sim.ParseScenario([]byte(`
speed: 1000
doors: [{name: B3-main, pin: B3-main-contact}]
readers: [{name: B3-main, d0: B3-main-d0, d1: B3-main-d1}]
steps:
  - {at: 1s, swipe: {reader: B3-main, card: "26:123:45678"}}
  - {at: 3s, door: {name: B3-main, state: open}}
  - {at: 90s, door: {name: B3-main, state: closed}}
`))) // or sim.LoadScenario("configs/sim-scenario.yaml")
	s := must(sim.New(sc, nil))
	var hw board.Hardware = s

	doorCfg := door.DefaultConfig("B3-main")
	doorCfg.HeldOpen, doorCfg.Now = time.Minute, hw.Now
	sensor := must(door.New(must(hw.PinIn("B3-main-contact")), doorCfg))
	readerCfg := wiegand.DefaultConfig("B3-main")
	readerCfg.Now = hw.Now
	reader := must(wiegand.NewReader(must(hw.PinIn("B3-main-d0")), must(hw.PinIn("B3-main-d1")), readerCfg))

	ctx, cancel := context.WithCancel(context.Background())
	doors, swipes := make(chan door.Event, 8), make(chan wiegand.Swipe, 8)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); must(0, sensor.Run(ctx, doors)) }()
	go func() { defer wg.Done(); must(0, reader.Run(ctx, swipes)) }()
	for _, name := range []string{"B3-main-contact", "B3-main-d0", "B3-main-d1"} {
		for p := must(s.Pin(name)); !p.Listening(); { // drivers read their lines before the scenario starts
			time.Sleep(time.Millisecond)
		}
	}

	start := hw.Now()
	must(0, s.Run(ctx))
	sw := <-swipes
	fmt.Println(sw.At.Sub(start), "swipe", sw.Credential, sw.Err)
	for range 3 {
		e := <-doors
		fmt.Println(e.At.Sub(start), e.Door, e.Kind)
	}
	cancel()
	wg.Wait()
	// Output:
	// 1s swipe 26:123:45678 <nil>
	// 3s B3-main open
	// 1m3s B3-main held_open
	// 1m30s B3-main close
}

// must keeps the example short; a gateway returns these errors instead.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
