package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/ferry-dev/ferry/pkg/imageref"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxBodyBytes bounds an AdmissionReview; the API server itself caps
// objects at about 3 MiB.
const MaxBodyBytes = 3 << 20

// Policy says what /mutate rewrites and what /validate refuses.
type Policy struct {
	// MutateWorkloads rewrites the pod templates of workloads too, on CREATE
	// and UPDATE. Off, /mutate rewrites Pods only and workloads stay as
	// written, so that GitOps tools comparing them with Git see no drift.
	MutateWorkloads bool
	// DenyLatest refuses images tagged "latest" or untagged, unless pinned by digest.
	DenyLatest bool
	// RequireLocked refuses images in no lock and matching no prefix rule.
	RequireLocked bool
}

// OptOutKey is the label (or annotation) that keeps /mutate away from an
// object, or, as a label, from a whole namespace: ferry.dev/mutate: "false".
const OptOutKey = "ferry.dev/mutate"

// optOutValue is the value of OptOutKey that opts out.
const optOutValue = "false"

// podKind is the only kind /mutate rewrites unless Policy.MutateWorkloads.
var podKind = metav1.GroupKind{Group: "", Kind: "Pod"}

// podSpecPaths is where each kind keeps its pod spec.
var podSpecPaths = map[metav1.GroupKind][]string{
	{Group: "", Kind: "Pod"}:                   {"spec"},
	{Group: "", Kind: "ReplicationController"}: {"spec", "template", "spec"},
	{Group: "apps", Kind: "Deployment"}:        {"spec", "template", "spec"},
	{Group: "apps", Kind: "StatefulSet"}:       {"spec", "template", "spec"},
	{Group: "apps", Kind: "DaemonSet"}:         {"spec", "template", "spec"},
	{Group: "apps", Kind: "ReplicaSet"}:        {"spec", "template", "spec"},
	{Group: "batch", Kind: "Job"}:              {"spec", "template", "spec"},
	{Group: "batch", Kind: "CronJob"}:          {"spec", "jobTemplate", "spec", "template", "spec"},
}

// containerFields are the pod spec lists holding images, in the order reported.
var containerFields = []struct{ field, noun string }{
	{"initContainers", "initContainer"},
	{"containers", "container"},
	{"ephemeralContainers", "ephemeralContainer"},
}

// containerImage is one image field of a pod spec.
type containerImage struct {
	// Pointer is the JSON pointer to the image field.
	Pointer string
	// Noun and Name say which container, as messages name it.
	Noun, Name string
	Image      string
}

func (c containerImage) String() string { return fmt.Sprintf("%s %q", c.Noun, c.Name) }

// podImages lists the images of the pod spec of obj; nil when the kind has no
// pod spec or the object has none.
func podImages(gk metav1.GroupKind, obj []byte) ([]containerImage, error) {
	path, ok := podSpecPaths[gk]
	if !ok || len(obj) == 0 {
		return nil, nil
	}
	raw := json.RawMessage(obj)
	for _, key := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("reading %s: %w", gk.Kind, err)
		}
		if raw, ok = m[key]; !ok {
			return nil, nil
		}
	}
	// Unknown fields are ignored; only the three container lists are decoded.
	var lists map[string]json.RawMessage
	if err := json.Unmarshal(raw, &lists); err != nil {
		return nil, fmt.Errorf("reading %s pod spec: %w", gk.Kind, err)
	}
	var out []containerImage
	for _, f := range containerFields {
		b, ok := lists[f.field]
		if !ok {
			continue
		}
		var cs []struct {
			Name  string  `json:"name"`
			Image *string `json:"image"`
		}
		if err := json.Unmarshal(b, &cs); err != nil {
			return nil, fmt.Errorf("reading %s %s: %w", gk.Kind, f.field, err)
		}
		for i, c := range cs {
			if c.Image == nil {
				continue
			}
			out = append(out, containerImage{
				Pointer: "/" + strings.Join(path, "/") + fmt.Sprintf("/%s/%d/image", f.field, i),
				Noun:    f.noun, Name: c.Name, Image: *c.Image,
			})
		}
	}
	return out, nil
}

// patchOp is one RFC 6902 operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value"`
}

// metaOp is an RFC 6902 operation on metadata, whose value may be an object.
type metaOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// DirectAnnotation lists, comma-separated on the metadata beside a pod spec,
// the containers whose images /mutate unwrapped from DirectPrefix, each as
// NAME=IMAGE. A second call (reinvocation, or a pod created from a
// rewritten template) sees them without the prefix and must still leave
// them alone, while another container (a debug container, a sidecar) that
// names the same image plainly is still mapped. An entry without NAME=, as
// ferry wrote before, stands for the image in every container.
const DirectAnnotation = "ferry.dev/direct"

