package cli

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"

	"github.com/synapsedte/dtebridge/config"
)

// temporalFlags are the bridge's own Temporal connection settings. They are
// layered, with the config file's temporal section, over what the Temporal
// CLI and SDKs read: a TOML profile (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE)
// and TEMPORAL_* environment variables.
type temporalFlags struct {
	Address, Namespace                string
	APIKeyFile                        string
	TLS                               bool
	TLSCert, TLSKey, TLSCA, TLSServer string
	Profile, ConfigFile               string
}

func (t *temporalFlags) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "temporal-address", Usage: "host:port of a Temporal frontend (else temporal.address, TEMPORAL_ADDRESS or the Temporal profile; the demo starts a local dev server when none is set)", EnvVars: []string{"DTEBRIDGE_TEMPORAL_ADDRESS"}, Destination: &t.Address},
		&cli.StringFlag{Name: "temporal-namespace", Usage: "Temporal namespace (else temporal.namespace, TEMPORAL_NAMESPACE, the profile, or default)", EnvVars: []string{"DTEBRIDGE_TEMPORAL_NAMESPACE"}, Destination: &t.Namespace},
		&cli.StringFlag{Name: "temporal-api-key-file", Usage: "file holding a Temporal API key (Temporal Cloud); TLS is then on", EnvVars: []string{"DTEBRIDGE_TEMPORAL_API_KEY_FILE"}, Destination: &t.APIKeyFile},
		&cli.BoolFlag{Name: "temporal-tls", Usage: "connect to Temporal over TLS (implied by the other TLS flags and by an API key)", EnvVars: []string{"DTEBRIDGE_TEMPORAL_TLS"}, Destination: &t.TLS},
		&cli.StringFlag{Name: "temporal-tls-cert", Usage: "client certificate for mTLS (PEM)", EnvVars: []string{"DTEBRIDGE_TEMPORAL_TLS_CERT"}, Destination: &t.TLSCert},
		&cli.StringFlag{Name: "temporal-tls-key", Usage: "client key for mTLS (PEM)", EnvVars: []string{"DTEBRIDGE_TEMPORAL_TLS_KEY"}, Destination: &t.TLSKey},
		&cli.StringFlag{Name: "temporal-tls-ca", Usage: "CA certificate that signed the server's (PEM), instead of the system's", EnvVars: []string{"DTEBRIDGE_TEMPORAL_TLS_CA"}, Destination: &t.TLSCA},
		&cli.StringFlag{Name: "temporal-tls-server-name", Usage: "server name to verify, if not the address's host", EnvVars: []string{"DTEBRIDGE_TEMPORAL_TLS_SERVER_NAME"}, Destination: &t.TLSServer},
		&cli.StringFlag{Name: "temporal-profile", Usage: "profile of the Temporal CLI's config file (else TEMPORAL_PROFILE, or default)", Destination: &t.Profile},
		&cli.StringFlag{Name: "temporal-config-file", Usage: "the Temporal CLI's TOML config file (else TEMPORAL_CONFIG_FILE, or its default place)", Destination: &t.ConfigFile},
	}
}

// temporalOptions resolves the client options: the Temporal profile and
// environment (env), then the config file's temporal section (cfg may be
// nil), then the flags.
func temporalOptions(f temporalFlags, cfg *config.Config, env envconfig.EnvLookup) (client.Options, error) {
	p, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{ConfigFilePath: f.ConfigFile,
		ConfigFileProfile: f.Profile, EnvLookup: env})
	if err != nil {
		return client.Options{}, fmt.Errorf("error reading the Temporal profile and environment: %w", err)
	}
	layer := func(t config.Temporal) error {
		p.Address = cmp.Or(t.Address, p.Address)
		p.Namespace = cmp.Or(t.Namespace, p.Namespace)
		if t.APIKeyFile != "" {
			b, err := os.ReadFile(t.APIKeyFile)
			if err != nil {
				return fmt.Errorf("error reading the Temporal API key: %w", err)
			}
			p.APIKey = strings.TrimSpace(string(b))
		}
		if t.TLS || t.TLSCertFile != "" || t.TLSKeyFile != "" || t.TLSCAFile != "" || t.TLSServerName != "" {
			if p.TLS == nil {
				p.TLS = &envconfig.ClientConfigTLS{}
			}
			p.TLS.Disabled = false
			if t.TLSCertFile != "" || t.TLSKeyFile != "" {
				p.TLS.ClientCertPath, p.TLS.ClientCertData = t.TLSCertFile, nil
				p.TLS.ClientKeyPath, p.TLS.ClientKeyData = t.TLSKeyFile, nil
			}
			if t.TLSCAFile != "" {
				p.TLS.ServerCACertPath, p.TLS.ServerCACertData = t.TLSCAFile, nil
			}
			p.TLS.ServerName = cmp.Or(t.TLSServerName, p.TLS.ServerName)
		}
		return nil
	}
	if cfg != nil {
		if err := layer(cfg.Temporal); err != nil {
			return client.Options{}, err
		}
	}
	if err := layer(config.Temporal{Address: f.Address, Namespace: f.Namespace, APIKeyFile: f.APIKeyFile, TLS: f.TLS, TLSCertFile: f.TLSCert,
		TLSKeyFile: f.TLSKey, TLSCAFile: f.TLSCA, TLSServerName: f.TLSServer}); err != nil {
		return client.Options{}, err
	}
	p.Namespace = cmp.Or(p.Namespace, client.DefaultNamespace)
	opts, err := p.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("error in the Temporal connection settings: %w", err)
	}
	return opts, nil
}

// dialTemporal connects to Temporal with the resolved settings; address,
// if set, is a local dev server the command started, which wins.
func (g *globals) dialTemporal(ctx context.Context, cfg *config.Config, address string) (client.Client, error) {
	f := g.Temporal
	if address != "" {
		f.Address = address
	}
	opts, err := temporalOptions(f, cfg, envconfig.EnvLookupOS)
	if err != nil {
		return nil, err
	}
	if opts.HostPort == "" {
		return nil, usagef("no Temporal cluster given: pass --temporal-address, set DTEBRIDGE_TEMPORAL_ADDRESS, temporal.address or TEMPORAL_ADDRESS (dtebridge demo starts a local one)")
	}
	g.TemporalNamespace = opts.Namespace
	opts.Logger = g.temporalLogger()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("error connecting to Temporal at %s (namespace %s): %w (check the address and, for TLS, the certificates, CA and API key settings)",
			opts.HostPort, opts.Namespace, err)
	}
	return c, nil
}
