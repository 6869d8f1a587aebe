// TEST STAND-IN for the real server's file API (see internal/filestore for
// the backends): POST /api/v4/files (multipart: channel_id as a form field or
// query parameter, one or more "files" parts; 201 with file_infos and
// client_ids), GET /api/v4/files/{file_id} (the bytes, read from the backend)
// and GET /api/v4/files/{file_id}/info; files are stored under the real
// server's path layout YYYYMMDD/teams/{team}/channels/{channel}/users/{user}/{file}/{name}
// and attached to a post through its file_ids.
package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"path"
	"path/filepath"
	"strings"
	"time"

	"mmdeploy.test/standin/mattermost/internal/mmid"
	"mmdeploy.test/standin/mattermost/internal/store"
)

func (s *Server) uploadFiles(w http.ResponseWriter, r *http.Request, ss *session) {
	if s.Files == nil {
		s.writeErr(w, http.StatusNotImplemented, "api.file.upload_file.storage.app_error", "Unable to upload file(s). Image storage is not configured.", "")
		return
	}
	max := *s.Cfg.FileSettings.MaxFileSize
	r.Body = http.MaxBytesReader(w, r.Body, max+1<<20)
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		s.writeErr(w, http.StatusBadRequest, "api.file.upload_file.read_request.app_error", "Unable to upload file(s). Error reading or parsing request data.", err.Error())
		return
	}
	defer r.MultipartForm.RemoveAll()
	channelID := r.URL.Query().Get("channel_id")
	if v := r.MultipartForm.Value["channel_id"]; len(v) > 0 {
		channelID = v[0]
	}
	c, err := s.Store.GetChannel(channelID)
	if !mmid.Valid(channelID) || err != nil {
		s.writeErr(w, http.StatusBadRequest, "api.context.invalid_url_param.app_error", "Invalid or missing channel_id parameter in request URL.", "")
		return
	}
	if !s.canPostOrRead(c, ss, true) {
		s.forbidden(w, "upload_file")
		return
	}
	clientIDs := r.MultipartForm.Value["client_ids"]
	if clientIDs == nil {
		clientIDs = []string{}
	}
	infos := []*store.FileInfo{}
	for _, fh := range r.MultipartForm.File["files"] {
		if fh.Size > max {
			s.writeErr(w, http.StatusRequestEntityTooLarge, "api.file.upload_file.too_large_detailed.app_error", "Unable to upload file "+fh.Filename+". File is larger than the maximum.", "")
			return
		}
		f, err := fh.Open()
		if err != nil {
			s.writeErr(w, http.StatusBadRequest, "api.file.upload_file.read_request.app_error", "Unable to read the file.", err.Error())
			return
		}
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			s.writeErr(w, http.StatusBadRequest, "api.file.upload_file.read_request.app_error", "Unable to read the file.", err.Error())
			return
		}
		now := time.Now()
		name := filepath.Base(fh.Filename)
		ext := strings.TrimPrefix(strings.ToLower(filepath.Ext(name)), ".")
		mt := fh.Header.Get("Content-Type")
		if byExt := mime.TypeByExtension("." + ext); byExt != "" {
			mt = byExt
		}
		if mt == "" {
			mt = http.DetectContentType(data)
		}
		fi := &store.FileInfo{Id: mmid.New(), CreatorId: ss.UserId, ChannelId: c.Id, CreateAt: now.UnixMilli(), UpdateAt: now.UnixMilli(),
			Name: name, Extension: ext, Size: int64(len(data)), MimeType: mt}
		fi.Path = path.Join(now.Format("20060102"), "teams", orNoTeam(c.TeamId), "channels", c.Id, "users", ss.UserId, fi.Id, name)
		ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
		err = s.Files.Write(ctx, fi.Path, bytes.NewReader(data), int64(len(data)), mt)
		cancel()
		if err != nil {
			s.Log.Log("error", "Unable to write the file to the file store", "driver", s.Files.Name(), "error", err.Error())
			s.writeErr(w, http.StatusInternalServerError, "api.file.upload_file.storage.app_error", "Unable to upload file(s). Image storage is not configured.", err.Error())
			return
		}
		if err := s.Store.SaveFileInfo(fi); err != nil {
			s.writeErr(w, http.StatusInternalServerError, "app.file_info.save.app_error", "Unable to save the file info.", err.Error())
			return
		}
		infos = append(infos, fi)
	}
	if len(infos) == 0 {
		s.writeErr(w, http.StatusBadRequest, "api.file.upload_file.read_form_value.app_error", "Unable to upload file(s). Error reading the value for files.", "")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"file_infos": infos, "client_ids": clientIDs})
}

func orNoTeam(id string) string {
	if id == "" {
		return "noteam"
	}
	return id
}

func (s *Server) fileFor(w http.ResponseWriter, r *http.Request, ss *session) *store.FileInfo {
	fi, err := s.Store.GetFileInfo(r.PathValue("file_id"))
	if errors.Is(err, store.ErrNotFound) {
		s.writeErr(w, http.StatusNotFound, "app.file_info.get.app_error", "Unable to get the file info.", "")
		return nil
	} else if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.file_info.get.app_error", "Unable to get the file info.", err.Error())
		return nil
	}
	if fi.CreatorId != ss.UserId && !ss.isAdmin() {
		c, err := s.Store.GetChannel(fi.ChannelId)
		if err != nil || fi.PostId == "" || !s.canPostOrRead(c, ss, false) {
			s.forbidden(w, "read_channel")
			return nil
		}
	}
	return fi
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request, ss *session) {
	fi := s.fileFor(w, r, ss)
	if fi == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	data, err := s.Files.Read(ctx, fi.Path)
	if err != nil {
		s.writeErr(w, http.StatusNotFound, "api.file.file_reader.app_error", "Unable to read the file from storage.", err.Error())
		return
	}
	w.Header().Set("Content-Type", fi.MimeType)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fi.Name}))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(data)
}

func (s *Server) getFileInfo(w http.ResponseWriter, r *http.Request, ss *session) {
	if fi := s.fileFor(w, r, ss); fi != nil {
		writeJSON(w, http.StatusOK, fi)
	}
}