// podMeta is the metadata beside the pod spec of an object.
type podMeta struct {
	// Pointer is its JSON pointer; Exists says whether the object has it.
	Pointer string
	Exists  bool
	// Annotations is nil when the metadata has none.
	Annotations map[string]string
}

// podMetadata reads the metadata beside the pod spec of obj: the object's
// own for a Pod, the template's for a workload.
func podMetadata(gk metav1.GroupKind, obj []byte) (podMeta, error) {
	path, ok := podSpecPaths[gk]
	if !ok || len(obj) == 0 {
		return podMeta{}, fmt.Errorf("%s has no pod spec", gk.Kind)
	}
	path = append(append([]string{}, path[:len(path)-1]...), "metadata")
	pm := podMeta{Pointer: "/" + strings.Join(path, "/")}
	raw := json.RawMessage(obj)
	for _, key := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return podMeta{}, fmt.Errorf("reading %s: %w", gk.Kind, err)
		}
		if raw, ok = m[key]; !ok {
			return pm, nil
		}
	}
	var meta struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return podMeta{}, fmt.Errorf("reading %s metadata: %w", gk.Kind, err)
	}
	pm.Exists, pm.Annotations = true, meta.Annotations
	return pm, nil
}

// direct lists the entries of DirectAnnotation: NAME=IMAGE, or IMAGE
// alone as older ferry wrote it.
func (pm podMeta) direct() map[string]bool {
	out := map[string]bool{}
	for _, im := range strings.Split(pm.Annotations[DirectAnnotation], ",") {
		if im = strings.TrimSpace(im); im != "" {
			out[im] = true
		}
	}
	return out
}

// isDirect reports whether DirectAnnotation says c's image was unwrapped
// from DirectPrefix in that container.
func isDirect(direct map[string]bool, c containerImage) bool {
	return direct[directEntry(c.Name, c.Image)] || direct[c.Image]
}

// directEntry is one entry of DirectAnnotation. Container names are DNS
// labels and references hold neither '=' nor ',', so it reads back whole.
func directEntry(container, image string) string { return container + "=" + image }

// recordDirect is the operation adding entries to DirectAnnotation.
func (pm podMeta) recordDirect(entries []string) metaOp {
	set := pm.direct()
	for _, e := range entries {
		set[e] = true
	}
	list := make([]string, 0, len(set))
	for im := range set {
		list = append(list, im)
	}
	sort.Strings(list)
	value := strings.Join(list, ",")
	switch {
	case !pm.Exists:
		return metaOp{Op: "add", Path: pm.Pointer, Value: map[string]any{"annotations": map[string]string{DirectAnnotation: value}}}
	case pm.Annotations == nil:
		return metaOp{Op: "add", Path: pm.Pointer + "/annotations", Value: map[string]string{DirectAnnotation: value}}
	default:
		return metaOp{Op: "add", Path: pm.Pointer + "/annotations/" + strings.ReplaceAll(DirectAnnotation, "/", "~1"), Value: value}
	}
}

// change is one rewritten image, for logs.
type change struct {
	Container string `json:"container"`
	From      string `json:"from"`
	To        string `json:"to"`
	How       How    `json:"how"`
	Detail    string `json:"detail"`
}

// Handler answers /mutate, /validate and /healthz. The mapping may be
// swapped at any time while requests are served.
type Handler struct {
	mapping atomic.Pointer[Mapping]
	policy  Policy
	log     *slog.Logger
	mux     *http.ServeMux
}

// NewHandler serves m under policy p, logging each decision to log.
func NewHandler(m *Mapping, p Policy, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{policy: p, log: log, mux: http.NewServeMux()}
	h.mapping.Store(m)
	h.mux.HandleFunc("/mutate", h.review(h.mutate))
	h.mux.HandleFunc("/validate", h.review(h.validate))
	h.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return h
}

// SetMapping makes m apply to every request from now on.
func (h *Handler) SetMapping(m *Mapping) { h.mapping.Store(m) }

// Mapping is the mapping in force.
func (h *Handler) Mapping() *Mapping { return h.mapping.Load() }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// errBadReview is a body that is no AdmissionReview: 400.
var errBadReview = errors.New("not an AdmissionReview")

