package webhook

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// request is one AdmissionRequest as the API server would send it.
type request struct {
	group, kind string
	op          admissionv1.Operation
	subResource string
	object      string
}

func (r request) review(t *testing.T) []byte {
	t.Helper()
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(reviewFor(r.group, r.kind, r.object), &review); err != nil {
		t.Fatal(err)
	}
	review.Request.Operation = r.op
	review.Request.SubResource = r.subResource
	b, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mutated posts r to /mutate and returns the object with the patch applied,
// or nil when the answer has no patch.
func mutated(t *testing.T, h *Handler, r request) []byte {
	t.Helper()
	_, out := post(t, h, "/mutate", r.review(t))
	if out == nil || out.Response == nil || !out.Response.Allowed {
		t.Fatalf("want allowed, got %+v", out)
	}
	if out.Response.Patch == nil {
		if out.Response.PatchType != nil {
			t.Errorf("patchType %v without a patch", *out.Response.PatchType)
		}
		return nil
	}
	p, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply([]byte(r.object))
	if err != nil {
		t.Fatalf("applying %s: %v", out.Response.Patch, err)
	}
	return patched
}

// withMeta puts metadata into the object of the given kind built by objectFor.
func withMeta(kind, metadata string) string {
	obj := objectFor(kind)
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(obj), &m); err != nil {
		panic(err)
	}
	m["metadata"] = json.RawMessage(metadata)
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestWebhookMutateModes(t *testing.T) {
	m, err := NewMapping(testLock(), []Rule{{From: "docker.io/library", To: "registry.internal/hub"}})
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{
		"init":   "registry.internal/hub/busybox:1.36",
		"web":    "registry.internal/mirror/library/nginx@" + digestA,
		"side":   "ghcr.io/org/side:1",
		"direct": "quay.io/x/y:2",
		"debug":  "registry.internal/hub/alpine:3",
	}
	ephemeralOnly := map[string]string{
		"init": "busybox:1.36", "web": "nginx:1.25", "side": "ghcr.io/org/side:1",
		"direct": "direct.to/quay.io/x/y:2", "debug": "registry.internal/hub/alpine:3",
	}
	owned := `{"name":"web-7d4b9-x2k","namespace":"default","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d4b9","uid":"u1","controller":true}]}`
	podsOnly := Policy{}
	workloads := Policy{MutateWorkloads: true}
	tests := []struct {
		name   string
		policy Policy
		req    request
		want   map[string]string // nil: no patch
	}{
		{"pods only: Deployment created as written", podsOnly, request{"apps", "Deployment", admissionv1.Create, "", objectFor("Deployment")}, nil},
		{"pods only: Deployment updated as written", podsOnly, request{"apps", "Deployment", admissionv1.Update, "", objectFor("Deployment")}, nil},
		{"pods only: CronJob as written", podsOnly, request{"batch", "CronJob", admissionv1.Create, "", objectFor("CronJob")}, nil},
		{"pods only: Pod of a ReplicaSet rewritten", podsOnly, request{"", "Pod", admissionv1.Create, "", withMeta("Pod", owned)}, all},
		{"pods only: ephemeralcontainers rewritten", podsOnly, request{"", "Pod", admissionv1.Update, "ephemeralcontainers", objectFor("Pod")}, ephemeralOnly},
		{"pod update left alone", podsOnly, request{"", "Pod", admissionv1.Update, "", objectFor("Pod")}, nil},
		{"pod status update left alone", podsOnly, request{"", "Pod", admissionv1.Update, "status", objectFor("Pod")}, nil},
		{"opt-out label on a pod", podsOnly, request{"", "Pod", admissionv1.Create, "", withMeta("Pod", `{"name":"p","labels":{"ferry.dev/mutate":"false"}}`)}, nil},
		{"opt-out annotation on a pod", podsOnly, request{"", "Pod", admissionv1.Create, "", withMeta("Pod", `{"name":"p","annotations":{"ferry.dev/mutate":"false"}}`)}, nil},
		{"opt-out label on an ephemeral update", podsOnly, request{"", "Pod", admissionv1.Update, "ephemeralcontainers", withMeta("Pod", `{"name":"p","labels":{"ferry.dev/mutate":"false"}}`)}, nil},
		{"label true is no opt-out", podsOnly, request{"", "Pod", admissionv1.Create, "", withMeta("Pod", `{"name":"p","labels":{"ferry.dev/mutate":"true"}}`)}, all},
		{"workloads: Deployment created rewritten", workloads, request{"apps", "Deployment", admissionv1.Create, "", objectFor("Deployment")}, all},
		{"workloads: Deployment updated rewritten", workloads, request{"apps", "Deployment", admissionv1.Update, "", objectFor("Deployment")}, all},
		{"workloads: CronJob rewritten", workloads, request{"batch", "CronJob", admissionv1.Update, "", objectFor("CronJob")}, all},
		{"workloads: Pod still rewritten", workloads, request{"", "Pod", admissionv1.Create, "", objectFor("Pod")}, all},
		{"workloads: opt-out label on a Deployment", workloads, request{"apps", "Deployment", admissionv1.Create, "", withMeta("Deployment", `{"name":"w","labels":{"ferry.dev/mutate":"false"}}`)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(m, tt.policy, nil)
			patched := mutated(t, h, tt.req)
			if tt.want == nil {
				if patched != nil {
					t.Fatalf("want no patch, got %s", patched)
				}
				return
			}
			if patched == nil {
				t.Fatal("want a patch, got none")
			}
			got := imagesAt(t, metav1.GroupKind{Group: tt.req.group, Kind: tt.req.kind}, patched)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("images (-want +got):\n%s", d)
			}
		})
	}
}

