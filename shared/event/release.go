package event

// KindRelease is the edge kind a kiosk records when it gives seats of an
// activity back to the hub after a recall.
const KindRelease Kind = 9

// Release is a kiosk's answer to a recall: it stops confirming from its
// share and hands back every seat it has not used. All three counts are
// cumulative and only grow on one kiosk, so the hub merges releases by
// taking the maximum of each: a release is idempotent and harmless before
// or after any other fact.
type Release struct {
	Activity string `cbor:"1,keyasint" json:"activity"`
	// Granted is the cumulative grant the kiosk had seen when it released.
	Granted uint32 `cbor:"2,keyasint" json:"granted"`
	// Used counts the distinct residents the kiosk had answered confirmed.
	Used uint32 `cbor:"3,keyasint" json:"used"`
	// Returned is the cumulative number of seats given back so far;
	// after a release it is Granted-Used unless the kiosk over-confirmed
	// residents the hub had already confirmed.
	Returned uint32 `cbor:"4,keyasint" json:"returned"`
}

// Kind is KindRelease.
func (*Release) Kind() Kind { return KindRelease }

// Validate checks a release.
func (b *Release) Validate() error {
	if err := idField("activity", b.Activity); err != nil {
		return err
	}
	if b.Returned > b.Granted {
		return &FieldError{Field: "returned", Msg: "cannot exceed granted"}
	}
	return nil
}

func init() {
	register(KindRelease, "release", func() Body { return new(Release) })
}