// review decodes an AdmissionReview, lets decide fill the response, and
// answers with the request's uid, apiVersion and kind.
func (h *Handler) review(decide func(*admissionv1.AdmissionRequest, *slog.Logger) *admissionv1.AdmissionResponse) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
			return
		}
		review, err := decodeReview(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			status := http.StatusBadRequest
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				status = http.StatusRequestEntityTooLarge
			}
			h.log.Warn("refusing request", "path", r.URL.Path, "remote", r.RemoteAddr, "status", status, "err", err)
			http.Error(w, err.Error(), status)
			return
		}
		req := review.Request
		name := req.Name
		if name == "" {
			name = generateName(req.Object.Raw)
		}
		log := h.log.With("path", r.URL.Path, "uid", string(req.UID), "kind", req.Kind.Kind,
			"namespace", req.Namespace, "name", name, "operation", string(req.Operation))
		resp := decide(req, log)
		resp.UID = req.UID
		out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
		b, err := json.Marshal(out)
		if err != nil {
			http.Error(w, "encoding response", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}
}

func decodeReview(r io.Reader) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	dec := json.NewDecoder(r)
	if err := dec.Decode(&review); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadReview, err)
	}
	switch {
	case review.Kind != "AdmissionReview":
		return nil, fmt.Errorf("%w: kind is %q", errBadReview, review.Kind)
	case review.APIVersion != "admission.k8s.io/v1" && review.APIVersion != "admission.k8s.io/v1beta1":
		return nil, fmt.Errorf("%w: apiVersion %q is not admission.k8s.io/v1", errBadReview, review.APIVersion)
	case review.Request == nil:
		return nil, fmt.Errorf("%w: no request", errBadReview)
	case review.Request.UID == "":
		return nil, fmt.Errorf("%w: request has no uid", errBadReview)
	case review.Request.Kind.Kind == "":
		return nil, fmt.Errorf("%w: request has no kind", errBadReview)
	}
	return &review, nil
}

// generateName names an object created with metadata.generateName in logs.
func generateName(obj []byte) string {
	var o struct {
		Metadata struct {
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	if json.Unmarshal(obj, &o) != nil || o.Metadata.GenerateName == "" {
		return ""
	}
	return o.Metadata.GenerateName + "*"
}

// requestImages lists the images a request is judged on. An update through
// the ephemeralcontainers subresource may change nothing but ephemeral
// containers, so only those are considered there.
func requestImages(req *admissionv1.AdmissionRequest) ([]containerImage, error) {
	images, err := podImages(metav1.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}, req.Object.Raw)
	if err != nil || req.SubResource != "ephemeralcontainers" {
		return images, err
	}
	var eph []containerImage
	for _, c := range images {
		if c.Noun == "ephemeralContainer" {
			eph = append(eph, c)
		}
	}
	return eph, nil
}

// leaveAlone says why /mutate must not rewrite the object of req, or "" when
// it may. The generated webhook configuration filters most of these out
// already; the handler decides the same for configurations written by hand.
func (p Policy) leaveAlone(req *admissionv1.AdmissionRequest) string {
	gk := metav1.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	if _, ok := podSpecPaths[gk]; !ok {
		return ""
	}
	switch {
	case gk == podKind && req.SubResource == "ephemeralcontainers":
	case gk == podKind && req.SubResource == "" && req.Operation == admissionv1.Create:
	case gk == podKind:
		// Changing the image of a running pod restarts it, and an operator
		// that set it would see its own value changed.
		return "pods are rewritten when created and through the ephemeralcontainers subresource only"
	case !p.MutateWorkloads:
		return "workloads are left as written: their pods are rewritten when created (--mutate-workloads rewrites templates)"
	}
	if optedOut(req.Object.Raw) {
		return fmt.Sprintf("the object is labelled or annotated %s: %q", OptOutKey, optOutValue)
	}
	return ""
}

// podsMappedLater reports whether /mutate leaves the object of req as written
// while the pods made from it are mapped when created: a workload in
// pods-only mode. /validate then judges its images as those pods will pull
// them, as it judges a pod after /mutate rewrote it.
func (p Policy) podsMappedLater(req *admissionv1.AdmissionRequest) bool {
	gk := metav1.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	_, ok := podSpecPaths[gk]
	return ok && gk != podKind && !p.MutateWorkloads && !optedOut(req.Object.Raw)
}

// optedOut reports whether obj carries the opt-out label or annotation. The
// namespace's label is honoured by the namespaceSelector alone: an
// AdmissionRequest does not carry the namespace's labels.
func optedOut(obj []byte) bool {
	var o struct {
		Metadata struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if json.Unmarshal(obj, &o) != nil {
		return false
	}
	return o.Metadata.Labels[OptOutKey] == optOutValue || o.Metadata.Annotations[OptOutKey] == optOutValue
}

// mutate always allows, with a JSON Patch when an image changes.
func (h *Handler) mutate(req *admissionv1.AdmissionRequest, log *slog.Logger) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{Allowed: true}
	if why := h.policy.leaveAlone(req); why != "" {
		log.Info("mutate: left as written", "why", why)
		return resp
	}
	images, err := requestImages(req)
	if err != nil {
		// Allowed all the same: the API server will judge the object itself.
		log.Warn("mutate: cannot read object, leaving it unchanged", "err", err)
		resp.Warnings = []string{"ferry: " + err.Error()}
		return resp
	}
	m := h.Mapping()
	gk := metav1.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	meta, metaErr := podMetadata(gk, req.Object.Raw)
	direct := meta.direct()
	var ops []any
	var changes []change
	var unwrapped []string
	for _, c := range images {
		// An image already where the lock or a rule sends images, or one
		// unwrapped from direct.to/ by an earlier call, is left alone, so
		// that a second call (reinvocation, or a pod created from a
		// rewritten template) gives no patch, even for a rule whose
		// destination lies under its own source.
		if m.relocated(c.Image) || isDirect(direct, c) {
			continue
		}
		res := m.Map(c.Image)
		if !res.Changed(c.Image) {
			continue
		}
		ops = append(ops, patchOp{Op: "replace", Path: c.Pointer, Value: res.Image})
		changes = append(changes, change{Container: c.String(), From: c.Image, To: res.Image, How: res.How, Detail: res.Detail})
		if res.How == ByDirect {
			unwrapped = append(unwrapped, directEntry(c.Name, res.Image))
		}
	}
	// The ephemeralcontainers subresource stores nothing but ephemeral
	// containers, so the annotation is only written with the object itself.
	if len(unwrapped) > 0 && req.SubResource == "" && metaErr == nil {
		ops = append(ops, meta.recordDirect(unwrapped))
	}
	if len(ops) == 0 {
		log.Info("mutate: no change", "images", len(images))
		return resp
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		log.Error("mutate: encoding patch", "err", err)
		return resp
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	for _, c := range changes {
		log.Info("mutate: rewriting image", "container", c.Container, "from", c.From, "to", c.To, "by", string(c.How), "match", c.Detail)
	}
	return resp
}

// validate refuses the object when a container breaks the policy, naming
// every such container and why.
func (h *Handler) validate(req *admissionv1.AdmissionRequest, log *slog.Logger) *admissionv1.AdmissionResponse {
	images, err := requestImages(req)
	if err != nil {
		log.Warn("validate: cannot read object, allowing it", "err", err)
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"ferry: " + err.Error()}}
	}
	m := h.Mapping()
	var reasons []string
	mappedLater := h.policy.podsMappedLater(req)
	for _, c := range images {
		pulled := c.Image
		if res := m.Map(c.Image); mappedLater && res.Changed(c.Image) {
			pulled = res.Image
		}
		if why := h.policy.refuse(m, pulled); why != "" {
			desc := asWritten(m, c.Image)
			if pulled != c.Image {
				desc = fmt.Sprintf("%q (mapped to %q)", c.Image, pulled)
			}
			reasons = append(reasons, fmt.Sprintf("%s image %s %s", c, desc, why))
		}
	}
	if len(reasons) == 0 {
		log.Info("validate: allowed", "images", len(images))
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	msg := "ferry: " + strings.Join(reasons, "; ")
	log.Info("validate: denied", "reason", msg)
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: msg,
	}}
}

