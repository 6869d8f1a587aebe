// TEST STAND-IN for the real Mattermost server's file backends (the server is
// AGPL and its release cannot be downloaded here). Reproduced boundaries:
// FileSettings.DriverName "local" (files under FileSettings.Directory) and
// "amazons3" through minio-go, as the real server's S3 backend, with
// AmazonS3Bucket, AmazonS3AccessKeyId, AmazonS3SecretAccessKey,
// AmazonS3Endpoint, AmazonS3SSL, AmazonS3Region, AmazonS3PathPrefix, AmazonS3SSE
// and AmazonS3RequestTimeoutMilliseconds; the connection test that creates a
// missing bucket (as the real TestConnection does) and the health check write
// used by /api/v4/system/ping?get_server_status=true. Divergences: no IAM
// credential chain (empty keys mean anonymous requests: the stand-in must not
// contact cloud metadata endpoints), no AmazonS3SignV2, no thumbnails or previews.
package filestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"

	"mmdeploy.test/standin/mattermost/internal/config"
)

// Backend stores file bytes by relative path.
type Backend interface {
	Write(ctx context.Context, p string, r io.Reader, size int64, contentType string) error
	Read(ctx context.Context, p string) ([]byte, error)
	Remove(ctx context.Context, p string) error
	// Test checks the backend is usable (and creates a missing bucket).
	Test(ctx context.Context) error
	Name() string
}

// New returns the backend of FileSettings.DriverName.
func New(cfg *config.Config) (Backend, error) {
	f := &cfg.FileSettings
	switch *f.DriverName {
	case "local":
		return &local{dir: *f.Directory}, nil
	case "amazons3":
		creds := credentials.NewStaticV4(*f.AmazonS3AccessKeyId, *f.AmazonS3SecretAccessKey, "")
		if *f.AmazonS3AccessKeyId == "" {
			creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
		}
		endpoint := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(*f.AmazonS3Endpoint, "https://"), "http://"), "/")
		cl, err := minio.New(endpoint, &minio.Options{Creds: creds, Secure: *f.AmazonS3SSL, Region: *f.AmazonS3Region})
		if err != nil {
			return nil, fmt.Errorf("S3 client: %w", err)
		}
		if *f.AmazonS3Trace {
			cl.TraceOn(os.Stderr)
		}
		return &s3{cl: cl, bucket: *f.AmazonS3Bucket, prefix: *f.AmazonS3PathPrefix, region: *f.AmazonS3Region, sse: *f.AmazonS3SSE,
			timeout: time.Duration(*f.AmazonS3RequestTimeoutMilliseconds) * time.Millisecond}, nil
	}
	return nil, fmt.Errorf("FileSettings.DriverName %q is not supported", *f.DriverName)
}

// ---- local ----

type local struct{ dir string }

func (l *local) Name() string { return "local" }

func (l *local) full(p string) (string, error) {
	clean := filepath.Clean("/" + p)
	if clean == "/" {
		return "", errors.New("empty path")
	}
	return filepath.Join(l.dir, clean), nil
}

func (l *local) Write(_ context.Context, p string, r io.Reader, _ int64, _ string) error {
	full, err := l.full(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
		return err
	}
	tmp := full + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, full)
}

func (l *local) Read(_ context.Context, p string) ([]byte, error) {
	full, err := l.full(p)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(full)
}

func (l *local) Remove(_ context.Context, p string) error {
	full, err := l.full(p)
	if err != nil {
		return err
	}
	return os.Remove(full)
}

func (l *local) Test(ctx context.Context) error {
	if err := l.Write(ctx, "testfile", strings.NewReader("testingwrite"), 12, "text/plain"); err != nil {
		return err
	}
	return l.Remove(ctx, "testfile")
}

// ---- amazons3 ----

type s3 struct {
	cl                     *minio.Client
	bucket, prefix, region string
	sse                    bool
	timeout                time.Duration
}

func (s *s3) Name() string { return "amazons3" }

func (s *s3) key(p string) string {
	return path.Join(s.prefix, strings.TrimPrefix(path.Clean("/"+p), "/"))
}

func (s *s3) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.timeout)
}

func (s *s3) Write(ctx context.Context, p string, r io.Reader, size int64, contentType string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	opts := minio.PutObjectOptions{ContentType: contentType}
	if s.sse {
		opts.ServerSideEncryption = encrypt.NewSSE()
	}
	_, err := s.cl.PutObject(ctx, s.bucket, s.key(p), r, size, opts)
	return err
}

func (s *s3) Read(ctx context.Context, p string) ([]byte, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	obj, err := s.cl.GetObject(ctx, s.bucket, s.key(p), minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

func (s *s3) Remove(ctx context.Context, p string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.cl.RemoveObject(ctx, s.bucket, s.key(p), minio.RemoveObjectOptions{})
}

// Test checks the bucket, creating it when missing like the real server, and
// writes and removes a test object (the health check of get_server_status).
func (s *s3) Test(ctx context.Context) error {
	c, cancel := s.ctx(ctx)
	defer cancel()
	ok, err := s.cl.BucketExists(c, s.bucket)
	if err != nil {
		return fmt.Errorf("unable to connect to S3 bucket %q: %w", s.bucket, err)
	}
	if !ok {
		if err := s.cl.MakeBucket(c, s.bucket, minio.MakeBucketOptions{Region: s.region}); err != nil {
			// another node may have created it at the same moment
			if again, err2 := s.cl.BucketExists(c, s.bucket); err2 != nil || !again {
				return fmt.Errorf("bucket %q does not exist and could not be created: %w", s.bucket, err)
			}
		}
	}
	if err := s.Write(ctx, "testfile", bytes.NewReader([]byte("testingwrite")), 12, "text/plain"); err != nil {
		return err
	}
	return s.Remove(ctx, "testfile")
}
