package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"hearth/app"
	"hearth/app/image"
)

const imageUsage = `hearth image build NAME [--release bookworm] [--init systemd|openrc] [--size 2G] [--mirror URL] [flags]
       hearth image import NAME --kernel FILE [--initrd FILE] --rootfs FILE [flags]
       hearth image import NAME --oci REF | --oci-archive FILE [--kernel-from IMAGE] [--size 2G] [flags]
       hearth image list [flags]
       hearth image delete NAME [flags]`

// takeFlags removes the named flags ("--name value" or "--name=value") from args and
// returns their values and the rest, for config.Parse to read.
func takeFlags(args []string, names ...string) (map[string]string, []string, error) {
	vals := map[string]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		key, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		known := strings.HasPrefix(a, "-") && slices.Contains(names, key)
		if !known {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("flag --%s needs a value", key)
			}
			i++
			val = args[i]
		}
		vals[key] = val
	}
	return vals, rest, nil
}

func imageCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: " + imageUsage)
	}
	verb := args[0]
	vals, rest, err := takeFlags(args[1:], "release", "init", "size", "mirror", "kernel", "initrd", "rootfs", "oci", "oci-archive", "kernel-from")
	if err != nil {
		return err
	}
	want := 1
	switch verb {
	case "build", "import", "delete":
	case "list":
		want = 0
	case "-h", "--help":
		return flag.ErrHelp
	default:
		return errors.New("usage: " + imageUsage)
	}
	m, names, err := oneShot(ctx, rest, want, imageUsage, getenv, stderr)
	if err != nil {
		return err
	}
	defer m.DB.Close()
	if verb != "list" { // an image is made on (and deleted from) this host's node
		if err := m.DB.CheckNodeName(ctx, m.Config.Node); err != nil {
			return err
		}
	}
	switch verb {
	case "list":
		list, err := m.Images.List(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tNODE\tSTATE\tSOURCE\tINIT\tCLOUD-INIT\tSIZE\tCREATED\tUSED BY")
		for _, im := range list {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\t%s\t%s\t%s\n", im.Name, im.Node, im.State, im.Source, im.Init, im.CloudInit,
				imageSize(im), im.CreatedAt.Format(time.RFC3339), strings.Join(im.UsedBy, ","))
		}
		return w.Flush()
	case "delete":
		if err := m.Images.Delete(ctx, "", names[0], cliActor); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted image %s\n", names[0])
		return nil
	}
	name := names[0]
	var im *app.Image
	if verb == "build" {
		im, err = m.Images.StartBuild(ctx, name, image.BuildSpec{Release: vals["release"], Init: vals["init"], Size: vals["size"], Mirror: vals["mirror"]}, cliActor)
	} else if vals["oci"] != "" || vals["oci-archive"] != "" || vals["kernel-from"] != "" {
		if vals["kernel"] != "" || vals["initrd"] != "" || vals["rootfs"] != "" {
			return errors.New("give files (--kernel, --rootfs) or an OCI image (--oci, --oci-archive), not both")
		}
		im, err = m.Images.StartOCI(ctx, name, image.OCISource{Ref: vals["oci"], Archive: vals["oci-archive"],
			KernelFrom: vals["kernel-from"], Size: vals["size"]}, nil, cliActor)
	} else {
		// The shell's operator may name any file they can read: no confinement here.
		im, err = m.Images.StartImport(ctx, name, image.ImportFiles{Kernel: vals["kernel"], Initrd: vals["initrd"], Rootfs: vals["rootfs"]}, nil, cliActor)
	}
	if err != nil {
		return err
	}
	return follow(ctx, m.Images, im.Name, stdout)
}

// follow prints an image's steps and log as it is made, and says how it ended.
func follow(ctx context.Context, images *image.Service, name string, stdout io.Writer) error {
	start := time.Now()
	said := map[string]bool{}
	lines := 0
	for {
		im, err := images.Get(ctx, "", name)
		if err != nil {
			return err
		}
		for _, st := range im.Steps {
			if st.State != app.StepPending && !said[st.Name] {
				said[st.Name] = true
				fmt.Fprintf(stdout, "==> %s (%s)\n", st.Name, time.Since(start).Round(time.Second))
			}
		}
		if log := strings.Split(im.Log, "\n"); im.Log != "" && len(log) > lines {
			for _, l := range log[lines:] {
				fmt.Fprintln(stdout, "    "+l)
			}
			lines = len(log)
		} else if len(log) < lines { // the kept tail moved on
			lines = len(log)
		}
		switch im.State {
		case app.ImageReady:
			fmt.Fprintf(stdout, "image %s is ready (%s, %s): %s, init %s, cloud-init %v\n", im.Name,
				time.Since(start).Round(time.Second), imageSize(im), im.Dir(), im.Init, im.CloudInit)
			return nil
		case app.ImageFailed:
			return app.Errorf(app.EINVALID, "image %s failed: %s", im.Name, im.Error)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// imageSize is the total of an image's files, for people.
func imageSize(im *app.Image) string {
	if im.Size() == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MiB", float64(im.Size())/(1<<20))
}
