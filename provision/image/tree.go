package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Whiteouts, as the OCI image spec (and AUFS before it) writes them in a layer: .wh.NAME
// removes NAME of the layers below; .wh..wh..opq in a directory hides everything the layers
// below put in it.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// tree is a root filesystem being assembled from layers in a directory. Every path of a
// layer is resolved inside the tree (openat2 RESOLVE_IN_ROOT): a symlink in the image,
// absolute or not, never leads a write outside it, as it would with plain path joins (an
// image's "etc -> /etc" followed by "etc/passwd" would otherwise write the host's).
type tree struct {
	dir   string
	root  int   // O_PATH fd of dir
	limit int64 // bytes of file content the whole tree may hold
	used  int64
	files int
	dirs  []dirTimes // applied last: writing into a directory changes its times
	// layer is what the layer being applied wrote: an opaque whiteout hides only what the
	// layers below put there.
	layer map[string]bool
}

type dirTimes struct {
	rel  string
	time unix.Timespec
}

// maxEntries bounds the entries of one image (Debian's full desktop has about 300,000).
const maxEntries = 5_000_000

func newTree(dir string, limit int64) (*tree, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &tree{dir: dir, root: fd, limit: limit}, nil
}

func (t *tree) close() { unix.Close(t.root) }

// clean makes a layer's path relative to the tree's root: "./usr/../etc/x" and "/etc/x"
// are both "etc/x"; "" is the root itself.
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// open resolves rel inside the tree, following symlinks as the guest would see them.
func (t *tree) open(rel string, flags uint64) (int, error) {
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(t.root, rel, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if errors.Is(err, unix.ENOSYS) {
		return -1, errors.New("this kernel lacks openat2 (Linux 5.6 or later is needed to flatten images safely)")
	}
	return fd, err
}

// parent opens the directory rel lies in, making missing directories on the way (a layer
// need not list every parent), and returns it with rel's last component.
func (t *tree) parent(rel string) (int, string, error) {
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	fd, err := t.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) && dir != "" {
		if err := t.mkdirAll(dir); err != nil {
			return -1, "", err
		}
		fd, err = t.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	}
	if errors.Is(err, unix.ENOTDIR) {
		return -1, "", fmt.Errorf("%s: a parent is not a directory", rel)
	}
	if err != nil {
		return -1, "", fmt.Errorf("%s: %w", dir, err)
	}
	return fd, base, nil
}

func (t *tree) mkdirAll(rel string) error {
	parts := strings.Split(rel, "/")
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		fd, err := t.open(sub, unix.O_PATH|unix.O_DIRECTORY)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%s: %w", sub, err)
		}
		pfd, err := t.open(strings.Join(parts[:i], "/"), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("%s: %w", sub, err)
		}
		err = unix.Mkdirat(pfd, parts[i], 0o755)
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("mkdir %s: %w", sub, err)
		}
	}
	return nil
}

// removeAt removes name in the directory pfd, whatever it is, a whole directory included.
func removeAt(pfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(pfd, name, 0)
	}
	dfd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	names, err := readNames(dfd)
	if err == nil {
		for _, n := range names {
			if err = removeAt(dfd, n); err != nil {
				break
			}
		}
	}
	unix.Close(dfd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
}

