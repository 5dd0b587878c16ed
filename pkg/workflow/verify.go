package workflow

import (
	"context"
	"errors"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/transfer"
)

// VerifyResult is what verify checked and found: `ferry verify -o json`
// prints it, also when the check fails.
type VerifyResult struct {
	// Bundle is the file checked with -i; Lock the lock checked with --lock.
	Bundle string `json:"bundle,omitempty"`
	Lock   string `json:"lock,omitempty"`
	// OK says everything was there and intact.
	OK     bool `json:"ok"`
	Images int  `json:"images"`
	// Blobs and Bytes count the manifests and blobs hashed (bundle only).
	Blobs int   `json:"blobs,omitempty"`
	Bytes int64 `json:"bytes,omitempty"`
	// Problems are a bundle's damaged or missing blobs.
	Problems []bundle.Problem `json:"problems,omitempty"`
	// TrailingBytes counts bytes after the end of the tar archive (bundle
	// only); any makes the check fail.
	TrailingBytes int64 `json:"trailingBytes,omitempty"`
	// Missing are what the registry lacks of a lock.
	Missing []Missing `json:"missing,omitempty"`
	// Delta is set for a delta bundle: the blobs it does not hold, which
	// the target must (unpkg checks that before pushing anything).
	Delta *bundle.DeltaSummary `json:"delta,omitempty"`
}

// Missing is one manifest or blob a registry lacks.
type Missing struct {
	// Image is the lock entry, as written.
	Image string `json:"image"`
	// Location is where it was looked for, REPO@DIGEST.
	Location string `json:"location"`
	// What is "manifest", "blob", or why the image could not be read.
	What string `json:"what"`
}

// VerifyBundle re-hashes every manifest and blob of the bundle at path.
// A damaged bundle gives the result and a *bundle.VerifyError.
func VerifyBundle(ctx context.Context, path string, o bundle.VerifyOptions) (*VerifyResult, error) {
	rep, err := bundle.Verify(ctx, path, o)
	res := &VerifyResult{Bundle: path, Images: rep.Images, Blobs: rep.Blobs, Bytes: rep.Bytes, Problems: rep.Problems, TrailingBytes: rep.TrailingBytes, Delta: rep.Delta}
	var ve *bundle.VerifyError
	if errors.As(err, &ve) {
		res.Problems = ve.Problems
		return res, err
	}
	if err != nil {
		return nil, err
	}
	res.OK = len(res.Problems) == 0
	return res, nil
}

// VerifyLock asks the registry of each entry of the lock at path for every
// manifest and blob. A registry that lacks some gives the result and a
// *transfer.IncompleteError.
func VerifyLock(ctx context.Context, client *access.Client, path string) (*VerifyResult, error) {
	lf, err := lock.Read(path)
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{Lock: path, Images: len(lf.Images)}
	err = transfer.Check(ctx, client, lf)
	var ie *transfer.IncompleteError
	if errors.As(err, &ie) {
		for _, m := range ie.Missing {
			res.Missing = append(res.Missing, Missing{Image: m.Image, Location: m.Location, What: m.What})
		}
		return res, err
	}
	if err != nil {
		return nil, err
	}
	res.OK = true
	return res, nil
}
