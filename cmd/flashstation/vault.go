package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/ledger/spool"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

func newVaultCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Serial Vault tools: the vault double, a line's vault check, the recording proxy",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newVaultServeCommand(stdout, stderr), newVaultCheckCommand(stdout, stderr), newVaultProxyCommand(stdout, stderr))
	return cmd
}

func newVaultServeCommand(stdout, stderr io.Writer) *cobra.Command {
	var o struct {
		listen, brand, model, apiKey, apiKeyFile, key, exportKey string
		adminListen, adminUser, adminKey                         string
		keyBits                                                  int
	}
	cmd := &cobra.Command{
		Use:   "serve --listen ADDR --brand ID --model NAME --api-key KEY [--key FILE] [--export-key FILE]",
		Short: "Run the Serial Vault double (device API, optional admin signing log)",
		Long: `Run a faithful double of the Serial Vault's device-facing API: /v1/version,
/v1/health, /v1/request-id and /v1/serial, with the real vault's checks, error
codes and JSON. It signs serials for one model with an RSA key: the PEM file
given with --key (created there when missing), else a new 4096-bit key.
--export-key writes the key's encoded public key, the line's trusted brand key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.brand == "" || o.model == "" {
				return usageErrorf("--brand and --model are required")
			}
			apiKey := o.apiKey
			if o.apiKeyFile != "" {
				b, err := os.ReadFile(o.apiKeyFile)
				if err != nil {
					return usageErrorf("--api-key-file: %v", err)
				}
				apiKey = strings.TrimSpace(string(b))
			}
			if apiKey == "" {
				return usageErrorf("--api-key or --api-key-file is required")
			}
			var signer *serialvault.PrivateKey
			var err error
			if o.key != "" {
				var created bool
				if signer, created, err = serialvault.LoadOrCreateKey(o.key, o.keyBits); err != nil {
					return err
				}
				if created {
					fmt.Fprintf(stderr, "vault: created a %d-bit signing key in %s\n", o.keyBits, o.key)
				}
			} else {
				fmt.Fprintf(stderr, "vault: generating a %d-bit signing key...\n", o.keyBits)
				if signer, err = serialvault.GenerateKey(o.keyBits); err != nil {
					return err
				}
			}
			if o.exportKey != "" {
				if err := os.WriteFile(o.exportKey, []byte(signer.Public().Encode()+"\n"), 0o644); err != nil {
					return fmt.Errorf("export key: %w", err)
				}
			}
			opts := vaulttest.Options{Models: []vaulttest.Model{{BrandID: o.brand, Model: o.model, APIKey: apiKey, Key: signer}}}
			if o.adminUser != "" {
				opts.AdminUsers = map[string]string{o.adminUser: o.adminKey}
			}
			v := vaulttest.New(opts)
			return serveVault(cmd.Context(), v, o.listen, o.adminListen, signer, o.brand+"/"+o.model, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address of the device-facing API")
	f.StringVar(&o.brand, "brand", "", "brand account id (brand-id)")
	f.StringVar(&o.model, "model", "", "model name")
	f.StringVar(&o.apiKey, "api-key", "", "the model's api-key")
	f.StringVar(&o.apiKeyFile, "api-key-file", "", "read the api-key from a file instead")
	f.StringVar(&o.key, "key", "", "PEM signing key file (created when missing)")
	f.StringVar(&o.exportKey, "export-key", "", "write the encoded public signing key to FILE")
	f.StringVar(&o.adminListen, "admin-listen", "", "address of the admin signing log API (off when empty)")
	f.StringVar(&o.adminUser, "admin-user", "admin", "admin user for the signing log")
	f.StringVar(&o.adminKey, "admin-key", "", "that admin user's api-key")
	f.IntVar(&o.keyBits, "key-bits", 4096, "size of a generated key")
	_ = f.MarkHidden("key-bits")
	return cmd
}

// serveVault runs the double until ctx ends, printing where it listens on
// stdout and one line per request on stderr.
func serveVault(ctx context.Context, v *vaulttest.Vault, listen, adminListen string, signer *serialvault.PrivateKey, what string, stdout, stderr io.Writer) error {
	var mu sync.Mutex
	logged := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &statusWriter{ResponseWriter: w, status: 200}
			h.ServeHTTP(rec, r)
			mu.Lock()
			fmt.Fprintf(stderr, "vault: %s %s %s %d %s\n", time.Now().Format(time.TimeOnly), r.Method, r.URL.Path, rec.status, time.Since(start).Round(time.Millisecond))
			mu.Unlock()
		})
	}
	var servers []*http.Server
	errc := make(chan error, 2)
	start := func(addr string, h http.Handler, name string) error {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		srv := &http.Server{Handler: logged(h), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		fmt.Fprintf(stdout, "%s listening on http://%s/\n", name, l.Addr())
		go func() { errc <- srv.Serve(l) }()
		return nil
	}
	if err := start(listen, v.Handler(), "vault"); err != nil {
		return err
	}
	if adminListen != "" {
		if err := start(adminListen, v.AdminHandler(), "vault admin"); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "vault signs serials for %s with key %s\n", what, signer.Public().ID())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		for _, s := range servers {
			_ = s.Close()
		}
		return nil
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

func newVaultCheckCommand(stdout, stderr io.Writer) *cobra.Command {
	var configPath, lineID string
	cmd := &cobra.Command{
		Use:   "check --config FILE --line ID",
		Short: "Probe a line's vault and credentials",
		Long: `Check that a line's Serial Vault answers and accepts the line's api-key: its
version, its health (its database), a request-id with the api-key and, when
configured, the admin signing
log. Each step prints ok or what is wrong. Exit 0 when every step passed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := loadStation(configPath, stderr)
			if err != nil {
				return err
			}
			l, err := stationLine(st, lineID)
			if err != nil {
				return err
			}
			return vaultCheck(cmd.Context(), l, stdout)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "station file")
	cmd.Flags().StringVar(&lineID, "line", "", "line id")
	return cmd
}