// TestWebhookMutateIdempotent: an image already relocated gets no patch, and
// the object as patched, sent again (reinvocation, or a pod created from a
// rewritten template), gets none either.
func TestWebhookMutateIdempotent(t *testing.T) {
	pod := func(images ...string) string {
		var cs []string
		for i, im := range images {
			cs = append(cs, `{"name":"c`+string(rune('0'+i))+`","image":"`+im+`"}`)
		}
		return `{"metadata":{"name":"p"},"spec":{"containers":[` + strings.Join(cs, ",") + `]}}`
	}
	tests := []struct {
		name   string
		rules  []Rule
		object string
		// patched says whether the first call patches.
		patched bool
	}{
		{"lock location", nil, pod("registry.internal/mirror/library/nginx@" + digestA), false},
		{"under a rule's destination", []Rule{{From: "docker.io", To: "registry.internal/hub"}}, pod("registry.internal/hub/library/redis:7"), false},
		{"mapped once", []Rule{{From: "docker.io", To: "registry.internal/hub"}}, pod("nginx:1.25", "redis:7", "ghcr.io/a/b:1"), true},
		// Without the check for relocated images this rule would prepend
		// "mirror/" at every call.
		{"destination under its own source", []Rule{{From: "registry.internal", To: "registry.internal/mirror"}}, pod("registry.internal/app:1"), true},
		{"whole pod spec", []Rule{{From: "docker.io/library", To: "registry.internal/hub"}}, objectFor("Pod"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMapping(testLock(), tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			h := NewHandler(m, Policy{}, nil)
			first := mutated(t, h, request{"", "Pod", admissionv1.Create, "", tt.object})
			if (first != nil) != tt.patched {
				t.Fatalf("first call patched = %v, want %v (%s)", first != nil, tt.patched, first)
			}
			if first == nil {
				return
			}
			if again := mutated(t, h, request{"", "Pod", admissionv1.Create, "", string(first)}); again != nil {
				t.Errorf("second call patched again:\nfirst  %s\nsecond %s", first, again)
			}
		})
	}
}

// TestWebhookValidateJudgesWorkloadsInPodsOnlyMode: refusing causes no drift,
// so /validate judges workloads whatever /mutate does with them.
func TestWebhookValidateJudgesWorkloadsInPodsOnlyMode(t *testing.T) {
	m, _ := NewMapping(nil, nil)
	h := NewHandler(m, Policy{DenyLatest: true}, nil)
	obj := withMeta("Deployment", `{"name":"w","labels":{"ferry.dev/mutate":"false"}}`)
	obj = strings.Replace(obj, "nginx:1.25", "nginx:latest", 1)
	_, out := post(t, h, "/validate", request{"apps", "Deployment", admissionv1.Create, "", obj}.review(t))
	if out == nil || out.Response == nil {
		t.Fatal("no response")
	}
	if out.Response.Allowed {
		t.Fatal("a Deployment with nginx:latest was allowed")
	}
	if msg := out.Response.Result.Message; !strings.Contains(msg, `container "web"`) {
		t.Errorf("message %q does not name the container", msg)
	}
}

// TestWebhookManifestsPerMode: the rules sent to /mutate, the opt-out
// selectors and the Deployment's flags agree with the mode.
func TestWebhookManifestsPerMode(t *testing.T) {
	type sent struct{ Resource, Ops string }
	flatten := func(rules []admissionregistrationv1.RuleWithOperations) []sent {
		var out []sent
		for _, r := range rules {
			var ops []string
			for _, op := range r.Operations {
				ops = append(ops, string(op))
			}
			for _, res := range r.Resources {
				out = append(out, sent{strings.Join(r.APIGroups, ",") + "/" + res, strings.Join(ops, ",")})
			}
		}
		return out
	}
	pods := []sent{{"/pods", "CREATE"}, {"/pods/ephemeralcontainers", "UPDATE"}}
	all := append(append([]sent{}, pods...),
		sent{"/replicationcontrollers", "CREATE,UPDATE"},
		sent{"apps/deployments", "CREATE,UPDATE"}, sent{"apps/statefulsets", "CREATE,UPDATE"},
		sent{"apps/daemonsets", "CREATE,UPDATE"}, sent{"apps/replicasets", "CREATE,UPDATE"},
		sent{"batch/jobs", "CREATE"}, sent{"batch/cronjobs", "CREATE,UPDATE"})
	optOut := metav1.LabelSelectorRequirement{Key: "ferry.dev/mutate", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}
	notOwn := metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"ferry-system", "kube-system"}}
	tests := []struct {
		name      string
		workloads bool
		mutate    []sent
		flag      bool
	}{
		{"pods only", false, pods, false},
		{"mutate workloads", true, all, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Manifests(ManifestOptions{
				Namespace: "ferry-system", Name: "ferry-webhook", Image: "r.io/ferry:1", TLS: fakeTLS,
				ExcludeNamespaces: []string{"kube-system"},
				Policy:            Policy{MutateWorkloads: tt.workloads, DenyLatest: true},
			})
			if err != nil {
				t.Fatal(err)
			}
			d := decodeManifests(t, out)
			mw := d.mutating.Webhooks[0]
			if diff := cmp.Diff(tt.mutate, flatten(mw.Rules)); diff != "" {
				t.Errorf("mutating rules (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]metav1.LabelSelectorRequirement{notOwn, optOut}, mw.NamespaceSelector.MatchExpressions); diff != "" {
				t.Errorf("mutating namespaceSelector (-want +got):\n%s", diff)
			}
			if mw.ObjectSelector == nil || len(mw.ObjectSelector.MatchLabels) != 0 {
				t.Fatalf("mutating objectSelector = %+v", mw.ObjectSelector)
			}
			if diff := cmp.Diff([]metav1.LabelSelectorRequirement{optOut}, mw.ObjectSelector.MatchExpressions); diff != "" {
				t.Errorf("mutating objectSelector (-want +got):\n%s", diff)
			}
			if mw.ReinvocationPolicy == nil || *mw.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
				t.Errorf("reinvocationPolicy = %v, want IfNeeded", mw.ReinvocationPolicy)
			}
			// Refusing causes no drift: the validating webhook judges pods and
			// workloads in every mode, opted out or not.
			vw := d.validating.Webhooks[0]
			if diff := cmp.Diff(all, flatten(vw.Rules)); diff != "" {
				t.Errorf("validating rules (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]metav1.LabelSelectorRequirement{notOwn}, vw.NamespaceSelector.MatchExpressions); diff != "" {
				t.Errorf("validating namespaceSelector (-want +got):\n%s", diff)
			}
			if vw.ObjectSelector != nil && len(vw.ObjectSelector.MatchExpressions) > 0 {
				t.Errorf("validating objectSelector = %+v, want none", vw.ObjectSelector)
			}
			args := d.deployment.Spec.Template.Spec.Containers[0].Args
			if got := slices.Contains(args, "--mutate-workloads"); got != tt.flag {
				t.Errorf("--mutate-workloads in the Deployment's args = %v, want %v: %q", got, tt.flag, args)
			}
		})
	}
}

