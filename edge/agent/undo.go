package agent

// undo is what a start has opened so far: each phase pushes the close of
// what it opens, and a start that fails runs them newest first, so the
// failure leaves nothing open (the store unlocked, the ports free, no
// goroutine behind).
type undo []func()

func (u *undo) push(close func()) { *u = append(*u, close) }

func (u *undo) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
	*u = nil
}
