package web

import "github.com/labstack/echo/v4"

// deleteVM is POST /vms/{id}/delete.
func (s *Server) deleteVM(c echo.Context) error {
	if err := s.VMs.Delete(c.Request().Context(), c.Param("id"), actor(c)); err != nil {
		return err
	}
	return redirect(c, "/vms")
}