// TestWebhookMutateDirectStaysDirect: an image unwrapped from direct.to/ is
// recorded in DirectAnnotation, so that a second call, or a pod created from
// a rewritten template, does not map it after all.
func TestWebhookMutateDirectStaysDirect(t *testing.T) {
	m, err := NewMapping(nil, []Rule{{From: "quay.io", To: "registry.internal/quay"}})
	if err != nil {
		t.Fatal(err)
	}
	spec := `{"containers":[{"name":"a","image":"direct.to/quay.io/x/y:2"},{"name":"b","image":"quay.io/x/z:1"}]}`
	tests := []struct {
		name, metadata string
		wantDirect     string
	}{
		{"no metadata", "", "a=quay.io/x/y:2"},
		{"no annotations", `{"name":"p"}`, "a=quay.io/x/y:2"},
		{"other annotations", `{"name":"p","annotations":{"team":"a"}}`, "a=quay.io/x/y:2"},
		{"earlier direct images kept", `{"name":"p","annotations":{"ferry.dev/direct":"quay.io/a/b:1"}}`, "a=quay.io/x/y:2,quay.io/a/b:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := `{"spec":` + spec + `}`
			if tt.metadata != "" {
				obj = `{"metadata":` + tt.metadata + `,"spec":` + spec + `}`
			}
			h := NewHandler(m, Policy{}, nil)
			first := mutated(t, h, request{"", "Pod", admissionv1.Create, "", obj})
			if first == nil {
				t.Fatal("no patch")
			}
			got := imagesAt(t, podKind, first)
			if d := cmp.Diff(map[string]string{"a": "quay.io/x/y:2", "b": "registry.internal/quay/x/z:1"}, got); d != "" {
				t.Errorf("images (-want +got):\n%s", d)
			}
			var pod struct {
				Metadata struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(first, &pod); err != nil {
				t.Fatal(err)
			}
			if got := pod.Metadata.Annotations[DirectAnnotation]; got != tt.wantDirect {
				t.Errorf("%s = %q, want %q", DirectAnnotation, got, tt.wantDirect)
			}
			if tt.name == "other annotations" && pod.Metadata.Annotations["team"] != "a" {
				t.Errorf("other annotations lost: %v", pod.Metadata.Annotations)
			}
			if again := mutated(t, h, request{"", "Pod", admissionv1.Create, "", string(first)}); again != nil {
				t.Errorf("second call patched again: %s", again)
			}
		})
	}

	t.Run("pod created from a rewritten template", func(t *testing.T) {
		h := NewHandler(m, Policy{MutateWorkloads: true}, nil)
		dep := `{"kind":"Deployment","metadata":{"name":"w"},"spec":{"template":{"metadata":{"labels":{"app":"x"}},"spec":` + spec + `}}}`
		patched := mutated(t, h, request{"apps", "Deployment", admissionv1.Create, "", dep})
		if patched == nil {
			t.Fatal("no patch")
		}
		var d struct {
			Spec struct {
				Template json.RawMessage `json:"template"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(patched, &d); err != nil {
			t.Fatal(err)
		}
		// The controller copies the template's metadata and spec into the pod.
		if again := mutated(t, h, request{"", "Pod", admissionv1.Create, "", string(d.Spec.Template)}); again != nil {
			t.Errorf("the pod of a rewritten template was patched: %s", again)
		}
	})
}

// TestWebhookValidateWorkloadAsItsPodsPull: in pods-only mode a workload is
// stored as written but its pods are mapped, so /validate judges the images
// those pods will pull; with --mutate-workloads, or opted out, it judges the
// object as it reaches /validate.
func TestWebhookValidateWorkloadAsItsPodsPull(t *testing.T) {
	l := testLock()
	l.Images = append(l.Images, lock.Image{Image: "busybox:latest", Digest: digestC,
		Relocated: "registry.internal/mirror/library/busybox@" + digestC})
	m, err := NewMapping(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The lock maps nginx:1.25 and busybox:latest; redis maps nowhere.
	dep := func(metadata, image string) string {
		return `{"kind":"Deployment","metadata":` + metadata + `,"spec":{"template":{"spec":{"containers":[{"name":"c","image":"` + image + `"}]}}}}`
	}
	tests := []struct {
		name    string
		policy  Policy
		object  string
		allowed bool
	}{
		{"pods only: locked image allowed", Policy{RequireLocked: true}, dep(`{"name":"w"}`, "nginx:1.25"), true},
		{"pods only: unlocked image refused", Policy{RequireLocked: true}, dep(`{"name":"w"}`, "redis:7"), false},
		{"pods only: latest mapped to a digest allowed", Policy{DenyLatest: true}, dep(`{"name":"w"}`, "busybox:latest"), true},
		{"pods only: latest unmapped refused", Policy{DenyLatest: true}, dep(`{"name":"w"}`, "redis:latest"), false},
		{"mutate workloads: judged as mutated", Policy{DenyLatest: true, MutateWorkloads: true}, dep(`{"name":"w"}`, "registry.internal/mirror/library/busybox@"+digestC), true},
		{"opted out: latest judged as written", Policy{DenyLatest: true}, dep(`{"name":"w","labels":{"ferry.dev/mutate":"false"}}`, "busybox:latest"), false},
		{"pods only: untagged refused", Policy{DenyLatest: true}, dep(`{"name":"w"}`, "redis"), false},
		{"opted out: judged as written", Policy{DenyLatest: true}, dep(`{"name":"w","labels":{"ferry.dev/mutate":"false"}}`, "redis"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(m, tt.policy, nil)
			_, out := post(t, h, "/validate", request{"apps", "Deployment", admissionv1.Create, "", tt.object}.review(t))
			if out == nil || out.Response == nil {
				t.Fatal("no response")
			}
			if out.Response.Allowed != tt.allowed {
				t.Errorf("allowed = %v, want %v (%+v)", out.Response.Allowed, tt.allowed, out.Response.Result)
			}
		})
	}
}

// TestWebhookDirectIsPerContainer: direct.to/ in one container leaves that
// container's image alone, not the same image named plainly elsewhere: a
// sidecar, a debug container added later, a container of a re-applied
// template. An annotation ferry wrote before it named containers still
// reads, for every container.
func TestWebhookDirectIsPerContainer(t *testing.T) {
	m, err := NewMapping(nil, []Rule{{From: "quay.io", To: "registry.internal/quay"}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(m, Policy{}, nil)
	pod := `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"direct.to/quay.io/x/z:1"},{"name":"b","image":"quay.io/x/z:1"}]}}`
	first := mutated(t, h, request{"", "Pod", admissionv1.Create, "", pod})
	if first == nil {
		t.Fatal("no patch")
	}
	if d := cmp.Diff(map[string]string{"a": "quay.io/x/z:1", "b": "registry.internal/quay/x/z:1"}, imagesAt(t, podKind, first)); d != "" {
		t.Errorf("images (-want +got):\n%s", d)
	}
	if again := mutated(t, h, request{"", "Pod", admissionv1.Create, "", string(first)}); again != nil {
		t.Errorf("second call patched again: %s", again)
	}
	// kubectl debug --image quay.io/x/z:1 on the stored pod.
	var stored map[string]any
	if err := json.Unmarshal(first, &stored); err != nil {
		t.Fatal(err)
	}
	stored["spec"].(map[string]any)["ephemeralContainers"] = []any{map[string]any{"name": "dbg", "image": "quay.io/x/z:1"}}
	debug, err := json.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	patched := mutated(t, h, request{"", "Pod", admissionv1.Update, "ephemeralcontainers", string(debug)})
	if got := imagesAt(t, podKind, patched)["dbg"]; got != "registry.internal/quay/x/z:1" {
		t.Errorf("debug container naming the image plainly: %q, want it mapped (only container a asked for direct.to/)", got)
	}
	// The annotation as ferry wrote it before: the image in any container.
	legacy := `{"metadata":{"name":"p","annotations":{"ferry.dev/direct":"quay.io/x/z:1"}},"spec":{"containers":[{"name":"a","image":"quay.io/x/z:1"}]}}`
	if again := mutated(t, h, request{"", "Pod", admissionv1.Create, "", legacy}); again != nil {
		t.Errorf("an image an older annotation lists was mapped: %s", again)
	}
}
