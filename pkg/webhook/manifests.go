package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/pkg/lock"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Where the webhook's pod finds its files.
const (
	configDir  = "/etc/ferry/config"
	tlsDir     = "/etc/ferry/tls"
	lockKey    = "lock.yaml"
	rulesKey   = "rules.yaml"
	listenPort = 8443
)

// ManifestOptions say what `ferry webhook manifests` prints.
type ManifestOptions struct {
	Namespace string
	Name      string
	// Image is the ferry image the webhook runs; its entrypoint must be ferry.
	Image string
	// Lock is a lock file's content, embedded as is into the ConfigMap; nil for none.
	Lock []byte
	// Rules go into the ConfigMap's rules file, where they can be edited live.
	Rules  []Rule
	Policy Policy
	// FailurePolicy is Ignore (admit unchanged when the webhook is down) or Fail.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// ExcludeNamespaces are left alone besides the webhook's own.
	ExcludeNamespaces []string
	// TLS is the CA and serving certificate; generated when nil.
	TLS *TLS
	// Now dates generated certificates; time.Now when zero.
	Now time.Time
}

// Manifests renders every object needed to run the webhook in a cluster as
// one YAML stream for kubectl apply.
func Manifests(o ManifestOptions) ([]byte, error) {
	switch o.FailurePolicy {
	case "":
		o.FailurePolicy = admissionregistrationv1.Ignore
	case admissionregistrationv1.Ignore, admissionregistrationv1.Fail:
	default:
		return nil, fmt.Errorf("failure policy %q: use Ignore or Fail", o.FailurePolicy)
	}
	if o.Image == "" {
		return nil, fmt.Errorf("the webhook's image must be set")
	}
	for _, n := range append([]string{o.Name, o.Namespace}, o.ExcludeNamespaces...) {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return nil, fmt.Errorf("name %q: %s", n, strings.Join(errs, "; "))
		}
	}
	if o.Lock != nil {
		if _, err := lock.Parse(o.Lock); err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
	}
	if _, err := NewMapping(nil, o.Rules); err != nil {
		return nil, err
	}
	if o.TLS == nil {
		now := o.Now
		if now.IsZero() {
			now = time.Now()
		}
		t, err := GenerateTLS(o.Name, o.Namespace, now)
		if err != nil {
			return nil, err
		}
		o.TLS = t
	}
	objs, err := objects(o)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for i, obj := range objs {
		b, err := toYAML(obj)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}

func objects(o ManifestOptions) ([]any, error) {
	labels := map[string]string{"app.kubernetes.io/name": o.Name, "app.kubernetes.io/part-of": "ferry"}
	selector := map[string]string{"app.kubernetes.io/name": o.Name}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: labels}
	}
	tm := func(apiVersion, kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
	}

	rules := o.Rules
	if rules == nil {
		rules = []Rule{}
	}
	rulesYAML, err := yaml.Marshal(RulesFile{APIVersion: RulesAPIVersion, Kind: RulesKind, Rules: rules})
	if err != nil {
		return nil, fmt.Errorf("encoding rules: %w", err)
	}
	cm := &corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta(o.Name), Data: map[string]string{rulesKey: string(rulesYAML)}}
	args := []string{"webhook", "serve",
		"--addr", fmt.Sprintf(":%d", listenPort),
		"--tls-cert", tlsDir + "/" + corev1.TLSCertKey,
		"--tls-key", tlsDir + "/" + corev1.TLSPrivateKeyKey,
		"--rules", configDir + "/" + rulesKey,
	}
	if o.Lock != nil {
		cm.Data[lockKey] = string(o.Lock)
		args = append(args, "--lock", configDir+"/"+lockKey)
	}
	if o.Policy.MutateWorkloads {
		args = append(args, "--mutate-workloads")
	}
	if o.Policy.DenyLatest {
		args = append(args, "--deny-latest")
	}
	if o.Policy.RequireLocked {
		args = append(args, "--require-locked")
	}

	secret := &corev1.Secret{
		TypeMeta: tm("v1", "Secret"), ObjectMeta: meta(o.Name + "-tls"), Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: o.TLS.Cert, corev1.TLSPrivateKeyKey: o.TLS.Key, "ca.crt": o.TLS.CACert},
	}
	probe := func(period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: intstr.FromString("https"), Scheme: corev1.URISchemeHTTPS,
			}},
			PeriodSeconds: period, TimeoutSeconds: 2, FailureThreshold: 3,
		}
	}
	replicas := int32(2)
	deploy := &appsv1.Deployment{
		TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: meta(o.Name),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName:           o.Name,
					AutomountServiceAccountToken: ptr(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr(true),
						RunAsUser:      ptr(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: selector},
								TopologyKey:   "kubernetes.io/hostname",
							},
						}},
					}},
					Containers: []corev1.Container{{
						Name:           "webhook",
						Image:          o.Image,
						Args:           args,
						Ports:          []corev1.ContainerPort{{Name: "https", ContainerPort: listenPort, Protocol: corev1.ProtocolTCP}},
						ReadinessProbe: probe(5),
						LivenessProbe:  probe(10),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr(false),
							ReadOnlyRootFilesystem:   ptr(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						// Whole-directory mounts (no subPath), so that kubelet's
						// updates reach the files and the webhook reloads them.
						VolumeMounts: []corev1.VolumeMount{
							{Name: "config", MountPath: configDir, ReadOnly: true},
							{Name: "tls", MountPath: tlsDir, ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: o.Name}}}},
						{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret.Name}}},
					},
				},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta: tm("v1", "Service"), ObjectMeta: meta(o.Name),
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromString("https"), Protocol: corev1.ProtocolTCP}},
		},
	}
	minAvailable := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{
		TypeMeta: tm("policy/v1", "PodDisruptionBudget"), ObjectMeta: meta(o.Name),
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &minAvailable, Selector: &metav1.LabelSelector{MatchLabels: selector}},
	}

	excluded := append([]string{o.Namespace}, o.ExcludeNamespaces...)
	nsSelector := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: excluded,
	}}}
	// The mutating webhook also skips namespaces and objects labelled
	// ferry.dev/mutate: "false"; the validating one judges them all the same,
	// since refusing changes nothing stored.
	optOut := metav1.LabelSelectorRequirement{Key: OptOutKey, Operator: metav1.LabelSelectorOpNotIn, Values: []string{optOutValue}}
	mutateNSSelector := nsSelector.DeepCopy()
	mutateNSSelector.MatchExpressions = append(mutateNSSelector.MatchExpressions, optOut)
	client := func(path string) admissionregistrationv1.WebhookClientConfig {
		return admissionregistrationv1.WebhookClientConfig{
			Service:  &admissionregistrationv1.ServiceReference{Namespace: o.Namespace, Name: o.Name, Path: ptr(path), Port: ptr(int32(443))},
			CABundle: o.TLS.CACert,
		}
	}
	sideEffects := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	failure := o.FailurePolicy
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   tm("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: labels},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "images." + o.Name + ".ferry.dev",
			ClientConfig:            client("/mutate"),
			Rules:                   mutatingRules(o.Policy.MutateWorkloads),
			FailurePolicy:           &failure,
			MatchPolicy:             &equivalent,
			NamespaceSelector:       mutateNSSelector,
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{optOut}},
			SideEffects:             &sideEffects,
			TimeoutSeconds:          ptr(int32(5)),
			AdmissionReviewVersions: []string{"v1"},
			// Another webhook adding a container after this one ran (a
			// sidecar injector) gets it mapped too. Images already mapped
			// are left alone, so the second call adds no second patch.
			ReinvocationPolicy: ptr(admissionregistrationv1.IfNeededReinvocationPolicy),
		}},
	}
	objs := []any{
		&corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: o.Namespace, Labels: labels}},
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: meta(o.Name), AutomountServiceAccountToken: ptr(false)},
		cm, secret, svc, deploy, pdb, mutating,
	}
	// A validating webhook with nothing to refuse would only add latency and
	// a way to fail, so it is printed only when a policy is on.
	if o.Policy.DenyLatest || o.Policy.RequireLocked {
		objs = append(objs, &admissionregistrationv1.ValidatingWebhookConfiguration{
			TypeMeta:   tm("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: labels},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{
				Name:                    "policy." + o.Name + ".ferry.dev",
				ClientConfig:            client("/validate"),
				Rules:                   validatingRules(),
				FailurePolicy:           &failure,
				MatchPolicy:             &equivalent,
				NamespaceSelector:       nsSelector,
				SideEffects:             &sideEffects,
				TimeoutSeconds:          ptr(int32(5)),
				AdmissionReviewVersions: []string{"v1"},
			}},
		})
	}
	return objs, nil
}

