package web

import (
	"io"
	"mime/multipart"
	"os"
	"strings"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/image"
	"hearth/views/pages"
)

const ociUploadPath = "/images/oci"

// createOCIImage is POST /images/oci: an OCI image by registry reference or uploaded
// archive (multipart). The archive is streamed to a file beside the images, bounded by
// image.MaxUpload, never held in memory; the short fields are read within 4 KiB each.
func (s *Server) createOCIImage(c echo.Context) error {
	if err := s.images(); err != nil {
		return err
	}
	mr, err := c.Request().MultipartReader()
	if err != nil {
		return app.Errorf(app.EINVALID, "the form must be sent as multipart/form-data: %s", err)
	}
	fields := map[string]string{}
	archive := ""
	handed := false
	defer func() {
		if archive != "" && !handed {
			os.Remove(archive)
		}
	}()
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return app.Errorf(app.EINVALID, "the form could not be read: %s", err)
		}
		switch name := part.FormName(); name {
		case "archive":
			if part.FileName() == "" || archive != "" {
				io.Copy(io.Discard, part) //nolint:errcheck // an empty file input
				continue
			}
			if archive, err = s.receive(part); err != nil {
				return err
			}
		case "name", "oci", "kernel_from", "size", "_csrf":
			b, err := io.ReadAll(io.LimitReader(part, 4<<10+1))
			if err != nil {
				return app.Errorf(app.EINVALID, "the form could not be read: %s", err)
			}
			if len(b) > 4<<10 {
				return app.Errorf(app.ETOOLARGE, "the field %s is larger than 4 KiB", name)
			}
			fields[name] = strings.TrimSpace(string(b))
		default:
			io.Copy(io.Discard, io.LimitReader(part, 64<<10)) //nolint:errcheck // not ours
		}
	}
	name := fields["name"]
	im, err := s.Images.StartOCI(c.Request().Context(), name, image.OCISource{Ref: fields["oci"], Archive: archive,
		KernelFrom: fields["kernel_from"], Size: fields["size"], RemoveArchive: archive != ""}, nil, actor(c))
	handed = archive != "" // StartOCI removes it, whatever it decides
	if err != nil {
		status, msg, escalate := refusal(err)
		if escalate != nil {
			return escalate
		}
		v := pages.ImagesView{Init: "systemd", OCIName: name, OCIRef: fields["oci"], KernelFrom: fields["kernel_from"], OCISize: fields["size"]}
		v.OCIErrors = app.ErrorFields(err)
		if len(v.OCIErrors) == 0 {
			v.OCIError = msg
		}
		if archive != "" {
			v.OCIError = strings.TrimSpace(v.OCIError + " Choose the archive again.")
		}
		return s.renderImages(c, status, v)
	}
	return redirect(c, "/images/"+im.Name)
}

// receive writes an uploaded archive to a file of the image service's and returns its path.
func (s *Server) receive(part *multipart.Part) (string, error) {
	f, err := s.Images.NewUpload()
	if err != nil {
		return "", err
	}
	n, err := io.Copy(f, io.LimitReader(part, image.MaxUpload+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > image.MaxUpload {
		err = app.Errorf(app.ETOOLARGE, "the archive is larger than %d GiB", image.MaxUpload>>30)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err // a full disk is told as such by the error handler
	}
	return f.Name(), nil
}
