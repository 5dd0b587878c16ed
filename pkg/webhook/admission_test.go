package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podSpecJSON is a pod spec with every kind of container.
const podSpecJSON = `{"initContainers":[{"name":"init","image":"busybox:1.36"}],
 "containers":[{"name":"web","image":"nginx:1.25","ports":[{"containerPort":80}]},{"name":"side","image":"ghcr.io/org/side:1"},{"name":"direct","image":"direct.to/quay.io/x/y:2"}],
 "ephemeralContainers":[{"name":"debug","image":"docker.io/library/alpine:3"}]}`

// objectFor wraps podSpecJSON in an object of the given kind.
func objectFor(kind string) string {
	tmpl := `{"metadata":{"labels":{"app":"x"}},"spec":` + podSpecJSON + `}`
	switch kind {
	case "Pod":
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":` + podSpecJSON + `}`
	case "CronJob":
		return `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"c"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":` + tmpl + `}}}}`
	default:
		return `{"kind":"` + kind + `","metadata":{"name":"w"},"spec":{"replicas":1,"template":` + tmpl + `}}`
	}
}

func reviewFor(group, kind, object string) []byte {
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("uid-" + kind),
			Kind:      metav1.GroupVersionKind{Group: group, Version: "v1", Kind: kind},
			Namespace: "default", Operation: admissionv1.Create,
		},
	}
	if object != "" {
		r.Request.Object.Raw = []byte(object)
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return b
}

func post(t *testing.T, h http.Handler, path string, body []byte) (*httptest.ResponseRecorder, *admissionv1.AdmissionReview) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		return rec, nil
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is no AdmissionReview: %v\n%s", err, rec.Body)
	}
	return rec, &out
}

// imagesAt reads back every image of the pod spec found at path.
func imagesAt(t *testing.T, gk metav1.GroupKind, obj []byte) map[string]string {
	t.Helper()
	imgs, err := podImages(gk, obj)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range imgs {
		got[c.Name] = c.Image
	}
	return got
}

func TestWebhookMutateKinds(t *testing.T) {
	m, err := NewMapping(testLock(), []Rule{{From: "docker.io/library", To: "registry.internal/hub"}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(m, Policy{MutateWorkloads: true}, nil)
	want := map[string]string{
		"init":   "registry.internal/hub/busybox:1.36",
		"web":    "registry.internal/mirror/library/nginx@" + digestA,
		"side":   "ghcr.io/org/side:1",
		"direct": "quay.io/x/y:2",
		"debug":  "registry.internal/hub/alpine:3",
	}
	for _, k := range []struct{ group, kind string }{
		{"", "Pod"}, {"apps", "Deployment"}, {"apps", "StatefulSet"}, {"apps", "DaemonSet"},
		{"apps", "ReplicaSet"}, {"batch", "Job"}, {"batch", "CronJob"}, {"", "ReplicationController"},
	} {
		t.Run(k.kind, func(t *testing.T) {
			obj := objectFor(k.kind)
			_, out := post(t, h, "/mutate", reviewFor(k.group, k.kind, obj))
			if out == nil {
				t.Fatal("no review")
			}
			if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
				t.Errorf("typeMeta = %+v", out.TypeMeta)
			}
			r := out.Response
			if r == nil || !r.Allowed || r.UID != types.UID("uid-"+k.kind) {
				t.Fatalf("response = %+v", r)
			}
			if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patchType = %v", r.PatchType)
			}
			p, err := jsonpatch.DecodePatch(r.Patch)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := p.Apply([]byte(obj))
			if err != nil {
				t.Fatalf("applying %s: %v", r.Patch, err)
			}
			got := imagesAt(t, metav1.GroupKind{Group: k.group, Kind: k.kind}, patched)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("images (-want +got):\n%s", d)
			}
			// Everything but images is untouched.
			if !bytes.Contains(patched, []byte(`"containerPort":80`)) {
				t.Errorf("patched object lost fields: %s", patched)
			}
		})
	}
}

func TestWebhookMutateNoChangeNoPatch(t *testing.T) {
	m, _ := NewMapping(nil, nil)
	h := NewHandler(m, Policy{}, nil)
	for name, review := range map[string][]byte{
		"no match":        reviewFor("", "Pod", `{"spec":{"containers":[{"name":"a","image":"ghcr.io/a/b:1"}]}}`),
		"unknown kind":    reviewFor("", "ConfigMap", `{"data":{"image":"nginx"}}`),
		"no object":       reviewFor("", "Pod", ``),
		"broken object":   reviewFor("", "Pod", `{"spec":{"containers":"nope"}}`),
		"no image fields": reviewFor("apps", "Deployment", `{"spec":{}}`),
	} {
		t.Run(name, func(t *testing.T) {
			_, out := post(t, h, "/mutate", review)
			if out == nil || out.Response == nil || !out.Response.Allowed {
				t.Fatalf("want allowed, got %+v", out)
			}
			if out.Response.Patch != nil || out.Response.PatchType != nil {
				t.Errorf("patch = %s, want none", out.Response.Patch)
			}
		})
	}
}

