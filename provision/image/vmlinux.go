package image

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// KernelKind says what a kernel file is: "bzImage" (x86 boot protocol, QEMU boots it),
// "elf" (an uncompressed vmlinux, what Firecracker boots), or an error saying what it is
// instead.
func KernelKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 0x210)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case len(head) >= 4 && bytes.Equal(head[:4], []byte("\x7fELF")):
		return "elf", nil
	case len(head) >= 0x206 && bytes.Equal(head[0x202:0x206], []byte("HdrS")):
		return "bzImage", nil
	}
	return "", fmt.Errorf("%s is neither a bzImage nor an ELF kernel (%s)", path, describe(head))
}

// describe names a few common file kinds by their first bytes, for error messages.
func describe(head []byte) string {
	for _, k := range []struct{ magic, name string }{
		{"\x1f\x8b", "gzip data"}, {"\xfd7zXZ", "xz data"}, {"\x28\xb5\x2f\xfd", "zstd data"}, {"070701", "a cpio archive (an initrd?)"},
		{"PK\x03\x04", "a zip archive"}, {"\x89PNG", "a PNG image"}, {"#!", "a script"},
	} {
		if bytes.HasPrefix(head, []byte(k.magic)) {
			return k.name
		}
	}
	if len(head) == 0 {
		return "empty"
	}
	return "unknown data"
}

// ExtractVmlinux writes the uncompressed kernel held in the bzImage at src to dst: the
// payload the x86 boot protocol points at (payload_offset, payload_length, boot protocol
// 2.08 and later) decompressed by its own format. It is what Firecracker needs of the same
// kernel QEMU boots.
func ExtractVmlinux(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if len(b) < 0x250 || !bytes.Equal(b[0x202:0x206], []byte("HdrS")) {
		return fmt.Errorf("%s is not a bzImage", src)
	}
	if binary.LittleEndian.Uint16(b[0x206:]) < 0x208 {
		return fmt.Errorf("%s uses boot protocol %#x, older than 2.08: no payload to extract", src, binary.LittleEndian.Uint16(b[0x206:]))
	}
	setup := int(b[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := (setup+1)*512 + int(binary.LittleEndian.Uint32(b[0x248:]))
	end := start + int(binary.LittleEndian.Uint32(b[0x24c:]))
	if start < 0 || end > len(b) || start >= end {
		return fmt.Errorf("%s: the payload lies outside the file", src)
	}
	r, err := decompressor(b[start:end])
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	// A kernel is at most a few hundred MiB; more is not a kernel.
	n, err := io.Copy(out, io.LimitReader(r, 1<<30))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n < 4 {
		err = errors.New("the payload decompresses to nothing")
	}
	if err == nil {
		var magic [4]byte
		f, _ := os.Open(tmp)
		io.ReadFull(f, magic[:])
		f.Close()
		if string(magic[:]) != "\x7fELF" {
			err = errors.New("the payload does not decompress to an ELF kernel")
		}
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: extract vmlinux: %w", src, err)
	}
	return os.Rename(tmp, dst)
}

// decompressor reads a bzImage payload by its format's magic bytes.
func decompressor(p []byte) (io.Reader, error) {
	in := bytes.NewReader(p)
	switch {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		return gzip.NewReader(in)
	case bytes.HasPrefix(p, []byte("\xfd7zXZ\x00")):
		return xz.NewReader(in)
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(in)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case bytes.HasPrefix(p, []byte{0x02, 0x21, 0x4c, 0x18}), bytes.HasPrefix(p, []byte{0x04, 0x22, 0x4d, 0x18}):
		return lz4.NewReader(in), nil
	case bytes.HasPrefix(p, []byte("BZh")):
		return bzip2.NewReader(in), nil
	case bytes.HasPrefix(p, []byte{0x5d, 0x00, 0x00}):
		return lzma.NewReader(in)
	}
	return nil, fmt.Errorf("the kernel payload is in a format not known here (first bytes % x)", p[:min(8, len(p))])
}