// mutatingRules send pods when created and their ephemeral containers when
// added; with workloads, also every workload's pod template. Changing the
// image of a running pod restarts it, so other pod updates are not sent. Job
// templates are immutable, so Jobs are sent when created only.
func mutatingRules(workloads bool) []admissionregistrationv1.RuleWithOperations {
	if !workloads {
		return podRules()
	}
	return append(podRules(), workloadRules()...)
}

// validatingRules send pods and workloads whatever /mutate does: a refusal
// changes nothing stored, so it causes no drift.
func validatingRules() []admissionregistrationv1.RuleWithOperations {
	return append(podRules(), workloadRules()...)
}

var (
	opsCreate       = []admissionregistrationv1.OperationType{admissionregistrationv1.Create}
	opsCreateUpdate = []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	opsUpdate       = []admissionregistrationv1.OperationType{admissionregistrationv1.Update}
)

func rule(ops []admissionregistrationv1.OperationType, group string, resources ...string) admissionregistrationv1.RuleWithOperations {
	return admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: admissionregistrationv1.Rule{
		APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: resources, Scope: ptr(admissionregistrationv1.NamespacedScope),
	}}
}

func podRules() []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{
		rule(opsCreate, "", "pods"),
		rule(opsUpdate, "", "pods/ephemeralcontainers"),
	}
}

func workloadRules() []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{
		rule(opsCreateUpdate, "", "replicationcontrollers"),
		rule(opsCreateUpdate, "apps", "deployments", "statefulsets", "daemonsets", "replicasets"),
		rule(opsCreate, "batch", "jobs"),
		rule(opsCreateUpdate, "batch", "cronjobs"),
	}
}

// toYAML encodes a k8s.io/api object without the status and the empty
// creationTimestamp that their Go types always carry.
func toYAML(obj any) ([]byte, error) {
	j, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", obj, err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		return nil, fmt.Errorf("encoding %T: %w", obj, err)
	}
	// Status is the cluster's to write; an empty spec (Namespace) is noise.
	delete(m, "status")
	if s, ok := m["spec"].(map[string]any); ok && len(s) == 0 {
		delete(m, "spec")
	}
	dropNullTimestamps(m)
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", obj, err)
	}
	return b, nil
}

func dropNullTimestamps(v any) {
	switch v := v.(type) {
	case map[string]any:
		if ts, ok := v["creationTimestamp"]; ok && ts == nil {
			delete(v, "creationTimestamp")
		}
		for _, c := range v {
			dropNullTimestamps(c)
		}
	case []any:
		for _, c := range v {
			dropNullTimestamps(c)
		}
	}
}

func ptr[T any](v T) *T { return &v }