func TestWebhookValidate(t *testing.T) {
	m, err := NewMapping(testLock(), []Rule{{From: "ghcr.io/org", To: "registry.internal/org"}})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(images ...string) []byte {
		var cs []string
		for i, im := range images {
			cs = append(cs, `{"name":"c`+string(rune('0'+i))+`","image":"`+im+`"}`)
		}
		return reviewFor("", "Pod", `{"spec":{"containers":[`+strings.Join(cs, ",")+`]}}`)
	}
	tests := []struct {
		name    string
		policy  Policy
		images  []string
		allowed bool
		msg     []string
	}{
		{"no policy allows latest", Policy{}, []string{"nginx:latest"}, true, nil},
		{"latest refused", Policy{DenyLatest: true}, []string{"nginx:1.25", "nginx:latest"}, false, []string{`container "c1"`, `"nginx:latest"`, `tagged "latest"`}},
		{"untagged refused", Policy{DenyLatest: true}, []string{"nginx"}, false, []string{`container "c0"`, "has no tag"}},
		{"digest-pinned untagged allowed", Policy{DenyLatest: true}, []string{"nginx@" + digestA}, true, nil},
		{"digest-pinned latest allowed", Policy{DenyLatest: true}, []string{"nginx:latest@" + digestA}, true, nil},
		{"direct.to latest refused", Policy{DenyLatest: true}, []string{"direct.to/nginx:latest"}, false, []string{"tagged"}},
		{"invalid refused", Policy{DenyLatest: true}, []string{"NGINX"}, false, []string{"not a valid image reference"}},
		{"locked allowed", Policy{RequireLocked: true}, []string{"nginx:1.25", "ghcr.io/org/x:1", "registry.internal/mirror/library/nginx@" + digestA}, true, nil},
		{"unlocked refused", Policy{RequireLocked: true}, []string{"nginx:1.25", "redis:7"}, false, []string{`container "c1"`, `"redis:7"`, "in no lock"}},
		{"both reasons", Policy{DenyLatest: true, RequireLocked: true}, []string{"redis:latest", "redis:7"}, false, []string{`"c0"`, "latest", `"c1"`, "in no lock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(m, tt.policy, nil)
			_, out := post(t, h, "/validate", pod(tt.images...))
			if out == nil || out.Response == nil {
				t.Fatal("no response")
			}
			r := out.Response
			if r.Allowed != tt.allowed {
				t.Fatalf("allowed = %v, want %v (%+v)", r.Allowed, tt.allowed, r.Result)
			}
			if r.Patch != nil {
				t.Errorf("validate returned a patch")
			}
			if tt.allowed {
				return
			}
			if r.Result == nil || r.Result.Code != http.StatusForbidden {
				t.Fatalf("result = %+v", r.Result)
			}
			for _, s := range tt.msg {
				if !strings.Contains(r.Result.Message, s) {
					t.Errorf("message %q lacks %q", r.Result.Message, s)
				}
			}
		})
	}
}

// /validate judges every container list: an image in initContainers or
// ephemeralContainers breaks the policy as one in containers does.
func TestWebhookValidateEveryContainerList(t *testing.T) {
	m, err := NewMapping(testLock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		policy Policy
		spec   string
		msg    string
	}{
		{"init latest", Policy{DenyLatest: true}, `{"initContainers":[{"name":"i","image":"busybox:latest"}],"containers":[{"name":"c","image":"nginx:1.25"}]}`, `initContainer "i" image "busybox:latest" is tagged "latest"`},
		{"ephemeral latest", Policy{DenyLatest: true}, `{"containers":[{"name":"c","image":"nginx:1.25"}],"ephemeralContainers":[{"name":"e","image":"busybox"}]}`, `ephemeralContainer "e" image "busybox" has no tag`},
		{"init unlocked", Policy{RequireLocked: true}, `{"initContainers":[{"name":"i","image":"redis:7"}],"containers":[{"name":"c","image":"nginx:1.25"}]}`, `initContainer "i" image "redis:7" is in no lock`},
		{"ephemeral unlocked", Policy{RequireLocked: true}, `{"containers":[{"name":"c","image":"nginx:1.25"}],"ephemeralContainers":[{"name":"e","image":"redis:7"}]}`, `ephemeralContainer "e" image "redis:7" is in no lock`},
	}
	for _, tt := range tests {
		for _, k := range []struct{ group, kind, obj string }{
			{"", "Pod", `{"metadata":{"name":"p"},"spec":` + tt.spec + `}`},
			{"apps", "Deployment", `{"metadata":{"name":"d"},"spec":{"template":{"spec":` + tt.spec + `}}}`},
		} {
			t.Run(tt.name+" "+k.kind, func(t *testing.T) {
				h := NewHandler(m, tt.policy, nil)
				_, out := post(t, h, "/validate", reviewFor(k.group, k.kind, k.obj))
				if out == nil || out.Response == nil {
					t.Fatal("no response")
				}
				r := out.Response
				if r.Allowed || r.Result == nil {
					t.Fatalf("allowed = %v, want refused naming %s", r.Allowed, tt.msg)
				}
				if !strings.Contains(r.Result.Message, tt.msg) {
					t.Errorf("message %q lacks %q", r.Result.Message, tt.msg)
				}
			})
		}
	}
}

