// TEST STAND-IN for the real `mmctl` (bin/mmctl of the Mattermost release),
// used because the release tarball cannot be downloaded on the test machines.
// It reproduces the boundary a deploy tool touches: the `--local` commands
// `user create`, `user list`, `user change-password [--hashed]`, `team create`, `team list`, `team users add`,
// `config patch <config-file>` (GET /api/v4/config, the file merged on top, PUT /api/v4/config/patch),
// `license upload <file>` (POST /api/v4/license, multipart field "license") and `system status`, with mmctl's syntax, spoken as HTTP API v4 over the
// local-mode unix socket (MMCTL_LOCAL_SOCKET_PATH, default
// /var/tmp/mattermost_local.socket); `--json` output; errors on stderr and a
// non-zero exit. Remote (non --local) mode is not reproduced.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const defaultSocket = "/var/tmp/mattermost_local.socket"

type client struct {
	http *http.Client
}

type apiError struct {
	Id         string `json:"id"`
	Message    string `json:"message"`
	StatusCode int    `json:"status_code"`
}

func (e *apiError) Error() string { return e.Message }

func newClient() *client {
	sock := os.Getenv("MMCTL_LOCAL_SOCKET_PATH")
	if sock == "" {
		sock = defaultSocket
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &client{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *client) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://_"+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return fmt.Errorf("socket file %s does not exist or the server is not in local mode: %v", sockPath(), ne.Err)
		}
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var ae apiError
		if json.Unmarshal(data, &ae) == nil && ae.Message != "" {
			return &ae
		}
		return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// upload POSTs one file as multipart/form-data field `field`, as mmctl's client does.
func (c *client) upload(path, field, name string, data []byte) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile(field, name)
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", "http://_"+path, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var ae apiError
		if json.Unmarshal(out, &ae) == nil && ae.Message != "" {
			return &ae
		}
		return fmt.Errorf("POST %s: HTTP %d", path, resp.StatusCode)
	}
	return nil
}

func sockPath() string {
	if s := os.Getenv("MMCTL_LOCAL_SOCKET_PATH"); s != "" {
		return s
	}
	return defaultSocket
}

type flags struct {
	values map[string]string
	bools  map[string]bool
	args   []string
}

// parse splits args into --name value / --name=value flags, known booleans and positionals.
func parse(args []string, boolNames ...string) (*flags, error) {
	f := &flags{values: map[string]string{}, bools: map[string]bool{}}
	isBool := map[string]bool{}
	for _, b := range boolNames {
		isBool[b] = true
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			f.args = append(f.args, a)
			continue
		}
		name, val, has := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if isBool[name] {
			f.bools[name] = !has || val == "true"
			continue
		}
		if !has {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag needs an argument: --%s", name)
			}
			val = args[i+1]
			i++
		}
		f.values[name] = val
	}
	return f, nil
}

var jsonOut bool

func printJSON(v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Println(string(b))
}