// readNames lists the directory open as dfd (the fd stays open).
func readNames(dfd int) ([]string, error) {
	dup, err := unix.Dup(dfd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

// apply lays one layer over the tree.
func (t *tree) apply(r io.Reader) error {
	t.layer = map[string]bool{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the layer: %w", err)
		}
		if t.files++; t.files > maxEntries {
			return fmt.Errorf("more than %d files", maxEntries)
		}
		if err := t.entry(h, tr); err != nil {
			return err
		}
	}
}

func (t *tree) entry(h *tar.Header, r io.Reader) error {
	rel := clean(h.Name)
	base := path.Base(rel)
	if rel == "" {
		return nil // the root's own entry: its mode stays 0755, root's
	}
	if base == whiteoutOpaque {
		return t.opaque(path.Dir(rel))
	}
	if name, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		pfd, err := t.open(path.Dir(rel), unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // nothing below to hide
		}
		if err != nil {
			return fmt.Errorf("whiteout %s: %w", rel, err)
		}
		defer unix.Close(pfd)
		if err := removeAt(pfd, name); err != nil {
			return fmt.Errorf("whiteout %s: %w", rel, err)
		}
		return nil
	}
	pfd, base, err := t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	t.layer[rel] = true
	mode := uint32(h.Mode) & 0o7777
	mtime := unix.NsecToTimespec(h.ModTime.UnixNano())
	var st unix.Stat_t
	exists := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir := exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	if h.Typeflag != tar.TypeDir || (exists && !isDir) {
		// Anything but a directory over a directory replaces it, and the other way round.
		if err := removeAt(pfd, base); err != nil {
			return fmt.Errorf("replace %s: %w", rel, err)
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if !isDir {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return fmt.Errorf("mkdir %s: %w", rel, err)
			}
		}
		if err := t.owner(pfd, base, h, mode); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		t.dirs = append(t.dirs, dirTimes{rel, mtime})
		return nil
	case tar.TypeReg, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if h.Typeflag != tar.TypeReg {
			kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
			if err := unix.Mknodat(pfd, base, kind|0o600, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))); err != nil {
				return fmt.Errorf("mknod %s: %w", rel, err)
			}
			return t.finish(pfd, base, h, mode, mtime)
		}
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", rel, err)
		}
		f := os.NewFile(uintptr(fd), rel)
		room := t.limit - t.used
		n, err := io.Copy(f, io.LimitReader(r, room+1))
		t.used += n
		if err == nil && n > room {
			err = fmt.Errorf("the files are larger than %d MiB", t.limit>>20)
		}
		if err == nil {
			err = setXattrs(fd, h)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
		return t.finish(pfd, base, h, mode, mtime)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, base); err != nil {
			return fmt.Errorf("symlink %s: %w", rel, err)
		}
		if err := unix.Fchownat(pfd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s: %w", rel, err)
		}
		unix.UtimesNanoAt(pfd, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW) //nolint:errcheck // a time is no reason to fail
		return nil
	case tar.TypeLink:
		target := clean(h.Linkname)
		tfd, tbase, err := t.parent(target)
		if err != nil {
			return fmt.Errorf("hard link %s to %s: %w", rel, target, err)
		}
		err = unix.Linkat(tfd, tbase, pfd, base, 0)
		unix.Close(tfd)
		if err != nil {
			return fmt.Errorf("hard link %s to %s: %w", rel, target, err)
		}
		return nil
	default:
		return nil // pax globals, GNU sparse markers and the like carry no file
	}
}

// owner sets a directory's owner and mode; the setuid/setgid bits go on after the owner,
// which clears them.
func (t *tree) owner(pfd int, base string, h *tar.Header, mode uint32) error {
	if err := unix.Fchownat(pfd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return unix.Fchmodat(pfd, base, mode, 0)
}

func (t *tree) finish(pfd int, base string, h *tar.Header, mode uint32, mtime unix.Timespec) error {
	if err := t.owner(pfd, base, h, mode); err != nil {
		return fmt.Errorf("%s: %w", base, err)
	}
	unix.UtimesNanoAt(pfd, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW) //nolint:errcheck // a time is no reason to fail
	return nil
}

// setXattrs keeps a file's extended attributes (file capabilities such as ping's
// cap_net_raw are one), which tar carries as SCHILY.xattr.* records.
func setXattrs(fd int, h *tar.Header) error {
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := unix.Fsetxattr(fd, name, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
				return fmt.Errorf("xattr %s: %w", name, err)
			}
		}
	}
	return nil
}

// opaque empties dir of what the layers below put in it.
func (t *tree) opaque(dir string) error {
	if dir == "." {
		dir = ""
	}
	dfd, err := t.open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opaque whiteout in %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	names, err := readNames(dfd)
	if err != nil {
		return err
	}
	for _, n := range names {
		if !t.layer[path.Join(dir, n)] {
			if err := removeAt(dfd, n); err != nil {
				return fmt.Errorf("opaque whiteout in %s: %w", dir, err)
			}
		}
	}
	return nil
}

// settle gives directories their times, deepest first, once everything is in them.
func (t *tree) settle() {
	for i := len(t.dirs) - 1; i >= 0; i-- {
		d := t.dirs[i]
		if pfd, base, err := t.parent(d.rel); err == nil {
			unix.UtimesNanoAt(pfd, base, []unix.Timespec{d.time, d.time}, unix.AT_SYMLINK_NOFOLLOW) //nolint:errcheck
			unix.Close(pfd)
		}
	}
}

// regular reports whether rel, followed inside the tree, is a regular file, and opens it
// for reading when it is.
func (t *tree) regular(rel string) (*os.File, bool) {
	fd, err := t.open(rel, unix.O_RDONLY)
	if err != nil {
		return nil, false
	}
	f := os.NewFile(uintptr(fd), rel)
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, false
	}
	return f, true
}