// asWritten quotes image for a refusal, with the reference it was written
// as when a prefix rule made it, or with what the mapping will make of it
// when the mutating webhook has not run: the user looks for the former in
// their manifests, and the node pulls the latter.
func asWritten(m *Mapping, image string) string {
	if w, ok := m.Written(image); ok {
		return fmt.Sprintf("%q (mapped to %q)", w, image)
	}
	if res := m.Map(image); res.How == ByRule && res.Changed(image) {
		return fmt.Sprintf("%q (mapped to %q)", image, res.Image)
	}
	return fmt.Sprintf("%q", image)
}

// refuse says why image breaks the policy, or "" when it does not. The image
// is judged as it will be pulled: without the DirectPrefix.
func (p Policy) refuse(m *Mapping, image string) string {
	if !p.DenyLatest && !p.RequireLocked {
		return ""
	}
	effective := strings.TrimPrefix(image, DirectPrefix)
	r, err := imageref.Parse(effective)
	if err != nil {
		var inv *imageref.InvalidError
		if errors.As(err, &inv) {
			return "is not a valid image reference: " + inv.Reason
		}
		return "is not a valid image reference"
	}
	if p.DenyLatest && !r.Pinned() {
		switch r.Tag {
		case "":
			return `has no tag, which means "latest": pin a version tag or a digest`
		case "latest":
			return `is tagged "latest", which changes over time: pin a version tag or a digest`
		}
	}
	if p.RequireLocked && !m.Known(effective) {
		return "is in no lock and matches no mapping rule: add it to the lock (ferry resolve/relocate) or a --map rule"
	}
	return ""
}