type user struct {
	Id       string `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
	Roles    string `json:"roles"`
}

type team struct {
	Id          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Type        string `json:"type"`
}

func main() {
	args := os.Args[1:]
	local := os.Getenv("MMCTL_LOCAL") == "true"
	var rest []string
	for _, a := range args {
		switch a {
		case "--local":
			local = true
		case "--json":
			jsonOut = true
		case "--format=json":
			jsonOut = true
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) >= 1 && rest[0] == "version" {
		fmt.Println("mmctl (test stand-in)")
		return
	}
	if !local {
		fail(errors.New("this mmctl stand-in supports only --local mode"))
	}
	if err := run(newClient(), rest); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}

func run(c *client, a []string) error {
	cmd := strings.Join(first(a, 2), " ")
	switch {
	case cmd == "user create":
		f, err := parse(a[2:], "system-admin", "email-verified", "guest")
		if err != nil {
			return err
		}
		for _, req := range []string{"email", "username", "password"} {
			if f.values[req] == "" {
				return fmt.Errorf("%s is required", req)
			}
		}
		var u user
		body := map[string]any{"email": f.values["email"], "username": f.values["username"], "password": f.values["password"],
			"nickname": f.values["nickname"], "first_name": f.values["firstname"], "last_name": f.values["lastname"], "locale": f.values["locale"]}
		if err := c.do("POST", "/api/v4/users", body, &u); err != nil {
			return fmt.Errorf("unable to create user. Error: %w", err)
		}
		if f.bools["system-admin"] {
			if err := c.do("PUT", "/api/v4/users/"+u.Id+"/roles", map[string]string{"roles": "system_user system_admin"}, nil); err != nil {
				return fmt.Errorf("unable to update user roles. Error: %w", err)
			}
			u.Roles = "system_user system_admin"
		}
		if jsonOut {
			printJSON(u)
		} else {
			fmt.Printf("Created user %s\n", u.Username)
		}
	case cmd == "config patch":
		if len(a) != 3 {
			return fmt.Errorf("accepts 1 arg(s), received %d", len(a)-2)
		}
		data, err := os.ReadFile(a[2])
		if err != nil {
			return err
		}
		var patch, cfg map[string]any
		if err := json.Unmarshal(data, &patch); err != nil {
			return err
		}
		if err := c.do("GET", "/api/v4/config", nil, &cfg); err != nil {
			return err
		}
		var out map[string]any
		if err := c.do("PUT", "/api/v4/config/patch", merge(cfg, patch), &out); err != nil {
			return err
		}
		if jsonOut {
			printJSON(out)
		} else {
			fmt.Println("Config patched successfully")
		}
	case cmd == "user list":
		var users []user
		if err := c.do("GET", "/api/v4/users?page=0&per_page=200", nil, &users); err != nil {
			return err
		}
		if jsonOut {
			printJSON(users)
			return nil
		}
		for _, u := range users {
			fmt.Printf("%s: %s (%s)\n", u.Id, u.Username, u.Email)
		}
		fmt.Printf("There are %d users on local instance\n", len(users))
	case cmd == "user change-password":
		if len(a) < 3 || strings.HasPrefix(a[2], "-") {
			return errors.New("requires at least 1 arg(s), only received 0")
		}
		f, err := parse(a[3:], "hashed")
		if err != nil {
			return err
		}
		if f.values["password"] == "" {
			return errors.New("password is required")
		}
		u, err := getUser(c, a[2])
		if err != nil {
			return err
		}
		body := map[string]string{"current_password": f.values["current"], "new_password": f.values["password"]}
		if f.bools["hashed"] {
			body = map[string]string{"already_hashed": "true", "new_password": f.values["password"]}
		}
		if err := c.do("PUT", "/api/v4/users/"+u.Id+"/password", body, nil); err != nil {
			return fmt.Errorf("changing user password failed: %w", err)
		}
		fmt.Printf("Password for user %s successfully changed\n", u.Username)
	case cmd == "team create":
		f, err := parse(a[2:], "private")
		if err != nil {
			return err
		}
		if f.values["name"] == "" {
			return errors.New("name is required")
		}
		if f.values["display-name"] == "" {
			return errors.New("display-name is required")
		}
		typ := "O"
		if f.bools["private"] {
			typ = "I"
		}
		var t team
		if err := c.do("POST", "/api/v4/teams", map[string]string{"name": f.values["name"], "display_name": f.values["display-name"], "type": typ, "email": f.values["email"]}, &t); err != nil {
			return fmt.Errorf("team creation failed: %w", err)
		}
		if jsonOut {
			printJSON(t)
		} else {
			fmt.Printf("New team %s successfully created\n", t.Name)
		}
	case cmd == "team list":
		var teams []team
		if err := c.do("GET", "/api/v4/teams", nil, &teams); err != nil {
			return err
		}
		if jsonOut {
			printJSON(teams)
			return nil
		}
		for _, t := range teams {
			fmt.Println(t.Name)
		}
	case cmd == "team users" && len(a) >= 3 && a[2] == "add":
		if len(a) < 5 {
			return errors.New("requires at least 2 arg(s), only received " + fmt.Sprint(len(a)-3))
		}
		t, err := getTeam(c, a[3])
		if err != nil {
			return err
		}
		var failed bool
		for _, ref := range a[4:] {
			u, err := getUser(c, ref)
			if err == nil {
				err = c.do("POST", "/api/v4/teams/"+t.Id+"/members", map[string]string{"team_id": t.Id, "user_id": u.Id}, nil)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "Unable to add '%s' to %s. Error: %v\n", ref, t.Name, err)
				failed = true
			}
		}
		if failed {
			return errors.New("failed to add some users to the team")
		}
	case cmd == "license upload":
		if len(a) != 3 {
			return fmt.Errorf("accepts 1 arg(s), received %d", len(a)-2)
		}
		data, err := os.ReadFile(a[2])
		if err != nil {
			return err
		}
		if err := c.upload("/api/v4/license", "license", filepath.Base(a[2]), data); err != nil {
			return err
		}
		fmt.Println("Uploaded license file")
	case cmd == "system status":
		var st map[string]any
		err := c.do("GET", "/api/v4/system/ping?get_server_status=true", nil, &st)
		if err != nil {
			return err
		}
		if jsonOut {
			printJSON(st)
			return nil
		}
		fmt.Printf("Server Status: %v\nDatabase Status: %v\nFilestore Status: %v\n", st["status"], st["database_status"], st["filestore_status"])
	default:
		return fmt.Errorf("unknown command %q (this stand-in implements: user create, user list, user change-password, team create, team list, team users add, license upload, system status)", strings.Join(a, " "))
	}
	return nil
}

func first(a []string, n int) []string {
	if len(a) < n {
		return a
	}
	return a[:n]
}

func getTeam(c *client, ref string) (*team, error) {
	var t team
	if err := c.do("GET", "/api/v4/teams/"+url.PathEscape(ref), nil, &t); err == nil {
		return &t, nil
	}
	if err := c.do("GET", "/api/v4/teams/name/"+url.PathEscape(ref), nil, &t); err != nil {
		return nil, fmt.Errorf("unable to find team '%s'", ref)
	}
	return &t, nil
}

func getUser(c *client, ref string) (*user, error) {
	var u user
	paths := []string{"/api/v4/users/username/" + url.PathEscape(ref), "/api/v4/users/" + url.PathEscape(ref)}
	if strings.Contains(ref, "@") {
		paths = []string{"/api/v4/users/email/" + url.PathEscape(ref)}
	}
	for _, p := range paths {
		if err := c.do("GET", p, nil, &u); err == nil {
			return &u, nil
		}
	}
	return nil, fmt.Errorf("unable to find user '%s'", ref)
}

// merge is what json.Unmarshal of the file onto the fetched model.Config does:
// objects key by key, arrays and scalars replaced.
func merge(base, patch map[string]any) map[string]any {
	for k, v := range patch {
		pm, pok := v.(map[string]any)
		bm, bok := base[k].(map[string]any)
		if pok && bok {
			base[k] = merge(bm, pm)
		} else {
			base[k] = v
		}
	}
	return base
}
