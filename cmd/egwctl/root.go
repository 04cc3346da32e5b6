package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/client"
	"github.com/egw-project/egw/internal/secret"
)

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1
	exitDenied = 2 // explain --exit-code, verdict denied
)

// app holds what every command shares: the global flags, the streams and the client.
type app struct {
	socket    string
	server    string
	tokenFile string
	caFile    string
	timeout   time.Duration

	in          io.Reader
	out, errOut io.Writer
	now         func() time.Time

	client *client.Client
}

// exitCodeError ends egwctl with a code and no error line (the command printed its result).
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run executes egwctl with args and returns its exit code. getenv supplies EGW_SOCKET,
// EGW_SERVER, EGW_TOKEN_FILE and EGW_CA_FILE.
func run(args []string, in io.Reader, out, errOut io.Writer, getenv func(string) string) int {
	return execute(&app{in: in, out: out, errOut: errOut, now: time.Now}, args, getenv)
}

// execute runs egwctl with a prepared app (tests inject the clock).
func execute(a *app, args []string, getenv func(string) string) int {
	root := a.newRootCommand(getenv)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	fmt.Fprintf(a.errOut, "error: %s\n", oneLine(err.Error()))
	return exitError
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

func (a *app) newRootCommand(getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:   "egwctl",
		Short: "Operate an EGW cloud-edge gateway system",
		Long: `egwctl operates EGW through the cloud gateway's admin API.

It connects to the API's unix socket (--socket, $EGW_SOCKET, default ` + client.DefaultSocket + `),
or to --server URL ($EGW_SERVER) with the bearer token read from --token-file ($EGW_TOKEN_FILE).
An https:// server's certificate is checked against the system's roots, or against the CA
certificates in --ca-file ($EGW_CA_FILE) when given.
Kinds may be written as the seed spells them (EService), as plurals (eservices) or short
forms (svc, gw, vp, ...). On failure egwctl prints "error: <reason>" and exits 1.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%v (see '%s --help')", err, c.CommandPath())
	})

	socket := getenv("EGW_SOCKET")
	if socket == "" {
		socket = client.DefaultSocket
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", socket, "path of the API unix socket (env EGW_SOCKET)")
	pf.StringVar(&a.server, "server", getenv("EGW_SERVER"), "API URL http(s)://host:port, used instead of the socket (env EGW_SERVER)")
	pf.StringVar(&a.tokenFile, "token-file", getenv("EGW_TOKEN_FILE"), "file holding the bearer token for --server (env EGW_TOKEN_FILE)")
	pf.StringVar(&a.caFile, "ca-file", getenv("EGW_CA_FILE"), "PEM file of the CA certificates to trust for --server https://... instead of the system's (env EGW_CA_FILE)")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for the API")

	root.AddCommand(
		a.newApplyCommand(),
		a.newGetCommand(),
		a.newDeleteCommand(),
		a.newDescribeCommand(),
		a.newSiteCommand(),
		a.newGatewayCommand(),
		a.newTokenCommand(),
		a.newServiceCommand(),
		a.newServerCommand(),
		a.newPolicyCommand(),
		a.newExposeCommand(),
		a.newVPCommand(),
		a.newStatusCommand(),
		a.newExplainCommand(),
		a.newVersionCommand(),
	)
	return root
}

// api returns the client for the selected address, made on first use.
func (a *app) api() (*client.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	addr := a.socket
	token := ""
	if a.server != "" {
		addr = a.server
		if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
			return nil, fmt.Errorf("--server %q: want http://host:port or https://host:port", addr)
		}
	}
	// The token is for --server only: the unix socket is guarded by its file mode.
	if a.server != "" && a.tokenFile != "" {
		var err error
		if token, err = readToken(a.tokenFile); err != nil {
			return nil, err
		}
	}
	// Like the token, the CA file is for --server only; with http:// it is a mistake (the
	// user expects TLS), so it is refused rather than ignored.
	caFile := ""
	if a.server != "" {
		caFile = a.caFile
		if caFile != "" && !strings.HasPrefix(a.server, "https://") {
			return nil, fmt.Errorf("--ca-file %s: it is for --server https://host:port, not %s", caFile, a.server)
		}
	}
	c, err := client.NewWithOptions(addr, client.Options{Token: token, CAFile: caFile})
	if err != nil {
		return nil, err
	}
	a.client = c
	return c, nil
}

// readToken reads a bearer token from path: a secret file (internal/secret), refused when
// group or others may access it, as the server refuses its own.
func readToken(path string) (string, error) {
	return secret.ReadLine(path, "token file")
}

// ctx returns the context of one command: cancelled after --timeout.
func (a *app) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, a.timeout)
}
