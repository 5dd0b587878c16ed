package rewrite

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/scan"
)

// nameOf is a reference as written without its tag and digest.
func nameOf(s string) string {
	s, _, _ = strings.Cut(s, "@")
	if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
		s = s[:i]
	}
	return s
}

// splitEdits says how to write the new location to of a reference written
// in parts (r.Parts), changing only parts that can hold it: the registry
// and repository parts always, the digest part when there is one; a tag part
// is kept, so the new location must have that tag. It returns the reason
// when it cannot, and the parts are left as written.
func splitEdits(r scan.Ref, to string) ([]edit, string) {
	old, err := imageref.Parse(r.Image)
	if err != nil {
		return nil, "it is no valid reference"
	}
	nr, err := imageref.Parse(to)
	if err != nil {
		return nil, err.Error()
	}
	byRole := map[string]*scan.Part{}
	for i := range r.Parts {
		byRole[r.Parts[i].Role] = &r.Parts[i]
	}
	reg, repo, tag, dig := byRole[scan.RoleRegistry], byRole[scan.RoleRepository], byRole[scan.RoleTag], byRole[scan.RoleDigest]
	// Path and host layouts place an image under its own repository path
	// and push the tag it was written with; flat puts all in one repository.
	tagThere := old.Tag != "" && (nr.Tag == old.Tag || nr.Tag == "" && strings.HasSuffix("/"+nr.Repo.RepositoryStr(), "/"+old.Repo.RepositoryStr()))
	var edits []edit
	set := func(p *scan.Part, v string) bool {
		if p.Value == v {
			return true
		}
		if p.Span.Offset < 0 {
			return false
		}
		edits = append(edits, edit{ref: scan.Ref{Image: p.Value, File: r.File, Line: p.Line, Span: p.Span}, new: v, part: true})
		return true
	}
	switch {
	case dig != nil && nr.Digest != "":
		if !set(dig, nr.Digest) {
			return nil, fmt.Sprintf("%s cannot be changed in place", dig.Path)
		}
	case tag != nil && tagThere:
	case tag != nil:
		return nil, fmt.Sprintf("its new location %s does not carry the tag %q, and %s takes a tag, not a digest", scan.Quote(to), old.Tag, tag.Path)
	default:
		return nil, fmt.Sprintf("its new location %s has no digest for the parts to hold", scan.Quote(to))
	}
	name := nameOf(to)
	ok := true
	switch {
	case nr.Repo.Name() == old.Repo.Name():
		// Pinned where it is (resolve): the name parts stay as written.
	case reg != nil && strings.HasSuffix(name, "/"+repo.Value):
		ok = set(reg, strings.TrimSuffix(name, "/"+repo.Value))
	case reg != nil:
		host, rest, _ := strings.Cut(name, "/")
		ok = set(reg, host) && set(repo, rest)
	default:
		ok = set(repo, name)
	}
	if !ok {
		return nil, fmt.Sprintf("%s is not a string and cannot be changed in place", repo.Path)
	}
	return edits, ""
}

// kustomizeEdits writes the new location of a Kustomization image override
// the kustomize way: newName takes the new repository (added before name
// when missing), digest the digest; newTag is kept where the new location
// keeps the tag, else it becomes the digest key.
func kustomizeEdits(r scan.Ref, to string, data []byte, base int) ([]edit, string) {
	old, err := imageref.Parse(r.Image)
	if err != nil {
		return nil, "it is no valid reference"
	}
	nr, err := imageref.Parse(to)
	if err != nil {
		return nil, err.Error()
	}
	byRole := map[string]*scan.Part{}
	for i := range r.Parts {
		byRole[r.Parts[i].Role] = &r.Parts[i]
	}
	repo, tag, dig := byRole[scan.RoleRepository], byRole[scan.RoleTag], byRole[scan.RoleDigest]
	tagThere := old.Tag != "" && (nr.Tag == old.Tag || nr.Tag == "" && strings.HasSuffix("/"+nr.Repo.RepositoryStr(), "/"+old.Repo.RepositoryStr()))
	var edits []edit
	change := func(sp scan.Span, line int, from, v string) bool {
		if from == v {
			return true
		}
		if sp.Offset < 0 {
			return false
		}
		edits = append(edits, edit{ref: scan.Ref{Image: from, File: r.File, Line: line, Span: sp}, new: v, part: true})
		return true
	}
	ok := true
	switch {
	case dig != nil && nr.Digest != "":
		ok = change(dig.Span, dig.Line, dig.Value, nr.Digest)
	case tag != nil && tagThere:
	case tag != nil && nr.Digest != "":
		ok = change(tag.KeySpan, tag.Line, tag.Key, "digest") && change(tag.Span, tag.Line, tag.Value, nr.Digest)
	default:
		return nil, fmt.Sprintf("its new location %s does not carry the tag %q and has no digest", scan.Quote(to), old.Tag)
	}
	name := nameOf(to)
	switch {
	case !ok, nr.Repo.Name() == old.Repo.Name():
	case repo.Key == "newName":
		ok = change(repo.Span, repo.Line, repo.Value, name)
	case name != repo.Value:
		// Add newName before the name key, as a block or a flow mapping has it.
		off := repo.KeySpan.Offset
		if off < 0 {
			ok = false
			break
		}
		rel := off - base
		start := bytes.LastIndexByte(data[:rel], '\n') + 1
		lead := data[start:rel]
		text := "newName: " + name + ", "
		if len(bytes.Trim(lead, " -")) == 0 {
			text = "newName: " + name + "\n" + strings.Repeat(" ", len(lead))
		}
		edits = append(edits, edit{ref: scan.Ref{File: r.File, Line: repo.Line, Span: scan.Span{Offset: off, Scalar: repo.KeySpan.Scalar}}, new: text, part: true, insert: true})
	}
	if !ok {
		return nil, "a part cannot be changed in place"
	}
	return edits, ""
}
