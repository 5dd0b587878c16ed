package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/webhook"
	"github.com/spf13/cobra"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

func newWebhookCmd(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Rewrite images when pods are created: a Kubernetes admission webhook",
		Long: `webhook applies a lock and prefix rules when pods are created, for the
manifests nobody can rewrite beforehand (operators, vendor charts).

'ferry webhook manifests' prints everything to run it in a cluster; the Deployment it
prints runs 'ferry webhook serve'. See docs/webhook.md.`,
		Example: `  # Print the manifests with the lock embedded, and apply them
  ferry webhook manifests --image registry.internal/ferry/ferry:v0.1.0 --lock relocated.lock.yaml | kubectl apply -f -`,
		Args: noArgs,
	}
	cmd.AddCommand(newWebhookServeCmd(root), newWebhookManifestsCmd(root))
	return cmd
}

// mapFlags are the --map SRC_PREFIX=DST_PREFIX flags.
type mapFlags struct{ maps []string }

func (f *mapFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.maps, "map", nil, "SRC_PREFIX=DST_PREFIX: send images under a repository prefix to another (repeatable; the longest prefix wins)")
}

func (f *mapFlags) rules(cmd *cobra.Command) ([]webhook.Rule, error) {
	var rules []webhook.Rule
	for _, m := range f.maps {
		r, err := webhook.ParseRule(m)
		if err != nil {
			return nil, usageErrorf(cmd, "--map %v", err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

type webhookServeOptions struct {
	root            *rootOptions
	addr            string
	certFile        string
	keyFile         string
	lockFile        string
	rulesFile       string
	maps            mapFlags
	mutateWorkloads bool
	denyLatest      bool
	requireLocked   bool
	poll            time.Duration
	logFormat       string
}

func newWebhookServeCmd(root *rootOptions) *cobra.Command {
	o := &webhookServeOptions{root: root}
	cmd := &cobra.Command{
		Use:   "serve --tls-cert FILE --tls-key FILE [--lock FILE] [--map SRC=DST]... [--rules FILE]",
		Short: "Answer AdmissionReviews: /mutate rewrites images, /validate refuses them",
		Long: `serve answers AdmissionReview v1 over HTTPS.

/mutate returns a JSON Patch replacing every container, initContainer and
ephemeralContainer image of a Pod, when it is created or given ephemeral
containers, that is in the lock (as written, or in its normalised form:
nginx:1.25 matches docker.io/library/nginx:1.25) or under a prefix rule (--map,
--rules; the longest prefix wins, on path component boundaries). An image written
direct.to/REF is never mapped: it becomes REF. An image already relocated is left
alone, and so is an object labelled or annotated ferry.dev/mutate: "false".
/mutate always allows.

Workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController,
Job, CronJob) are left as written, so GitOps tools see no drift: their pods are
rewritten when created. --mutate-workloads rewrites their pod templates too, on
CREATE and UPDATE; Argo CD and Flux then see the stored images differ from Git
(see docs/webhook.md, "GitOps and operators", for how to ignore it).

/validate refuses, naming the container and the reason, images tagged latest or
untagged (--deny-latest; a digest pins an image whatever its tag) and images in no
lock and under no rule (--require-locked).

The lock, rules, certificate and key files are checked every --poll: a change
applies within seconds; a broken file is logged and the last good one stays.
/healthz answers 200. SIGTERM drains requests in flight and exits.`,
		Example: `  # Serve a lock and a prefix rule
  ferry webhook serve --tls-cert tls.crt --tls-key tls.key --lock relocated.lock.yaml \
    --map gcr.io/tekton-releases=registry.internal/tekton

  # Refuse latest and anything not relocated, with JSON logs
  ferry webhook serve --tls-cert tls.crt --tls-key tls.key --lock relocated.lock.yaml \
    --deny-latest --require-locked --log-format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", ":8443", "address to listen on")
	f.StringVar(&o.certFile, "tls-cert", "", "serving certificate, PEM (reloaded when it changes)")
	f.StringVar(&o.keyFile, "tls-key", "", "serving key, PEM (reloaded when it changes)")
	f.StringVar(&o.lockFile, "lock", "", "lock whose entries are rewritten to their locations (reloaded when it changes)")
	f.StringVar(&o.rulesFile, "rules", "", "YAML file of prefix rules, kind ImageRules (reloaded when it changes; see docs/webhook.md)")
	o.maps.add(cmd)
	f.BoolVar(&o.mutateWorkloads, "mutate-workloads", false, "also rewrite the pod templates of workloads on CREATE and UPDATE: GitOps tools then see the stored images differ from Git")
	f.BoolVar(&o.denyLatest, "deny-latest", false, "/validate refuses images tagged latest or untagged, unless pinned by digest")
	f.BoolVar(&o.requireLocked, "require-locked", false, "/validate refuses images in no lock and under no prefix rule")
	f.DurationVar(&o.poll, "poll", time.Second, "how often the files are checked for changes")
	f.StringVar(&o.logFormat, "log-format", "text", "log format on stderr: text or json")
	return cmd
}

func (o *webhookServeOptions) run(ctx context.Context, cmd *cobra.Command, stderr io.Writer) error {
	if o.certFile == "" || o.keyFile == "" {
		return usageErrorf(cmd, "--tls-cert and --tls-key are required: the API server only calls webhooks over HTTPS")
	}
	if o.poll < 100*time.Millisecond {
		return usageErrorf(cmd, "--poll %v is too short: use at least 100ms", o.poll)
	}
	rules, err := o.maps.rules(cmd)
	if err != nil {
		return err
	}
	if o.lockFile == "" && o.rulesFile == "" && len(rules) == 0 && !o.denyLatest && !o.requireLocked {
		return usageErrorf(cmd, "nothing to do: pass --lock, --map or --rules, or a policy (--deny-latest, --require-locked)")
	}
	log := o.root.log(stderr)
	switch o.logFormat {
	case "text":
	case "json":
		level := slog.LevelInfo
		if o.root.verbose {
			level = slog.LevelDebug
		}
		log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	default:
		return usageErrorf(cmd, "--log-format %q: want text or json", o.logFormat)
	}
	return webhook.Serve(ctx, webhook.Options{
		Addr: o.addr, CertFile: o.certFile, KeyFile: o.keyFile,
		LockFile: o.lockFile, RulesFile: o.rulesFile, Rules: rules,
		Policy:       webhook.Policy{MutateWorkloads: o.mutateWorkloads, DenyLatest: o.denyLatest, RequireLocked: o.requireLocked},
		PollInterval: o.poll, Logger: log,
	})
}

type webhookManifestsOptions struct {
	root            *rootOptions
	namespace       string
	name            string
	image           string
	lockFile        string
	maps            mapFlags
	mutateWorkloads bool
	denyLatest      bool
	requireLocked   bool
	failurePolicy   string
	exclude         []string
}

func newWebhookManifestsCmd(root *rootOptions) *cobra.Command {
	o := &webhookManifestsOptions{root: root}
	cmd := &cobra.Command{
		Use:   "manifests --image IMAGE [--lock FILE] [--map SRC=DST]... [--namespace NS]",
		Short: "Print the Kubernetes manifests that run the webhook",
		Long: `manifests prints, for kubectl apply: the Namespace, a ServiceAccount, a ConfigMap
holding the lock and the prefix rules, a Secret with a freshly generated CA and
serving certificate, the Service, a Deployment of two replicas running
'ferry webhook serve', a PodDisruptionBudget, and the MutatingWebhookConfiguration
(plus a ValidatingWebhookConfiguration when --deny-latest or --require-locked is
set) trusting that CA. The webhook's own namespace is never sent to it.

/mutate is sent Pods when created and their ephemeral containers; with
--mutate-workloads also the workloads, whose stored templates are then rewritten.
Namespaces and objects labelled ferry.dev/mutate: "false" are not sent to /mutate
(namespaceSelector, objectSelector). /validate judges pods and workloads in every
mode, opted out or not: a refusal changes nothing stored.

Every run generates a new CA: keep the output, or re-apply it whole to rotate.
Edit the ConfigMap to change the lock or rules: the webhook reloads them.`,
		Example: `  # Everything, with the lock embedded
  ferry webhook manifests --image registry.internal/ferry/ferry:v0.1.0 --lock relocated.lock.yaml > webhook.yaml
  kubectl apply -f webhook.yaml

  # Prefix rules only, refusing latest, failing closed
  ferry webhook manifests --image registry.internal/ferry/ferry:v0.1.0 \
    --map docker.io=registry.internal/hub --deny-latest --failure-policy Fail`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", "ferry-system", "namespace the webhook runs in (excluded from it)")
	f.StringVar(&o.name, "name", "ferry-webhook", "name of the Deployment, Service and webhook configurations")
	f.StringVar(&o.image, "image", "", "ferry image to run, as your nodes can pull it (required)")
	f.StringVar(&o.lockFile, "lock", "", "lock to embed into the ConfigMap")
	o.maps.add(cmd)
	f.BoolVar(&o.mutateWorkloads, "mutate-workloads", false, "send workloads to /mutate and run serve --mutate-workloads: their stored templates are rewritten, which GitOps tools report as drift")
	f.BoolVar(&o.denyLatest, "deny-latest", false, "refuse images tagged latest or untagged (adds the validating webhook)")
	f.BoolVar(&o.requireLocked, "require-locked", false, "refuse images in no lock and under no rule (adds the validating webhook)")
	f.StringVar(&o.failurePolicy, "failure-policy", "Ignore", "when the webhook cannot answer: Ignore (admit unchanged) or Fail (refuse)")
	f.StringArrayVar(&o.exclude, "exclude-namespace", nil, "another namespace the webhook leaves alone, e.g. kube-system (repeatable)")
	return cmd
}

func (o *webhookManifestsOptions) run(cmd *cobra.Command, stdout io.Writer) error {
	if o.image == "" {
		return usageErrorf(cmd, "--image is required: the ferry image as your nodes can pull it, e.g. registry.internal/ferry/ferry:%s", Version)
	}
	fp := admissionregistrationv1.FailurePolicyType(o.failurePolicy)
	if fp != admissionregistrationv1.Ignore && fp != admissionregistrationv1.Fail {
		return usageErrorf(cmd, "--failure-policy %q: want Ignore or Fail", o.failurePolicy)
	}
	rules, err := o.maps.rules(cmd)
	if err != nil {
		return err
	}
	mo := webhook.ManifestOptions{
		Namespace: o.namespace, Name: o.name, Image: o.image, Rules: rules,
		Policy:        webhook.Policy{MutateWorkloads: o.mutateWorkloads, DenyLatest: o.denyLatest, RequireLocked: o.requireLocked},
		FailurePolicy: fp, ExcludeNamespaces: o.exclude,
	}
	if o.lockFile != "" {
		// Read checks the lock and names the file in its errors.
		if _, err := lock.Read(o.lockFile); err != nil {
			return err
		}
		b, err := os.ReadFile(o.lockFile)
		if err != nil {
			return fmt.Errorf("reading lock: %w", err)
		}
		mo.Lock = b
	}
	out, err := webhook.Manifests(mo)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}
