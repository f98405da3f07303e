package downlink

// Seq is the change seq of the newest change of a site-wide entity (a
// notice, an activity) in the site's log. A device whose downlink cursor
// has reached it holds that version: this is how the dashboard tells which
// kiosks have received a notice.
func (l *Log) Seq(site, entity, id string) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seq, ok := l.index[site][entityKey(entity, id, "")]
	return seq, ok
}
