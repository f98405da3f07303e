package lease

// Freeze stops m's ticks as a process stopped in its tracks would (a long
// GC pause, SIGSTOP): no renewal, no handover, and no Lost either, until
// the returned func thaws it.
func Freeze(m *Manager) (thaw func()) {
	m.frozen.Store(true)
	return func() { m.frozen.Store(false) }
}
