package replica

// SetSplitSizes makes entities split at small sizes, so that the property
// tests' small activities and lists are kept apart in chunks of a few
// entries; it returns the function that restores the sizes.
func SetSplitSizes(above, chunk int) (restore func()) {
	a, c, e, f := splitAbove, chunkBytes, entryMax, firstMax
	splitAbove, chunkBytes, entryMax, firstMax = above, chunk, 4<<10, 8
	return func() { splitAbove, chunkBytes, entryMax, firstMax = a, c, e, f }
}