// A refusal names the image as the user wrote it as well as what a prefix
// rule made of it: the validating webhook sees pods after the mutating one
// rewrote them, and the user looks for what they wrote.
func TestWebhookValidateNamesTheImageAsWritten(t *testing.T) {
	m, err := NewMapping(nil, []Rule{{From: "docker.io", To: "hub.mirror.internal"}, {From: "gcr.io/tekton", To: "registry.internal/tekton"}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(m, Policy{DenyLatest: true}, nil)
	tests := []struct{ image, want string }{
		{"hub.mirror.internal/library/busybox:latest", `container "c" image "busybox:latest" (mapped to "hub.mirror.internal/library/busybox:latest") is tagged "latest"`},
		{"hub.mirror.internal/org/tool", `container "c" image "org/tool" (mapped to "hub.mirror.internal/org/tool") has no tag`},
		{"registry.internal/tekton/controller:latest", `container "c" image "gcr.io/tekton/controller:latest" (mapped to "registry.internal/tekton/controller:latest") is tagged "latest"`},
		// The mutating webhook did not run: what it would have made of it.
		{"busybox:latest", `container "c" image "busybox:latest" (mapped to "hub.mirror.internal/library/busybox:latest") is tagged "latest"`},
		// No rule: the image alone.
		{"quay.io/x/y:latest", `container "c" image "quay.io/x/y:latest" is tagged "latest"`},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			_, out := post(t, h, "/validate", reviewFor("", "Pod", `{"spec":{"containers":[{"name":"c","image":"`+tt.image+`"}]}}`))
			if out == nil || out.Response == nil || out.Response.Result == nil {
				t.Fatalf("no refusal: %+v", out)
			}
			if got := out.Response.Result.Message; !strings.HasPrefix(got, "ferry: "+tt.want) {
				t.Errorf("message:\n%s\nwant it to start\nferry: %s", got, tt.want)
			}
		})
	}
}

func TestWebhookBadRequests(t *testing.T) {
	m, _ := NewMapping(nil, nil)
	h := NewHandler(m, Policy{DenyLatest: true}, nil)
	tests := []struct {
		name, path, method string
		body               []byte
		want               int
	}{
		{"garbage", "/mutate", http.MethodPost, []byte("\x00\xffnot json"), http.StatusBadRequest},
		{"empty", "/validate", http.MethodPost, nil, http.StatusBadRequest},
		{"other kind", "/mutate", http.MethodPost, []byte(`{"apiVersion":"v1","kind":"Pod"}`), http.StatusBadRequest},
		{"no request", "/mutate", http.MethodPost, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), http.StatusBadRequest},
		{"no uid", "/mutate", http.MethodPost, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`), http.StatusBadRequest},
		{"no kind", "/mutate", http.MethodPost, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{}}}`), http.StatusBadRequest},
		{"wrong types", "/validate", http.MethodPost, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}`), http.StatusBadRequest},
		{"too big", "/mutate", http.MethodPost, bytes.Repeat([]byte(" "), MaxBodyBytes+1), http.StatusRequestEntityTooLarge},
		{"GET", "/mutate", http.MethodGet, nil, http.StatusMethodNotAllowed},
		{"healthz", "/healthz", http.MethodGet, nil, http.StatusOK},
		{"unknown path", "/nope", http.MethodPost, nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, bytes.NewReader(tt.body)))
			if rec.Code != tt.want {
				t.Errorf("status = %d, want %d (%s)", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

func TestWebhookMutateEphemeralSubresourceOnlyTouchesEphemeral(t *testing.T) {
	m, _ := NewMapping(nil, []Rule{{From: "docker.io", To: "registry.internal/hub"}})
	h := NewHandler(m, Policy{}, nil)
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(reviewFor("", "Pod", objectFor("Pod")), &review); err != nil {
		t.Fatal(err)
	}
	review.Request.SubResource = "ephemeralcontainers"
	review.Request.Operation = admissionv1.Update
	body, _ := json.Marshal(review)
	_, out := post(t, h, "/mutate", body)
	if out == nil || out.Response == nil {
		t.Fatal("no response")
	}
	want := `[{"op":"replace","path":"/spec/ephemeralContainers/0/image","value":"registry.internal/hub/library/alpine:3"}]`
	if got := string(out.Response.Patch); got != want {
		t.Errorf("patch = %s\nwant    %s", got, want)
	}
}