// vaultCheck runs the probes of `vault check`.
func vaultCheck(ctx context.Context, l *lines.Line, out io.Writer) error {
	failed := 0
	report := func(ok bool, format string, args ...any) {
		status := "ok  "
		if !ok {
			status = "FAIL"
			failed++
		}
		fmt.Fprintf(out, "%s %s\n", status, fmt.Sprintf(format, args...))
	}
	if m, err := l.LoadModel(); err != nil {
		report(false, "model: %v", err)
	} else {
		report(true, "model %s/%s (%s)", m.BrandID, m.Model, l.Model)
	}
	if ring, err := l.LoadKeyRing(); err != nil {
		report(false, "brand keys: %v", err)
	} else {
		report(true, "%s trusted to sign serials", plural(ring.Len(), "brand key"))
	}
	client, err := l.VaultClient(1, zerolog.Nop())
	if err != nil {
		report(false, "%v", err)
		return reported(exitVerdict, errors.New("vault check failed"))
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := client.Version(ctx)
	if err != nil {
		report(false, "vault %s does not answer: %v\n     is the vault running, and is lines[].vault.url right?", client.URL(), err)
		return reported(exitVerdict, errors.New("vault check failed"))
	}
	report(true, "vault %s answers: version %s (revision %s)", client.URL(), v.Version, v.Revision)
	healthErr := client.Health(ctx)
	dbDown := errors.Is(healthErr, serialvault.ErrDatabaseDown)
	switch {
	case dbDown:
		report(false, "the vault's database is down (%v): it refuses every api-key until it is back; boards are told to retry", healthErr)
	case healthErr != nil:
		report(false, "vault health: %v", healthErr)
	default:
		report(true, "the vault reaches its database")
	}
	if _, err := client.RequestID(ctx); err != nil {
		var ve *serialvault.VaultError
		switch {
		case errors.As(err, &ve) && ve.Code == "invalid-api-key" && dbDown:
			report(false, "request-id refused (%s), as every key is while the vault's database is down: the api-key cannot be checked now", ve.Code)
		case errors.As(err, &ve) && ve.Code == "invalid-api-key":
			report(false, "the vault refused the line's api-key (%s): check %s", ve.Code, l.Vault.APIKey)
		default:
			report(false, "request-id: %v", err)
		}
	} else {
		report(true, "the vault accepts the line's api-key (request-id issued)")
	}
	if sl := l.Vault.SigningLog; sl != nil {
		key, err := sl.Key.Resolve()
		if err != nil {
			report(false, "signing log key (%s): %v", sl.Key, err)
		} else if logs, err := client.SigningLog(ctx, sl.URL, sl.User, key); err != nil {
			report(false, "signing log %s: %v", sl.URL, err)
		} else {
			report(true, "signing log %s readable (%s)", sl.URL, plural(len(logs), "row"))
		}
	}
	if failed > 0 {
		return reported(exitVerdict, fmt.Errorf("vault check: %s failed", plural(failed, "step")))
	}
	return nil
}

func newVaultProxyCommand(stdout, stderr io.Writer) *cobra.Command {
	var configPath, lineID, listen, serialsFile string
	var expect []string
	cmd := &cobra.Command{
		Use:   "proxy --config FILE --line ID --expect SERIAL...",
		Short: "Run one line's recording proxy on its own",
		Long: `Run a line's recording proxy without the station: devices registering through
it get their serial from the line's vault, and every serial assertion is
written to the station's ledger before the device sees it. The proxy signs
only the serials it is told to expect (--expect, repeatable, or --serials
FILE with one per line), each once, for callers in the line's proxy.allow.
Each recorded serial is printed on stdout. Logs go to the data directory's
log file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := loadStation(configPath, stderr)
			if err != nil {
				return err
			}
			l, err := stationLine(st, lineID)
			if err != nil {
				return err
			}
			if listen == "" {
				listen = l.Proxy.Listen
			}
			if listen == "" {
				return usageErrorf("line %s has no proxy.listen address (capture method %s)", l.ID, l.Capture.Method)
			}
			if serialsFile != "" {
				more, err := readSerials(serialsFile)
				if err != nil {
					return usageErrorf("--serials: %v", err)
				}
				expect = append(expect, more...)
			}
			if len(expect) == 0 {
				return usageErrorf("the proxy signs only expected serials: give --expect SERIAL (repeatable) or --serials FILE")
			}
			windows := serialvault.NewWindows(true)
			for _, serial := range expect {
				if !serialvault.ValidSerial(serial) {
					return usageErrorf("expected serial %q is not in the strict serial form", serial)
				}
				w, err := windows.Open(serialvault.WindowSpec{Expected: serial, Slot: "standalone"})
				if err != nil {
					return usageErrorf("expected serial %s given twice", serial)
				}
				defer w.Close()
			}
			// It records in the ledger as the station: one at a time.
			lock, err := lockStation(st)
			if err != nil {
				return err
			}
			defer lock.Close()
			log, logFile, err := stationLogger(st)
			if err != nil {
				return err
			}
			defer logFile.Close()
			led, err := openLedger(ctx, st)
			if err != nil {
				return err
			}
			defer led.Close()
			var mu sync.Mutex
			sp, err := spool.Open(lines.SpoolDir(st))
			if err != nil {
				return err
			}
			if replayed, err := sp.Replay(ctx, led); err != nil {
				return err
			} else if len(replayed) > 0 {
				fmt.Fprintf(stderr, "%d serial assertions replayed from the spool into the ledger\n", len(replayed))
			}
			proxy, err := lines.NewLineProxy(l, led, sp, windows, log, func(c serialvault.Capture) {
				mu.Lock()
				defer mu.Unlock()
				dup := ""
				if c.Duplicate {
					dup = " DUPLICATE"
				}
				fmt.Fprintf(stdout, "recorded %s/%s serial %s revision %d device-key %s%s\n", c.BrandID, c.Model, c.Serial, c.Revision, c.DeviceKeyID, dup)
			}, func(r serialvault.Refusal) {
				mu.Lock()
				defer mu.Unlock()
				fmt.Fprintf(stdout, "refused serial %s: %s %d %s %s\n", r.Serial, r.By, r.Status, r.Code, r.Message)
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("proxy: %w", err)
			}
			fmt.Fprintf(stderr, "proxy for line %s listening on http://%s/v1/ -> %s, expecting %d serials\n", l.ID, ln.Addr(), l.Vault.URL, len(expect))
			return proxy.Serve(ctx, ln)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "station file")
	cmd.Flags().StringVar(&lineID, "line", "", "line id")
	cmd.Flags().StringVar(&listen, "listen", "", "listen here instead of the line's proxy.listen")
	cmd.Flags().StringArrayVar(&expect, "expect", nil, "a serial to sign (repeatable)")
	cmd.Flags().StringVar(&serialsFile, "serials", "", "a file of serials to sign, one per line (# comments)")
	return cmd
}

// readSerials reads a file of serials, one per line; blank lines and #
// comments are skipped.
func readSerials(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) > 4<<20 {
		return nil, fmt.Errorf("%s is larger than 4 MiB", path)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out, nil
}
