package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxManifest bounds the manifest read before anything is checked.
const maxManifest = 4 << 20

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadArchive, fmt.Sprintf(format, args...))
}

// Read reads an archive from r: the manifest first, handed to manifest
// (which may refuse it), then every member through member, in archive
// order, each checked against the manifest's size and SHA-256 once read.
// member gets the bytes before their checksum is known: what it writes
// must stay aside until Read returns nil. Every member the manifest names
// must be there, and nothing else.
func Read(r io.Reader, manifest func(Manifest) error, member func(Member, io.Reader) error) (Manifest, error) {
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil {
		return Manifest{}, bad("no manifest: %v", err)
	}
	if hdr.Name != ManifestName {
		return Manifest{}, bad("the first member is %q, not %s", hdr.Name, ManifestName)
	}
	raw, err := io.ReadAll(io.LimitReader(tr, maxManifest))
	if err != nil {
		return Manifest{}, bad("read manifest: %v", err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Manifest{}, bad("manifest: %v", err)
	}
	if m.Format != Format {
		return m, bad("archive format %d; this linli-hub reads format %d", m.Format, Format)
	}
	want := map[string]Member{}
	for _, mb := range m.Members {
		if _, dup := want[mb.Name]; dup {
			return m, bad("manifest names %s twice", mb.Name)
		}
		want[mb.Name] = mb
	}
	if _, ok := want[StoreName]; !ok {
		return m, bad("manifest has no %s", StoreName)
	}
	if manifest != nil {
		if err := manifest(m); err != nil {
			return m, err
		}
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, bad("%v (truncated?)", err)
		}
		mb, ok := want[hdr.Name]
		if !ok {
			return m, bad("member %q is not in the manifest (or appears twice)", hdr.Name)
		}
		delete(want, hdr.Name)
		if hdr.Typeflag != tar.TypeReg || hdr.Size != mb.Size {
			return m, bad("member %s: %d bytes, manifest says %d", mb.Name, hdr.Size, mb.Size)
		}
		h := sha256.New()
		body := io.TeeReader(tr, h)
		if member != nil {
			if err := member(mb, body); err != nil {
				return m, fmt.Errorf("member %s: %w", mb.Name, err)
			}
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return m, bad("member %s: %v (truncated?)", mb.Name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != mb.SHA256 {
			return m, bad("member %s: SHA-256 %s, manifest says %s", mb.Name, got, mb.SHA256)
		}
	}
	for name := range want {
		return m, bad("member %s is missing (truncated?)", name)
	}
	return m, nil
}

// Verify reads the archive at path as a restore would, without
// restoring: manifest, members and checksums, and the store stream
// decoded frame by frame. It returns the manifest and how many store
// entries the stream holds.
func Verify(path string) (Manifest, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, 0, err
	}
	defer f.Close()
	var entries int
	m, err := Read(f, nil, func(mb Member, r io.Reader) error {
		if mb.Name != StoreName {
			return nil
		}
		entries, err = CheckStream(r)
		return err
	})
	return m, entries, err
}

// CheckStream decodes a Badger backup stream without loading it: each
// frame is a little-endian length and a KVList message, every KV in it
// with a key. It returns the number of KVs.
func CheckStream(r io.Reader) (int, error) {
	var n int
	buf := make([]byte, 0, 64<<10)
	for frame := 0; ; frame++ {
		var sz uint64
		err := binary.Read(r, binary.LittleEndian, &sz)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, bad("store stream frame %d: %v", frame, err)
		}
		if sz > 1<<31 {
			return n, bad("store stream frame %d: length %d", frame, sz)
		}
		if uint64(cap(buf)) < sz {
			buf = make([]byte, sz)
		}
		buf = buf[:sz]
		if _, err := io.ReadFull(r, buf); err != nil {
			return n, bad("store stream frame %d: %v", frame, err)
		}
		err = walkProto(buf, func(field uint64, v []byte) error {
			if field != 1 { // KVList.kv
				return nil
			}
			hasKey := false
			if err := walkProto(v, func(f uint64, kv []byte) error {
				hasKey = hasKey || (f == 1 && len(kv) > 0)
				return nil
			}); err != nil {
				return err
			}
			if !hasKey {
				return errors.New("an entry without a key")
			}
			n++
			return nil
		})
		if err != nil {
			return n, bad("store stream frame %d: %v", frame, err)
		}
	}
}

// walkProto walks one protobuf message's fields, handing fn the
// length-delimited ones; it fails on anything that is not well formed.
func walkProto(b []byte, fn func(field uint64, v []byte) error) error {
	for len(b) > 0 {
		tag, k := binary.Uvarint(b)
		if k <= 0 || tag>>3 == 0 {
			return errors.New("bad field tag")
		}
		b = b[k:]
		switch tag & 7 {
		case 0:
			if _, k = binary.Uvarint(b); k <= 0 {
				return errors.New("bad varint")
			}
			b = b[k:]
		case 1, 5:
			w := 8
			if tag&7 == 5 {
				w = 4
			}
			if len(b) < w {
				return errors.New("short fixed field")
			}
			b = b[w:]
		case 2:
			l, k := binary.Uvarint(b)
			if k <= 0 || l > uint64(len(b)-k) {
				return errors.New("bad length")
			}
			if err := fn(tag>>3, b[k:k+int(l)]); err != nil {
				return err
			}
			b = b[k+int(l):]
		default:
			return fmt.Errorf("wire type %d", tag&7)
		}
	}
	return nil
}
