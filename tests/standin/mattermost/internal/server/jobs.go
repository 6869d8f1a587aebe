// TEST STAND-IN for the real server's job server: JobSettings.RunJobs workers
// and the scheduler (RunScheduler) write to the database the server is
// configured for, which a test reads to prove where the job server writes:
//   - every interval (MMSTANDIN_JOB_INTERVAL_SECONDS, default 60) a
//     "standin_heartbeat" job row (status success, data.host and
//     data.datasource_host) and a Systems row JobServerHeartbeat_<host>;
//   - jobs created with POST /api/v4/jobs (listed by GET /api/v4/jobs/type/{type}) are picked up by a worker (possibly
//     another node: the job server) — "elasticsearch_post_indexing" bulk-indexes
//     every post into Elasticsearch/OpenSearch.
//
// Divergence: the real scheduler's job types (data retention, exports, ...)
// are not reproduced.
package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"mmdeploy.test/standin/mattermost/internal/mmid"
	"mmdeploy.test/standin/mattermost/internal/store"
)

const jobTypeESIndexing = "elasticsearch_post_indexing"

func (s *Server) createJob(w http.ResponseWriter, r *http.Request, ss *session) {
	if !ss.isAdmin() {
		s.forbidden(w, "manage_jobs")
		return
	}
	var body struct {
		Type string            `json:"type"`
		Data map[string]string `json:"data"`
	}
	if err := decode(r, &body); err != nil || body.Type != jobTypeESIndexing {
		s.writeErr(w, http.StatusBadRequest, "model.job.is_valid.type.app_error", "Invalid job type.", "the stand-in runs "+jobTypeESIndexing)
		return
	}
	if body.Data == nil {
		body.Data = map[string]string{}
	}
	now := time.Now().UnixMilli()
	j := &store.Job{Id: mmid.New(), Type: body.Type, CreateAt: now, LastActivityAt: now, Status: "pending", Data: body.Data}
	if err := s.Store.SaveJob(j); err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.job.save.app_error", "Unable to save the job.", err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, j)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, ss *session) {
	if !ss.isAdmin() {
		s.forbidden(w, "manage_jobs")
		return
	}
	j, err := s.Store.GetJob(r.PathValue("job_id"))
	if errors.Is(err, store.ErrNotFound) {
		s.writeErr(w, http.StatusNotFound, "app.job.get.app_error", "Unable to get the job.", "")
		return
	} else if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.job.get.app_error", "Unable to get the job.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// getJobsByType is GET /api/v4/jobs/type/{job_type} (page 0, per_page up to 200): the
// jobs of a type, newest first; a deploy tool asks it before starting a job only once.
func (s *Server) getJobsByType(w http.ResponseWriter, r *http.Request, ss *session) {
	if !ss.isAdmin() {
		s.forbidden(w, "manage_jobs")
		return
	}
	perPage := 60
	if v, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && v > 0 && v <= 200 {
		perPage = v
	}
	jobs, err := s.Store.JobsByType(r.PathValue("job_type"), perPage)
	if err != nil {
		s.writeErr(w, http.StatusInternalServerError, "app.job.get_all.app_error", "Unable to get the jobs.", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, jobs)
}

// jobLoop runs the heartbeat and the pending jobs.
func (s *Server) jobLoop(ctx context.Context) {
	host, _ := os.Hostname()
	dbHost := ""
	if u, err := url.Parse(*s.Cfg.SqlSettings.DataSource); err == nil {
		dbHost = u.Host
	}
	beat := time.NewTicker(jobInterval())
	defer beat.Stop()
	work := time.NewTicker(2 * time.Second)
	defer work.Stop()
	heartbeat := func() {
		if err := s.Store.RecordJobRun("standin_heartbeat", host, dbHost); err != nil {
			s.Log.Log("error", "Job run failed", "error", err.Error())
		} else {
			s.JobRuns.Add(1)
		}
	}
	heartbeat()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			heartbeat()
		case <-work.C:
			s.runPendingJobs(ctx)
		}
	}
}

func (s *Server) runPendingJobs(ctx context.Context) {
	j, err := s.Store.ClaimPendingJob(jobTypeESIndexing)
	if err != nil {
		return
	}
	if s.Search == nil || !s.Search.Indexing {
		j.Data["error"] = "Elasticsearch/OpenSearch indexing is not active on this server (license and ElasticsearchSettings.EnableIndexing)"
		s.Store.FinishJob(j, "error", 0)
		return
	}
	var since, n int64
	for {
		posts, err := s.Store.AllPostsSince(since, 500)
		if err != nil {
			j.Data["error"] = err.Error()
			s.Store.FinishJob(j, "error", 0)
			return
		}
		for _, p := range posts {
			c, err := s.Store.GetChannel(p.ChannelId)
			if err == nil {
				err = s.Search.IndexPost(ctx, p, c.TeamId)
			}
			if err != nil {
				j.Data["error"] = err.Error()
				s.Store.FinishJob(j, "error", 0)
				return
			}
			n++
			since = p.CreateAt + 1
		}
		if len(posts) < 500 {
			break
		}
	}
	if err := s.Search.Refresh(ctx); err != nil {
		s.Log.Log("warn", "Could not refresh the post indexes after the bulk indexing job", "error", err.Error())
	}
	j.Data["indexed_posts"] = itoa(n)
	s.Store.FinishJob(j, "success", 100)
	s.Log.Log("info", "Bulk indexing job finished", "job_id", j.Id, "posts", n)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
