package event

import (
	"crypto/sha256"
	"encoding/binary"
)

// Hub decision kinds for report triage beyond a patch. Numbered apart from
// the others so concurrent additions elsewhere do not collide.
const (
	// KindReportMerge merges a duplicate report into another: the
	// duplicate follows the other's status from then on and its votes
	// count there.
	KindReportMerge Kind = 80
	// KindReportFile is a report filed at the hub rather than at a kiosk
	// (an Open311 client, an operator taking a phone call).
	KindReportFile Kind = 81
)

// ReportMerge folds Report (the duplicate) into Into. The latest merge of
// a report by (HLC, device, seq) decides where it points; one with Into
// empty undoes the merges before it, and the report stands alone again.
type ReportMerge struct {
	Report string `cbor:"1,keyasint" json:"report"`
	Into   string `cbor:"2,keyasint" json:"into"`
	Who    string `cbor:"3,keyasint" json:"who"`
	Note   string `cbor:"4,keyasint,omitempty" json:"note,omitempty"`
}

// ReportFile files a report at the hub for a site. With ClientID set the
// report's id comes from (Site, ClientID) alone (see ClientReportID), so
// a client that retries files it once whatever the hub has seen: the
// earliest filing by (HLC, device, seq) is the report.
type ReportFile struct {
	Site     string `cbor:"1,keyasint" json:"site"`
	ClientID string `cbor:"2,keyasint,omitempty" json:"client_id,omitempty"`
	Report   Report `cbor:"3,keyasint" json:"report"`
	Who      string `cbor:"4,keyasint" json:"who"` // the operator or token that filed it
}

func (*ReportMerge) Kind() Kind { return KindReportMerge }
func (*ReportFile) Kind() Kind  { return KindReportFile }

// Validate checks a merge: two different reports (or none to merge into:
// an unmerge) and the operator.
func (b *ReportMerge) Validate() error {
	err := first(
		refField("report", b.Report),
		idField("who", b.Who),
		text("note", b.Note, 0, 500),
	)
	if err == nil && b.Into != "" {
		err = refField("into", b.Into)
	}
	if err == nil && b.Report == b.Into {
		err = &FieldError{Field: "into", Msg: "a report cannot be merged into itself"}
	}
	return err
}

// Validate checks a filing: its site, client id and the report itself.
func (b *ReportFile) Validate() error {
	if err := first(idField("site", b.Site), idField("who", b.Who)); err != nil {
		return err
	}
	if b.ClientID != "" {
		if err := text("client_id", b.ClientID, 1, 128); err != nil {
			return err
		}
	}
	return b.Report.Validate()
}

// ClientReportDevice is the device part of the id of a report filed with
// a client id. Its sequence numbers are hashes, far above any count a
// device named so would reach, so such ids never meet a real event's.
const ClientReportDevice = "client"

// ClientReportID is the id of the report a client files under clientID at
// site: DEVICE.SEQ like every report id, with the sequence number taken
// from a hash, so retries name the same report.
func ClientReportID(site, clientID string) string {
	sum := sha256.Sum256([]byte(site + "\x00" + clientID))
	seq := binary.BigEndian.Uint64(sum[:8])>>1 | 1 // never 0, fits int64
	return FormatID(ClientReportDevice, seq)
}

func init() {
	register(KindReportMerge, "report_merge", func() Body { return new(ReportMerge) })
	register(KindReportFile, "report_file", func() Body { return new(ReportFile) })
}
